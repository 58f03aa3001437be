import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MAX_HOLD_MS, WriteBatch, type Corkable, type FlushScheduler, type Gathering } from "../../src/transports/batch.js";

/** A scheduler whose time and callbacks the test moves by hand. */
class FakeScheduler implements FlushScheduler {
  t = 1000;
  turnEnd: Array<() => void> = [];
  timers: Array<{ ms: number; fn: () => void }> = [];
  now(): number {
    return this.t;
  }
  endOfTurn(fn: () => void): void {
    this.turnEnd.push(fn);
  }
  after(ms: number, fn: () => void): void {
    this.timers.push({ ms, fn });
  }
  runTurnEnd(): void {
    for (const fn of this.turnEnd.splice(0)) fn();
  }
  runTimers(): void {
    for (const { fn } of this.timers.splice(0)) fn();
  }
}

/** A socket stand-in that records its cork depth and what it was told. */
class Target implements Corkable {
  depth = 0;
  uncorks = 0;
  constructor(
    readonly name: string,
    readonly log: string[],
  ) {}
  cork(): void {
    this.depth++;
  }
  uncork(): void {
    this.depth--;
    this.uncorks++;
    this.log.push(this.name);
  }
}

describe("WriteBatch", () => {
  it("without a delay, uncorks every target corked in a turn at its end, in order", () => {
    const s = new FakeScheduler();
    const log: string[] = [];
    const batch = new WriteBatch(0, s);
    const a = new Target("a", log);
    const b = new Target("b", log);
    batch.corkUntilFlush(a);
    batch.corkUntilFlush(b);
    assert.equal(s.turnEnd.length, 1, "one flush per batch, not one per target");
    assert.deepEqual([a.depth, b.depth], [1, 1]);
    s.runTurnEnd();
    assert.deepEqual(log, ["a", "b"]);
    assert.deepEqual([a.depth, b.depth], [0, 0]);
    // The next turn's writes go at its end too, however soon it comes.
    batch.corkUntilFlush(a);
    assert.equal(s.turnEnd.length, 1);
    assert.equal(s.timers.length, 0);
  });

  it("flushes a quiet server's writes at the end of the turn", () => {
    const s = new FakeScheduler();
    const batch = new WriteBatch(2, s);
    batch.corkUntilFlush(new Target("a", []));
    assert.equal(s.turnEnd.length, 1, "the first flush ever goes at the end of the turn");
    assert.equal(s.timers.length, 0);
    s.runTurnEnd();
    s.t += 2.5;
    batch.corkUntilFlush(new Target("b", []));
    assert.equal(s.turnEnd.length, 1, "more than the delay after the last flush: at the end of the turn");
    assert.equal(s.timers.length, 0);
  });

  it("on a busy server, holds writes until the delay has passed since the previous flush", () => {
    const s = new FakeScheduler();
    const log: string[] = [];
    const batch = new WriteBatch(2, s);
    const a = new Target("a", log);
    batch.corkUntilFlush(a);
    s.runTurnEnd();
    s.t += 0.5;
    batch.corkUntilFlush(a);
    assert.equal(s.turnEnd.length, 0, "not at the end of this turn");
    assert.deepEqual(
      s.timers.map((x) => x.ms),
      [1.5],
      "2 ms after the previous flush",
    );
    // Later turns before the flush add to the same batch.
    s.t += 1;
    const b = new Target("b", log);
    batch.corkUntilFlush(b);
    assert.equal(s.timers.length, 1, "one pending flush");
    assert.equal(a.depth, 1);
    s.t += 0.5;
    s.runTimers();
    assert.deepEqual(log, ["a", "a", "b"]);
    assert.deepEqual([a.depth, b.depth], [0, 0]);
  });

  it("after a flush that took longer than the delay, holds the next one as long as it took", () => {
    const s = new FakeScheduler();
    const batch = new WriteBatch(1, s);
    let cost = 6;
    // A flush of many connections: writing them takes `cost` ms of the clock.
    const slow: Corkable = { cork() {}, uncork: () => void (s.t += cost) };
    batch.corkUntilFlush(slow);
    s.runTurnEnd();
    s.t += 0.5;
    batch.corkUntilFlush(slow);
    assert.equal(s.turnEnd.length, 0);
    assert.deepEqual(
      s.timers.map((x) => x.ms),
      [5.5],
      "6 ms after the end of the 6 ms flush, not 1 ms",
    );
    // A flush as short as the delay brings the hold back to the delay.
    cost = 0.2;
    s.t += 5.5;
    s.runTimers();
    s.t += 0.5;
    batch.corkUntilFlush(slow);
    assert.deepEqual(
      s.timers.map((x) => x.ms),
      [0.5],
    );
  });

  it("holds the next flush at most MAX_HOLD_MS, and not at all without a delay", () => {
    const s = new FakeScheduler();
    const held = new WriteBatch(1, s);
    const slow: Corkable = { cork() {}, uncork: () => void (s.t += 10 * MAX_HOLD_MS) };
    held.corkUntilFlush(slow);
    s.runTurnEnd();
    held.corkUntilFlush(slow);
    assert.deepEqual(
      s.timers.splice(0).map((x) => x.ms),
      [MAX_HOLD_MS],
    );
    const immediate = new WriteBatch(0, s);
    immediate.corkUntilFlush(slow);
    s.runTurnEnd();
    immediate.corkUntilFlush(slow);
    assert.equal(s.timers.length, 0, "--write-delay-ms 0: every turn's writes go at its end");
    assert.equal(s.turnEnd.length, 1);
  });

  it("puts a target corked during a flush in the next batch", () => {
    const s = new FakeScheduler();
    const log: string[] = [];
    const batch = new WriteBatch(0, s);
    const late = new Target("late", log);
    const first: Corkable = {
      cork() {},
      uncork() {
        log.push("first");
        batch.corkUntilFlush(late);
      },
    };
    batch.corkUntilFlush(first);
    s.runTurnEnd();
    assert.deepEqual(log, ["first"]);
    assert.equal(late.depth, 1, "still corked");
    assert.equal(s.turnEnd.length, 1, "a new flush is scheduled");
    s.runTurnEnd();
    assert.deepEqual(log, ["first", "late"]);
  });
});

