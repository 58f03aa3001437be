import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { ManualClock } from "../../src/clock.js";
import { LogLimiter } from "../../src/log.js";

function setup(level = "debug") {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const clock = new ManualClock();
  return { lines, clock, limiter: new LogLimiter(log, clock, 3, 1000) };
}

describe("LogLimiter", () => {
  it("writes at most `limit` lines per kind and interval, then reports the rest once the interval ends", () => {
    const { lines, clock, limiter } = setup();
    for (let i = 0; i < 10; i++) limiter.write("a", "warn", { i }, "line a");
    for (let i = 0; i < 2; i++) limiter.write("b", "debug", {}, "line b");
    assert.equal(lines.filter((l) => l.kind === "a").length, 3);
    assert.equal(lines.filter((l) => l.kind === "b").length, 2);
    limiter.sweep();
    assert.equal(lines.length, 5, "nothing reported before the interval ends");
    clock.advance(1000);
    limiter.sweep();
    const summary = lines.filter((l) => l.suppressed !== undefined);
    assert.deepEqual(summary.map((l) => [l.kind, l.suppressed]), [["a", 7]]);
    // A new interval starts afresh.
    limiter.write("a", "warn", {}, "line a");
    assert.equal(lines.filter((l) => l.kind === "a" && l.suppressed === undefined).length, 4);
  });

  it("counts nothing for a level that is off", () => {
    const { lines, clock, limiter } = setup("info");
    for (let i = 0; i < 10; i++) limiter.write("d", "debug", {}, "quiet");
    clock.advance(1000);
    limiter.sweep();
    assert.equal(lines.length, 0);
  });
});
