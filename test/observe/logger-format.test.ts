// Logs for people and for machines: the same fields, secrets redacted in both.
import { expect, test } from "bun:test";
import { createLogger } from "../../lib/observe/index.ts";

function lines(format: "json" | "text"): string[] {
  const out: string[] = [];
  const logger = createLogger({ component: "arcrelay", format, write: (line) => void out.push(line) });
  logger.child({ requestId: "req-1" }).warn("request refused", { cluster: "edge", token: "secret-token", error: new Error("no grant") });
  return out;
}

test("json: one object per line with level, msg, component and the fields", () => {
  const [line] = lines("json");
  expect(JSON.parse(line!)).toMatchObject({ level: "warn", msg: "request refused", component: "arcrelay", requestId: "req-1", cluster: "edge", token: "[redacted]", error: { name: "Error", message: "no grant" } });
});

test("text: one readable line with the same fields, the token redacted", () => {
  const out = lines("text");
  expect(out).toHaveLength(1);
  const line = out[0]!;
  expect(line).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: request refused \{.*\}\n$/);
  for (const field of ['"component":"arcrelay"', '"requestId":"req-1"', '"cluster":"edge"', '"token":"[redacted]"', '"message":"no grant"']) expect(line).toContain(field);
  expect(line).not.toContain("secret-token");
  expect(line).not.toContain("\u001b["); // no colour unless asked for (a terminal)
});