/** A connection stand-in that records what each flush gave it. */
class Gatherer implements Gathering {
  gatherFirst = -1;
  gatherLast = -1;
  writes: Buffer[] = [];
  writeGathered(bytes: Buffer): void {
    this.writes.push(bytes);
  }
}

describe("WriteBatch: gathered buffers", () => {
  const frame = (s: string) => Buffer.from(s);

  it("gives each target its buffers at the flush, in order, as one buffer; a single buffer as it is", () => {
    const s = new FakeScheduler();
    const batch = new WriteBatch(0, s);
    const a = new Gatherer();
    const b = new Gatherer();
    const one = frame("1");
    batch.gather(a, one);
    batch.gather(b, frame("x"));
    batch.gather(a, frame("2"));
    batch.gather(a, frame("3"));
    assert.equal(s.turnEnd.length, 1, "one flush for the batch");
    assert.deepEqual([a.writes.length, b.writes.length], [0, 0], "nothing before the flush");
    s.runTurnEnd();
    assert.deepEqual(a.writes.map(String), ["123"]);
    assert.deepEqual(b.writes.map(String), ["x"]);
    // The next batch starts empty.
    batch.gather(a, one);
    s.runTurnEnd();
    assert.equal(a.writes[1], one, "a lone buffer is written as it is, not copied");
  });

  it("joins once for targets given the same buffers in the same order, and apart for any other run", () => {
    const s = new FakeScheduler();
    const batch = new WriteBatch(0, s);
    const [m1, m2, m3] = [frame("m1"), frame("m2"), frame("m3")];
    const same = [new Gatherer(), new Gatherer(), new Gatherer()];
    const shorter = new Gatherer();
    const other = new Gatherer();
    for (const m of [m1, m2]) {
      for (const g of same) batch.gather(g, m);
      batch.gather(other, m === m1 ? m1 : m3);
    }
    batch.gather(shorter, m1);
    batch.gather(shorter, m2);
    batch.gather(shorter, m3);
    s.runTurnEnd();
    assert.equal(String(same[0]!.writes[0]), "m1m2");
    assert.equal(same[1]!.writes[0], same[0]!.writes[0], "shared, not joined again");
    assert.equal(same[2]!.writes[0], same[0]!.writes[0]);
    assert.equal(String(other.writes[0]), "m1m3");
    assert.equal(String(shorter.writes[0]), "m1m2m3");
  });

  it("hands a target's buffers over early with take, and the flush then skips it", () => {
    const s = new FakeScheduler();
    const batch = new WriteBatch(0, s);
    const a = new Gatherer();
    assert.equal(batch.take(a), undefined);
    batch.gather(a, frame("1"));
    batch.gather(a, frame("2"));
    assert.equal(String(batch.take(a)), "12");
    batch.gather(a, frame("3"));
    s.runTurnEnd();
    assert.deepEqual(a.writes.map(String), ["3"], "only what was gathered after the take");
  });

  it("keeps buffers gathered during a flush for the next one", () => {
    const s = new FakeScheduler();
    const batch = new WriteBatch(0, s);
    const late = new Gatherer();
    const first: Gathering = {
      gatherFirst: -1,
      gatherLast: -1,
      writeGathered: () => batch.gather(late, frame("late")),
    };
    batch.gather(first, frame("a"));
    s.runTurnEnd();
    assert.equal(late.writes.length, 0);
    assert.equal(s.turnEnd.length, 1, "a new flush is scheduled");
    s.runTurnEnd();
    assert.deepEqual(late.writes.map(String), ["late"]);
  });
  it("runs what must follow a turn's writes after the flush due at its end, and nothing when none is due", () => {
    const s = new FakeScheduler();
    const log: string[] = [];
    const batch = new WriteBatch(2, s);
    assert.equal(batch.afterThisTurn(() => log.push("answer")), false, "nothing written: nothing to wait for");
    batch.corkUntilFlush(new Target("a", log));
    batch.corkUntilFlush(new Target("b", log));
    assert.equal(batch.afterThisTurn(() => log.push("answer")), true);
    assert.equal(log.length, 0, "not before the flush");
    s.runTurnEnd();
    assert.deepEqual(log, ["a", "b", "answer"], "after every target of the flush");
    // Within the delay the next flush is held by a timer: what follows runs at once instead.
    s.t += 1;
    batch.corkUntilFlush(new Target("c", log));
    assert.equal(s.timers.length, 1);
    assert.equal(batch.afterThisTurn(() => log.push("late")), false);
    s.runTimers();
    assert.deepEqual(log, ["a", "b", "answer", "c"], "a held flush runs nothing else");
    // Past the delay again: due at the end of the turn; runs once.
    s.t += 5;
    batch.corkUntilFlush(new Target("d", log));
    assert.equal(batch.afterThisTurn(() => log.push("answer2")), true);
    s.runTurnEnd();
    s.t += 5;
    batch.corkUntilFlush(new Target("e", log));
    s.runTurnEnd();
    assert.deepEqual(log, ["a", "b", "answer", "c", "d", "answer2", "e"]);
  });

  it("runs what follows a turn's gathered frames after they are written", () => {
    const s = new FakeScheduler();
    const log: string[] = [];
    const batch = new WriteBatch(0, s);
    const t: Gathering = { gatherFirst: -1, gatherLast: -1, writeGathered: (b) => log.push(b.toString()) };
    batch.gather(t, Buffer.from("x"));
    assert.equal(batch.afterThisTurn(() => log.push("answer")), true);
    s.runTurnEnd();
    assert.deepEqual(log, ["x", "answer"]);
  });
});
