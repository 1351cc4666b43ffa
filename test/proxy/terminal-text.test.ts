// Text a relay or a provider chose is printed without control characters.
import { expect, test } from "bun:test";
import { printable } from "../../lib/proxy/terminal-text.ts";

test("escape sequences, C1 controls and newlines become ?; long text is cut", () => {
  expect(printable("\u001b]0;pwned\u0007code\u009b2J\nnext")).toBe("?]0;pwned?code?2J?next");
  expect(printable("ABCD-EFGH")).toBe("ABCD-EFGH");
  expect(printable("x".repeat(600))).toBe(`${"x".repeat(512)}...`);
});
