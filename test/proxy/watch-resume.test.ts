// arcproxy keeps a watch going across the relay's restarts without sending the client anything
// wrong: no duplicate or lost event, no half an event, no endless loop, the client's timeout kept.
import { afterAll, afterEach, beforeAll, describe, expect, setSystemTime, test } from "bun:test";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { silentLogger } from "../../lib/observe/index.ts";
import { resumeQuery, streamResumableWatch } from "../../lib/proxy/watch-resume.ts";

/** One answer of the stand-in relay: its body, written as given, then a clean end. */
type Script = string[];
const event = (type: string, rv: string) => JSON.stringify({ type, object: { kind: "ConfigMap", metadata: { name: `cm-${rv}`, resourceVersion: rv } } }) + "\n";

let relay: http.Server;
let relayPort = 0;
let scripts: Script[] = [];
let asked: string[] = [];
/** Runs before an answer ends (a test moves the clock here). */
let beforeEnd: (index: number) => void = () => {};

beforeAll(async () => {
  relay = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const index = asked.push(req.url ?? "") - 1;
    const script = scripts[index] ?? [];
    res.writeHead(200, { "content-type": "application/json" });
    for (const chunk of script) res.write(chunk);
    beforeEnd(index);
    res.end();
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  relayPort = (relay.address() as AddressInfo).port;
});
afterAll(() => relay.close());
afterEach(() => {
  setSystemTime();
  beforeEnd = () => {};
});

/** Runs one watch through streamResumableWatch and returns what the client received. */
async function watch(path: string, answers: Script[]): Promise<{ body: string; asked: string[] }> {
  scripts = answers;
  asked = [];
  const front = http.createServer((req, res) => {
    void streamResumableWatch(req.url ?? "", res, {
      logger: silentLogger,
      open: (p) => new Promise((resolve, reject) => http.get({ host: "127.0.0.1", port: relayPort, path: p, agent: false }, resolve).once("error", reject)),
    }, new AbortController().signal);
  });
  await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
  try {
    const body = await new Promise<string>((resolve, reject) => {
      http.get({ host: "127.0.0.1", port: (front.address() as AddressInfo).port, path, agent: false }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => { text += c; });
        res.once("end", () => resolve(text));
      }).once("error", reject);
    });
    return { body, asked: [...asked] };
  } finally {
    front.close();
  }
}

const rvOf = (url: string) => new URLSearchParams(url.split("?")[1]).get("resourceVersion");

describe("streamResumableWatch", () => {
  test("kubectl get -w (a resourceVersion from its list): resumed from the last event, nothing twice, until an ERROR", async () => {
    const gone = JSON.stringify({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired" } }) + "\n";
    const { body, asked } = await watch("/api/v1/configmaps?watch=true&resourceVersion=100", [
      [event("ADDED", "101"), event("MODIFIED", "102")],
      [event("DELETED", "103"), gone],
    ]);
    expect(asked.map(rvOf)).toEqual(["100", "102"]);
    expect(body).toBe(event("ADDED", "101") + event("MODIFIED", "102") + event("DELETED", "103") + gone);
  });

  test("half an event at the end of an answer is never passed on; the resumed watch sends it whole", async () => {
    const whole = event("MODIFIED", "102");
    const { body } = await watch("/api/v1/configmaps?watch=true&resourceVersion=100", [
      [event("ADDED", "101"), whole.slice(0, 20)],
      [whole, JSON.stringify({ type: "ERROR", object: { code: 410 } }) + "\n"],
    ]);
    const lines = body.trimEnd().split("\n");
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    expect(lines.map((l) => JSON.parse(l).type)).toEqual(["ADDED", "MODIFIED", "ERROR"]);
  });

  test("a relay that keeps ending the watch at once is not asked again and again: the watch ends for the client", async () => {
    const { body, asked } = await watch("/api/v1/configmaps?watch=true&resourceVersion=100", [[], [], [], [], [], []]);
    expect(asked).toHaveLength(3);
    expect(body).toBe("");
  });

  test("initial events (no resourceVersion) come in any order: no resume point, so the watch ends rather than replaying", async () => {
    const { asked } = await watch("/api/v1/configmaps?watch=true", [[event("ADDED", "500"), event("ADDED", "100")], [event("ADDED", "999")]]);
    expect(asked).toHaveLength(1);
  });

  test("after a BOOKMARK the watch resumes from it, without asking for the initial events again", async () => {
    const bookmark = JSON.stringify({ type: "BOOKMARK", object: { kind: "ConfigMap", metadata: { resourceVersion: "600", annotations: { "k8s.io/initial-events-end": "true" } } } }) + "\n";
    const { asked } = await watch("/api/v1/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true", [
      [event("ADDED", "500"), event("ADDED", "100"), bookmark],
      [JSON.stringify({ type: "ERROR", object: { code: 410 } }) + "\n"],
    ]);
    expect(asked).toHaveLength(2);
    const resumed = new URLSearchParams(asked[1]!.split("?")[1]);
    expect(resumed.get("resourceVersion")).toBe("600");
    expect(resumed.has("sendInitialEvents")).toBe(false);
    expect(resumed.has("resourceVersionMatch")).toBe(false);
    expect(resumed.get("allowWatchBookmarks")).toBe("true");
  });

  test("the client's timeoutSeconds is a deadline over all resumes", async () => {
    beforeEnd = (index) => { if (index === 0) setSystemTime(new Date(Date.now() + 61_000)); };
    const { asked } = await watch("/api/v1/configmaps?watch=true&resourceVersion=100&timeoutSeconds=60", [[event("ADDED", "101")], [event("ADDED", "102")]]);
    expect(asked).toHaveLength(1);
  });
});

describe("resumeQuery", () => {
  test("carries only the time left of the client's timeout, and nothing when it is over", () => {
    expect(resumeQuery("/api/v1/pods?watch=1&timeoutSeconds=300&resourceVersion=1", "9", 120.7)).toBe("/api/v1/pods?watch=1&timeoutSeconds=120&resourceVersion=9");
    expect(resumeQuery("/api/v1/pods?watch=1&timeoutSeconds=300", "9", 0.5)).toBeUndefined();
    expect(resumeQuery("/api/v1/pods?watch=1", "9")).toBe("/api/v1/pods?watch=1&resourceVersion=9");
  });
});
