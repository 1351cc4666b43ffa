// Which connections go through the environment's proxy.
import { afterEach, describe, expect, test } from "bun:test";
import { proxyFor } from "../../lib/client/index.ts";

const saved = { ...process.env };
afterEach(() => {
  for (const name of ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"]) {
    if (saved[name] === undefined) delete process.env[name];
    else process.env[name] = saved[name];
  }
});

describe("proxyFor", () => {
  test("https goes through HTTPS_PROXY unless NO_PROXY names the host", () => {
    process.env.HTTPS_PROXY = "http://proxy.corp:3128";
    process.env.NO_PROXY = "kubernetes.default.svc,10.0.0.1:6443";
    expect(proxyFor("https://relay.example.com")).toBe("http://proxy.corp:3128");
    expect(proxyFor("https://kubernetes.default.svc")).toBeUndefined();
    expect(proxyFor("https://10.0.0.1:6443")).toBeUndefined();
  });

  test("plain http (a loopback relay) never goes through a proxy: its token would cross it in clear", () => {
    process.env.HTTP_PROXY = "http://proxy.corp:3128";
    process.env.HTTPS_PROXY = "http://proxy.corp:3128";
    expect(proxyFor("http://127.0.0.1:8080")).toBeUndefined();
    expect(proxyFor("ws://127.0.0.1:8080/v1/agent/connect")).toBeUndefined();
  });
});
