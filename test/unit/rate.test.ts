import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { takeToken } from "../../src/transports/rate.js";

/** How many of `n` requests at times `at(i)` a bucket of `rate`/s lets through. */
function passed(rate: number, n: number, at: (i: number) => number): number {
  let tat = 0;
  let ok = 0;
  for (let i = 0; i < n; i++) {
    const next = takeToken(tat, at(i), rate);
    if (next >= 0) {
      tat = next;
      ok++;
    }
  }
  return ok;
}

describe("takeToken (a token bucket in one number)", () => {
  it("lets a burst of twice the rate through at once, then nothing", () => {
    assert.equal(passed(50, 1000, () => 1000), 100);
    assert.equal(passed(1, 10, () => 5000), 2);
  });
  it("lets the rate through when requests come steadily faster than it", () => {
    // 10 s of requests every 5 ms (200/s) against 50/s: the burst, then 50 per second.
    const ok = passed(50, 2000, (i) => 1000 + i * 5);
    assert.ok(ok >= 100 + 490 && ok <= 100 + 500, String(ok));
  });
  it("refills while idle, never beyond the burst", () => {
    let tat = 0;
    for (let i = 0; i < 20; i++) tat = takeToken(tat, 0, 10);
    assert.equal(takeToken(tat, 0, 10), -1);
    assert.ok(takeToken(tat, 100, 10) >= 0, "one token back after 1/rate s");
    assert.equal(passed(10, 100, (i) => (i < 50 ? 0 : 1_000_000)), 20 + 20);
  });
  it("a rate of 0 is unlimited", () => {
    assert.equal(passed(0, 10_000, () => 0), 10_000);
  });
});
