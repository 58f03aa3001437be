/**
 * Token revocations (auth/revocations.ts): the line per user, tokens without
 * `iat`, and the bounds (kept 24 h, at most so many users, oldest dropped first).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Revocations, REVOCATION_TTL_MS } from "../../src/auth/revocations.js";

describe("revocations", () => {
  it("refuses the user's tokens issued before the line, and only the user's", () => {
    const r = new Revocations();
    r.add("u", 1000, 0);
    assert.equal(r.revoked("u", 999, 1), true);
    assert.equal(r.revoked("u", 1000, 1), false, "issued at the line: kept");
    assert.equal(r.revoked("u", 2000, 1), false);
    assert.equal(r.revoked("v", 1, 1), false);
    assert.equal(r.revoked("u", undefined, 1), true, "no iat: cannot show it is newer");
    assert.equal(r.revoked("v", undefined, 1), false, "no iat is fine for a user never revoked");
  });

  it("moves the line forward, never back", () => {
    const r = new Revocations();
    r.add("u", 1000, 0);
    r.add("u", 500, 1);
    assert.equal(r.revoked("u", 900, 2), true);
    r.add("u", 2000, 3);
    assert.equal(r.revoked("u", 1500, 4), true);
  });

  it("forgets a revocation after its time, and the oldest when full", () => {
    const r = new Revocations(REVOCATION_TTL_MS, 3);
    r.add("a", 100, 0);
    assert.equal(r.revoked("a", 1, REVOCATION_TTL_MS - 1), true);
    assert.equal(r.revoked("a", 1, REVOCATION_TTL_MS), false, "expired");
    r.add("b", 100, REVOCATION_TTL_MS + 1);
    assert.equal(r.size, 1, "the expired one was dropped on the next add");
    r.add("c", 100, REVOCATION_TTL_MS + 2);
    r.add("d", 100, REVOCATION_TTL_MS + 3);
    assert.equal(r.add("e", 100, REVOCATION_TTL_MS + 4), "b", "the oldest makes room");
    assert.equal(r.size, 3);
    assert.equal(r.revoked("b", 1, REVOCATION_TTL_MS + 5), false);
    // A user revoked again counts as the newest.
    r.add("c", 200, REVOCATION_TTL_MS + 6);
    assert.equal(r.add("f", 100, REVOCATION_TTL_MS + 7), "d");
  });
});
