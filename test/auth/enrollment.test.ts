import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { createEnrollmentSecret, hashSecret } from "../../lib/auth/index.ts";

describe("createEnrollmentSecret", () => {
  test("gives a prefixed 32-byte base64url secret and its sha256 hash", () => {
    const { secret, secretHash } = createEnrollmentSecret();
    expect(secret).toMatch(/^arcenroll_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(secret.slice("arcenroll_".length), "base64url")).toHaveLength(32);
    expect(secretHash).toBe(createHash("sha256").update(secret).digest("hex"));
    expect(secretHash).not.toContain(secret);
  });

  test("never repeats", () => {
    const secrets = new Set(Array.from({ length: 100 }, () => createEnrollmentSecret().secret));
    expect(secrets.size).toBe(100);
  });
});

describe("hashSecret", () => {
  test("is lowercase hex sha256", () => {
    expect(hashSecret("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });
});
