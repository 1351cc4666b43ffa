// Which relay may run on which schema version (lib/relay/store/schema-versions.ts).
import { describe, expect, test } from "bun:test";
import { planSchema } from "../../../lib/relay/store/schema-versions.ts";

describe("planSchema", () => {
  test("migrating records the oldest schema that may run on the result: additive migrations at the top lower it", () => {
    expect(planSchema(0, 5, undefined, new Set([5]))).toEqual({ action: "migrate", readableFrom: 4 });
    expect(planSchema(3, 6, undefined, new Set([5, 6]))).toEqual({ action: "migrate", readableFrom: 4 });
    // An additive migration below one that is not does not help an older relay.
    expect(planSchema(0, 6, undefined, new Set([5]))).toEqual({ action: "migrate", readableFrom: 6 });
    expect(planSchema(5, 5, undefined, new Set([5]))).toEqual({ action: "none" });
  });

  test("a newer schema is run on, untouched, only when it says this relay's schema may", () => {
    expect(planSchema(6, 5, 5, new Set())).toEqual({ action: "run-on-newer" });
    expect(planSchema(6, 5, 4, new Set())).toEqual({ action: "run-on-newer" });
    expect(() => planSchema(6, 5, 6, new Set())).toThrow("database schema version 6 is newer than this relay supports (5): upgrade arcrelay (relays of schema 6 or later run on it)");
    expect(() => planSchema(6, 5, undefined, new Set())).toThrow("upgrade arcrelay; to roll a relay back across this change, restore the database");
  });

  test.each([[0], [Number.NaN], [-1], [4.5]])("a readable-from of %p (a hand-edited row) counts as absent", (value) => {
    expect(() => planSchema(6, 5, value, new Set())).toThrow("newer than this relay supports");
  });
});
