import { ManualClock } from "../../src/clock.js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryBroker, MESSAGE_OVERHEAD_BYTES } from "../../src/broker/memory.js";
import type { Broker } from "../../src/broker/broker.js";
import { brokerSuite } from "../shared/broker-suite.js";
import { holdsSuite } from "../shared/holds-suite.js";

const clocks = new WeakMap<Broker, ManualClock>();

brokerSuite("memory", {
  async make({ historySize, historyTtl }) {
    const clock = new ManualClock();
    const b = new MemoryBroker({ historySize, historyTtl, clock });
    clocks.set(b, clock);
    return b;
  },
  async advance(b, seconds) {
    const clock = clocks.get(b)!;
    clock.advance(seconds * 1000);
    b.sweep(clock.now());
  },
});

holdsSuite("memory", {
  async make() {
    const clock = new ManualClock();
    const b = new MemoryBroker({ historySize: 10, historyTtl: 300, clock });
    return { holds: b.holds, now: () => clock.now(), close: () => b.close() };
  },
});

describe("memory broker bounds", () => {
  const make = (opts: Partial<ConstructorParameters<typeof MemoryBroker>[0]> = {}) => {
    const clock = new ManualClock();
    return { clock, b: new MemoryBroker({ historySize: 100, historyTtl: 300, clock, ...opts }) };
  };
  const cost = (json: string) => Buffer.byteLength(json) + MESSAGE_OVERHEAD_BYTES;

  it("keeps exactly the last historySize messages while its buffer grows, for sizes that are not powers of two", () => {
    for (const size of [1, 3, 7, 10, 13]) {
      const { b } = make({ historySize: size });
      const msgs = Array.from({ length: 3 * size + 2 }, (_, i) => b.publishSync("g", String(i)));
      const last = msgs.at(-1)!;
      const r = b.readSync("g", { epoch: last.epoch, offset: last.offset - size });
      assert.equal(r.recovered, true, `size ${size}`);
      assert.deepEqual(r.messages.map((m) => m.offset), msgs.slice(-size).map((m) => m.offset));
      assert.equal(b.readSync("g", { epoch: last.epoch, offset: last.offset - size - 1 }).recovered, false);
      assert.equal(b.historyBytes, msgs.slice(-size).reduce((n, m) => n + cost(m.json), 0));
    }
  });

  it("drops the oldest messages of the least recently published channels past maxHistoryBytes, never the message just published", () => {
    const data = JSON.stringify("x".repeat(1000));
    const one = cost(`{"channel":"a","offset":1,"data":${data}}`);
    const { b } = make({ maxHistoryBytes: 5 * one + 10 });
    const a1 = b.publishSync("a", data);
    b.publishSync("a", data);
    const b1 = b.publishSync("b", data);
    b.publishSync("b", data);
    b.publishSync("a", data); // a is now the most recently published
    assert.equal(b.evictedMessages, 0);
    b.publishSync("c", data); // 6 messages: b (least recent) loses its oldest
    assert.equal(b.evictedMessages, 1);
    assert.equal(b.readSync("b", { epoch: b1.epoch, offset: 0 }).recovered, false, "a resume before the dropped message is a reset");
    assert.deepEqual(b.readSync("b", { epoch: b1.epoch, offset: 1 }).messages.map((m) => m.offset), [2]);
    assert.deepEqual(b.readSync("a", { epoch: a1.epoch, offset: 0 }).messages.map((m) => m.offset), [1, 2, 3]);
    b.publishSync("c", data);
    b.publishSync("c", data); // b is emptied, then a loses its oldest
    assert.equal(b.readSync("b", { epoch: b1.epoch, offset: 2 }).recovered, true, "nothing after b's latest: still recovered");
    assert.equal(b.readSync("a", { epoch: a1.epoch, offset: 0 }).recovered, false);
    assert.ok(b.historyBytes <= 5 * one + 10);
    const big = new MemoryBroker({ historySize: 100, historyTtl: 300, clock: new ManualClock(), maxHistoryBytes: 1024 });
    const m = big.publishSync("solo", data);
    assert.deepEqual(big.readSync("solo", { epoch: m.epoch, offset: 0 }).messages.map((x) => x.offset), [1], "a message larger than the cap is still kept");
  });

  it("forgets a channel that is only read after readTtl unless it is in use, and counts its history bytes back on expiry", () => {
    const { b, clock } = make({ readTtl: 60, historyTtl: 300 });
    b.readSync("read-only");
    b.readSync("held");
    b.publishSync("pub", '"x"');
    assert.equal(b.channelCount, 3);
    clock.advance(59_000);
    b.readSync("read-only"); // a read renews it
    clock.advance(2_000);
    b.sweep(clock.now(), (c) => c === "held");
    assert.equal(b.channelCount, 3);
    clock.advance(60_000);
    b.sweep(clock.now(), (c) => c === "held");
    assert.equal(b.channelCount, 2, "read-only forgotten; held and the published one kept");
    clock.advance(300_000);
    b.sweep(clock.now(), () => true);
    assert.equal(b.channelCount, 1, "a published channel expires after historyTtl as before");
    assert.equal(b.historyBytes, 0);
  });

  it("refuses a new channel past maxChannels with channel_limit, and serves existing ones", () => {
    const { b } = make({ maxChannels: 2 });
    b.readSync("one");
    b.publishSync("two", "1");
    assert.throws(() => b.readSync("three"), { code: "channel_limit", status: 503 });
    assert.throws(() => b.publishSync("three", "1"), { code: "channel_limit" });
    assert.equal(b.publishSync("one", "1").offset, 1);
    assert.equal(b.readSync("two").offset, 1);
  });
});

