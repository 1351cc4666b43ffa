// A response is over when it was handed to the socket whole, or cut: the count of requests in flight follows it.
import { expect, test } from "bun:test";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { onResponseOver } from "../../lib/http/index.ts";
import { waitFor } from "../support/wait-for.ts";

test("onResponseOver fires once for a complete keep-alive response, and once for one the client cut", async () => {
  const over: string[] = [];
  const server = http.createServer((req, res) => {
    onResponseOver(res, () => over.push(req.url ?? ""));
    if (req.url === "/cut") {
      res.writeHead(200, { "content-length": "100" });
      res.write("partial");
      return;
    }
    res.end("ok");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    expect(await (await fetch(`${base}/whole`)).text()).toBe("ok");
    // Complete before the client asks again on the same connection, not when that connection closes.
    expect(await (await fetch(`${base}/second`)).text()).toBe("ok");
    expect(over).toEqual(["/whole", "/second"]);
    const controller = new AbortController();
    const res = await fetch(`${base}/cut`, { signal: controller.signal });
    await res.body!.getReader().read();
    controller.abort();
    await waitFor("the cut response to be over", () => over.includes("/cut"));
    expect(over).toEqual(["/whole", "/second", "/cut"]);
  } finally {
    server.close();
  }
});
