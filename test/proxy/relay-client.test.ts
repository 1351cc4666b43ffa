import { afterAll, beforeAll, expect, test } from "bun:test";
import { ArcError } from "../../lib/errors/index.ts";
import { fetchClusterInfo } from "../../lib/proxy/index.ts";
import { createRelayConnection } from "../../lib/client/index.ts";
import { CLUSTER, USER_TOKEN, startFakeRelay, type FakeRelay } from "./fake-relay.ts";

let relay: FakeRelay;
beforeAll(async () => {
  relay = await startFakeRelay();
});
afterAll(() => relay.close());

test("returns the cluster record", async () => {
  const info = await fetchClusterInfo(createRelayConnection(relay.url), CLUSTER, USER_TOKEN);
  expect(info).toEqual({ name: CLUSTER, connected: true, kubernetesVersion: "v1.33.0" });
});

test.each([
  ["a bad token", CLUSTER, "wrong", 401, ["token expired or invalid", "arcrelay token create"]],
  ["no grant", "secret", USER_TOKEN, 403, ["user alice may not use cluster secret", "cluster-user grant"]],
  ["an unknown cluster", "nope", USER_TOKEN, 404, ["cluster nope is not registered", "check --cluster"]],
] as const)("%s: the relay's message plus what to do", async (_name, cluster, token, status, parts) => {
  const error = await fetchClusterInfo(createRelayConnection(relay.url), cluster, token).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ArcError);
  expect((error as ArcError).status).toBe(status);
  for (const part of parts) expect((error as Error).message).toContain(part);
  expect((error as Error).message).toContain(relay.url);
});

test("an unreachable relay is named in the error", async () => {
  const url = "http://127.0.0.1:9";
  expect(fetchClusterInfo(createRelayConnection(url), CLUSTER, USER_TOKEN)).rejects.toThrow(`cannot reach relay ${url}`);
});
