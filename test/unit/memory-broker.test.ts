import { ManualClock } from "../../src/clock.js";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryBroker, MESSAGE_OVERHEAD_BYTES } from "../../src/broker/memory.js";
import type { Broker } from "../../src/broker/broker.js";
import { brokerSuite } from "../shared/broker-suite.js";

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