describe("memory broker idempotency keys", () => {
  const make = (opts: Partial<ConstructorParameters<typeof MemoryBroker>[0]> = {}) => {
    const clock = new ManualClock();
    return { clock, b: new MemoryBroker({ historySize: 100, historyTtl: 3600, clock, ...opts }) };
  };

  it("remembers a key for idempotencyTtl seconds by the injected clock, and the sweep forgets it without a timer", () => {
    const { clock, b } = make({ idempotencyTtl: 10 });
    const first = b.publishSync("c", "1", "k");
    clock.advance(9_999);
    assert.equal(b.publishSync("c", "1", "k").offset, first.offset);
    b.sweep(clock.now());
    assert.equal(b.idempotencyKeyCount, 1);
    clock.advance(1);
    b.sweep(clock.now());
    assert.equal(b.idempotencyKeyCount, 0, "swept at the TTL");
    const later = b.publishSync("c", "1", "k");
    assert.equal(later.offset, 2);
    assert.equal(later.repeated, undefined);
  });

  it("ignores an expired key the sweep has not reached yet", () => {
    const { clock, b } = make({ idempotencyTtl: 1 });
    b.publishSync("c", "1", "k");
    clock.advance(1000);
    assert.equal(b.publishSync("c", "1", "k").offset, 2);
  });

  it("sweeps only the expired keys, oldest first", () => {
    const { clock, b } = make({ idempotencyTtl: 10 });
    for (let i = 0; i < 5; i++) {
      b.publishSync("c", "1", `k${i}`);
      clock.advance(1000);
    }
    clock.advance(6000); // k0 is 11 s old, k4 7 s
    b.sweep(clock.now());
    assert.equal(b.idempotencyKeyCount, 3);
    assert.equal(b.publishSync("c", "1", "k2").repeated, true);
    assert.equal(b.publishSync("c", "1", "k1").repeated, undefined);
  });

  it("holds at most maxIdempotencyKeys, forgetting the oldest first", () => {
    const { b } = make({ maxIdempotencyKeys: 3 });
    for (let i = 1; i <= 5; i++) b.publishSync("c", String(i), `k${i}`);
    assert.equal(b.idempotencyKeyCount, 3);
    for (const k of ["k3", "k4", "k5"]) assert.equal(b.publishSync("c", "0", k).repeated, true, k);
    const again = b.publishSync("c", "1", "k1");
    assert.equal(again.repeated, undefined, "the oldest key was forgotten");
    assert.equal(again.offset, 6);
    assert.equal(b.idempotencyKeyCount, 3);
  });

  it("stays bounded under a flood of distinct keys (default bound 100,000)", () => {
    const { b } = make({ historySize: 1 });
    for (let i = 0; i < 100_500; i++) b.publishSync("flood", "0", `key-${i}`);
    assert.equal(b.idempotencyKeyCount, 100_000);
  });

  it("does not remember a key whose publish was refused (channel limit)", () => {
    const { b } = make({ maxChannels: 1 });
    b.publishSync("one", "1");
    assert.throws(() => b.publishSync("two", "1", "k"), /maximum/);
    assert.equal(b.idempotencyKeyCount, 0);
  });
});
