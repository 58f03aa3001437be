import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/clock.js";
import { FANOUT_WAIT_MS, FanoutWaiters } from "../../src/broker/redis-waiters.js";

const message = (offset: number) => ({ channel: "c", epoch: "e", offset, json: "{}" });

describe("Redis publish waiters", () => {
  it("a publish whose notification does not come resolves after the wait, measured on the injected clock", async () => {
    const clock = new ManualClock();
    const waiters = new FanoutWaiters(clock);
    let done = false;
    void waiters.wait(message(1)).then(() => (done = true));
    clock.advance(FANOUT_WAIT_MS - 1);
    await Promise.resolve();
    assert.equal(done, false, "still waiting before the deadline");
    clock.advance(FANOUT_WAIT_MS / 4);
    await Promise.resolve();
    assert.equal(done, true);
    assert.equal(waiters.count, 0);
  });

  it("releases waiters up to the message handed over, and stops its ticker when none is left", async () => {
    const clock = new ManualClock();
    const waiters = new FanoutWaiters(clock);
    const done: number[] = [];
    for (const n of [1, 2, 3]) void waiters.wait(message(n)).then(() => done.push(n));
    waiters.release(message(2));
    await Promise.resolve();
    assert.deepEqual(done, [1, 2]);
    waiters.releaseAll();
    await Promise.resolve();
    assert.deepEqual(done, [1, 2, 3]);
    // No ticker left: advancing fires nothing and throws nothing.
    clock.advance(10 * FANOUT_WAIT_MS);
    assert.equal(waiters.count, 0);
  });
});
