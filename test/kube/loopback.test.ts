import { expect, test } from "bun:test";
import { isLoopbackHost } from "../../lib/kube/index.ts";

test.each(["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"])("%s is this machine", (host) => {
  expect(isLoopbackHost(host)).toBe(true);
});

test.each(["0.0.0.0", "10.0.0.1", "127.0.0.1.example.com", "localhost.example.com", "::ffff:10.0.0.1", "relay.example.com", ""])(
  "%s is not: plain HTTP to it is refused",
  (host) => {
    expect(isLoopbackHost(host)).toBe(false);
  },
);
