import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock, systemClock } from "../../src/index.js";
import { sleepOn, type Clock } from "../../src/clock.js";

describe("Clock.sleep", () => {
  it("a ManualClock's sleep takes real time and moves the clock by as much, firing the tickers that come due", async () => {
    const clock = new ManualClock();
    const ticks: number[] = [];
    const stop = clock.every(10, () => ticks.push(clock.now()));
    const started = performance.now();
    await clock.sleep(30);
    assert.ok(performance.now() - started >= 25, "real time passed");
    assert.equal(clock.now(), 30);
    assert.deepEqual(ticks, [10, 20, 30]);
    stop();
  });

  it("the system clock's sleep waits", async () => {
    const started = performance.now();
    await systemClock.sleep!(20);
    assert.ok(performance.now() - started >= 15);
  });

  it("a clock without sleep waits on a real timer", async () => {
    const frozen: Clock = { now: () => 0, every: () => () => {} };
    const started = performance.now();
    await sleepOn(frozen, 20);
    assert.ok(performance.now() - started >= 15);
  });
});
