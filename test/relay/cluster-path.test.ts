// Which raw request targets the relay treats as a cluster's Kubernetes API, and how they are split.
import { describe, expect, test } from "bun:test";
import { BadRequest } from "../../lib/errors/index.ts";
import { isClusterApiTarget, parseClusterApiTarget } from "../../lib/relay/cluster-path.ts";

describe("parseClusterApiTarget", () => {
  test.each([
    ["/v1/clusters/prod/k8s/api/v1/pods?watch=1", "prod", "/api/v1/pods?watch=1"],
    ["/v1/clusters/prod/k8s", "prod", "/"],
    ["/v1/clusters/prod/k8s/", "prod", "/"],
    ["/v1/clusters/prod/k8s?x", "prod", "/?x"],
    ["/v1/clusters/prod/k8s/apis/apps/v1/namespaces/default/deployments", "prod", "/apis/apps/v1/namespaces/default/deployments"],
    ["/v1/clusters/a/k8s/version", "a", "/version"],
    ["/v1/clusters/prod-eu-1/k8s/api?labelSelector=app%3Dweb", "prod-eu-1", "/api?labelSelector=app%3Dweb"],
  ])("%s -> cluster %s, kube path %s", (target, cluster, kubePath) => {
    expect(isClusterApiTarget(target)).toBe(true);
    expect(parseClusterApiTarget(target)).toEqual({ cluster, kubePath });
  });

  // Each of these is meant for the cluster API (so the relay must answer it), but the cluster
  // segment is not a plain DNS label: it is refused as it is, never decoded into another name.
  test.each([
    ["dot-dot", "/v1/clusters/../k8s/api"],
    ["single dot", "/v1/clusters/./k8s/api"],
    ["encoded dot-dot", "/v1/clusters/%2e%2e/k8s/api"],
    ["encoded dot-dot, upper case", "/v1/clusters/%2E%2E/k8s/api"],
    ["encoded slash", "/v1/clusters/prod%2Fother/k8s/api"],
    ["encoded slash, lower case", "/v1/clusters/prod%2fother/k8s/api"],
    ["double-encoded slash", "/v1/clusters/a%252Fb/k8s/api"],
    ["percent-encoded plain letters", "/v1/clusters/%70rod/k8s/api"],
    ["upper case", "/v1/clusters/PROD/k8s/api"],
    ["mixed case", "/v1/clusters/Prod/k8s/api"],
    ["Cyrillic er look-alike", "/v1/clusters/\u0440rod/k8s/api"],
    ["Cyrillic er, percent-encoded", "/v1/clusters/%D1%80rod/k8s/api"],
    ["Cyrillic o look-alike", "/v1/clusters/pr\u043ed/k8s/api"],
    ["fullwidth letters", "/v1/clusters/\uff50\uff52\uff4f\uff44/k8s/api"],
    ["empty name", "/v1/clusters//k8s/api"],
    ["empty name, bare k8s", "/v1/clusters//k8s"],
    ["leading dash", "/v1/clusters/-prod/k8s/api"],
    ["trailing dash", "/v1/clusters/prod-/k8s/api"],
    ["dot inside", "/v1/clusters/prod.example/k8s/api"],
    ["underscore", "/v1/clusters/prod_1/k8s/api"],
    ["64 characters", `/v1/clusters/${"a".repeat(64)}/k8s/api`],
    ["encoded NUL", "/v1/clusters/prod%00/k8s/api"],
    ["query inside the name", "/v1/clusters/prod?x=/k8s/api"],
    ["semicolon parameter", "/v1/clusters/prod;x/k8s/api"],
  ])("refuses %s with BadRequest (400): %s", (_what, target) => {
    expect(isClusterApiTarget(target)).toBe(true);
    let caught: unknown;
    try {
      parseClusterApiTarget(target);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(BadRequest);
    expect((caught as BadRequest).status).toBe(400);
    expect((caught as BadRequest).reason).toBe("BadRequest");
    expect((caught as BadRequest).message).toContain("invalid cluster name");
  });

  test("accepts the longest valid name (63 characters)", () => {
    const name = "a".repeat(63);
    expect(parseClusterApiTarget(`/v1/clusters/${name}/k8s/api`)).toEqual({ cluster: name, kubePath: "/api" });
  });

  test("the refusal message quotes the name as received, so a user sees what went wrong", () => {
    expect(() => parseClusterApiTarget("/v1/clusters/%2e%2e/k8s/api")).toThrow(/"%2e%2e"/);
  });
});

describe("isClusterApiTarget", () => {
  test.each([
    "/v1/clusters/prod",
    "/v1/clusters/prod/",
    "/v1/clusters/prod/k8sx/api",
    "/v1/clusters/prod/k8s-x",
    "/v1/clusters/prod/K8S/api",
    "/v1/clusters/prod/other/k8s/api",
    "/v1/clusters/",
    "/v1/clusters",
    "/v1/cluster/prod/k8s/api",
    "/V1/clusters/prod/k8s/api",
    "/healthz",
    "/.well-known/jwks.json",
    "/v1/agent/connect",
    "/v1/agent/enroll",
    "",
    "http://relay.example.com/v1/clusters/prod/k8s/api",
  ])("%p is not a cluster API target", (target) => {
    expect(isClusterApiTarget(target)).toBe(false);
  });
});
