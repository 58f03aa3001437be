/**
 * The Broker contract as one suite, run against every implementation through
 * a factory: offsets, epochs, history bounds, read consistency, fan-out order,
 * history removal and signals.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Broker, StoredMessage } from "../../src/broker/broker.js";
import { waitFor } from "../helpers/recorded.js";
import { watch } from "../helpers/watch.js";

export interface BrokerFactory {
  /** A fresh broker keeping `historySize` messages per channel. */
  make(opts: { historySize: number; historyTtl: number }): Promise<Broker>;
  /** Moves the broker's notion of time forward (and runs its upkeep). */
  advance(broker: Broker, seconds: number): Promise<void>;
}

export function brokerSuite(name: string, factory: BrokerFactory): void {
  describe(`Broker contract: ${name}`, () => {
    const withBroker = async (opts: { historySize?: number; historyTtl?: number }, fn: (b: Broker) => Promise<void>) => {
      const b = await factory.make({ historySize: opts.historySize ?? 100, historyTtl: opts.historyTtl ?? 300 });
      try {
        await fn(b);
      } finally {
        await b.close();
      }
    };

    it("assigns offsets 1, 2, 3… per channel inside one epoch", () =>
      withBroker({}, async (b) => {
        const a1 = await b.publish("a", "1");
        const a2 = await b.publish("a", "2");
        const b1 = await b.publish("b", "3");
        assert.deepEqual([a1.offset, a2.offset, b1.offset], [1, 2, 1]);
        assert.equal(a1.epoch, a2.epoch);
        assert.match(a1.epoch, /^[A-Za-z0-9_-]{1,64}$/);
        assert.equal(a1.json, '{"channel":"a","offset":1,"data":1}');
      }));

    it("reports position 0 for a channel never published to, and keeps that epoch for its first message", () =>
      withBroker({}, async (b) => {
        const r = await b.read("fresh");
        assert.equal(r.offset, 0);
        assert.deepEqual(r.messages, []);
        assert.equal(r.recovered, false);
        const m = await b.publish("fresh", "true");
        assert.equal(m.epoch, r.epoch);
      }));

    it("reads exactly the messages after a position, oldest first, and honours limit", () =>
      withBroker({}, async (b) => {
        for (let i = 1; i <= 10; i++) await b.publish("c", String(i));
        const { epoch } = await b.read("c");
        const r = await b.read("c", { epoch, offset: 4 });
        assert.equal(r.recovered, true);
        assert.equal(r.offset, 10);
        assert.deepEqual(r.messages.map((m) => m.offset), [5, 6, 7, 8, 9, 10]);
        const limited = await b.read("c", { epoch, offset: 4 }, 3);
        assert.deepEqual(limited.messages.map((m) => m.offset), [5, 6, 7]);
        assert.equal(limited.recovered, true);
        const atEnd = await b.read("c", { epoch, offset: 10 });
        assert.equal(atEnd.recovered, true);
        assert.deepEqual(atEnd.messages, []);
      }));

    it("bounds history by historySize and refuses to recover from a trimmed position", () =>
      withBroker({ historySize: 5 }, async (b) => {
        for (let i = 1; i <= 12; i++) await b.publish("t", String(i));
        const { epoch } = await b.read("t");
        const ok = await b.read("t", { epoch, offset: 7 });
        assert.equal(ok.recovered, true);
        assert.deepEqual(ok.messages.map((m) => m.offset), [8, 9, 10, 11, 12]);
        const gone = await b.read("t", { epoch, offset: 6 });
        assert.equal(gone.recovered, false);
        assert.deepEqual(gone.messages, []);
        assert.equal(gone.offset, 12);
      }));

    it("refuses to recover from another epoch or from a position in the future", () =>
      withBroker({}, async (b) => {
        await b.publish("e", "1");
        const { epoch } = await b.read("e");
        assert.equal((await b.read("e", { epoch: "someOtherEpoch", offset: 0 })).recovered, false);
        assert.equal((await b.read("e", { epoch, offset: 5 })).recovered, false);
      }));

    it("changes the epoch when history expires after historyTtl", () =>
      withBroker({ historyTtl: 2 }, async (b) => {
        const first = await b.publish("x", "1");
        await factory.advance(b, 3);
        const second = await b.publish("x", "2");
        assert.notEqual(second.epoch, first.epoch);
        assert.equal(second.offset, 1);
        assert.equal((await b.read("x", { epoch: first.epoch, offset: 1 })).recovered, false);
      }));

    it("notifies the listener once per message, in offset order", () =>
      withBroker({}, async (b) => {
        const seen: StoredMessage[] = [];
        b.onMessage((m) => seen.push(m));
        await watch(b, "o");
        await Promise.all(Array.from({ length: 50 }, (_, i) => b.publish("o", String(i))));
        assert.deepEqual(seen.map((m) => m.offset), Array.from({ length: 50 }, (_, i) => i + 1));
      }));

    it("acknowledges a publish only once the message is readable", () =>
      withBroker({}, async (b) => {
        const m = await b.publish("ack", '{"k":"v"}');
        const r = await b.read("ack", { epoch: m.epoch, offset: m.offset - 1 });
        assert.deepEqual(r.messages.map((x) => x.json), [m.json]);
      }));

    it("answers a publish repeated with the same idempotency key with the first result, storing and notifying nothing", () =>
      withBroker({}, async (b) => {
        const seen: StoredMessage[] = [];
        b.onMessage((m) => seen.push(m));
        await watch(b, "idem");
        const first = await b.publish("idem", '"a"', "order-1");
        assert.equal(first.repeated, undefined);
        const again = await b.publish("idem", '"a"', "order-1");
        const other = await b.publish("idem", '"changed"', "order-1");
        for (const r of [again, other]) {
          assert.deepEqual([r.epoch, r.offset, r.repeated], [first.epoch, first.offset, true]);
        }
        const next = await b.publish("idem", '"b"');
        assert.equal(next.offset, first.offset + 1, "the repeats took no offset");
        const r = await b.read("idem", { epoch: first.epoch, offset: 0 });
        assert.deepEqual(r.messages.map((m) => m.json), ['{"channel":"idem","offset":1,"data":"a"}', '{"channel":"idem","offset":2,"data":"b"}']);
        assert.deepEqual(seen.map((m) => m.offset), [1, 2], "the listener got each stored message once");
      }));

    it("stores publishes with different idempotency keys, and the same key on another channel", () =>
      withBroker({}, async (b) => {
        const k1 = await b.publish("keys", "1", "k1");
        const k2 = await b.publish("keys", "2", "k2");
        const elsewhere = await b.publish("keys2", "3", "k1");
        assert.deepEqual([k1.offset, k2.offset, elsewhere.offset], [1, 2, 1]);
        assert.ok(!k2.repeated && !elsewhere.repeated);
        assert.equal((await b.publish("keys2", "3", "k1")).offset, 1);
        assert.equal((await b.read("keys")).offset, 2);
      }));

    it("forgets an idempotency key after its TTL (300 s by default): a later publish with it is stored", () =>
      withBroker({ historyTtl: 1000 }, async (b) => {
        const first = await b.publish("ttl", "1", "once");
        await factory.advance(b, 200);
        assert.equal((await b.publish("ttl", "1", "once")).repeated, true, "still remembered at 200 s");
        await factory.advance(b, 101);
        const later = await b.publish("ttl", "1", "once");
        assert.equal(later.repeated, undefined);
        assert.deepEqual([later.epoch, later.offset], [first.epoch, 2]);
      }));

    it("removes a channel's history: the next read is a new epoch at 0, the next publish gets offset 1, idempotency keys stay", () =>
      withBroker({}, async (b) => {
        assert.ok(b.removeHistory, "the broker can remove history");
        const seen: StoredMessage[] = [];
        b.onMessage((m) => seen.push(m));
        await watch(b, "rm");
        const keyed = await b.publish("rm", "1", "kept");
        await b.publish("rm", "2");
        await b.publish("rm", "3");
        await b.removeHistory!("rm");
        const r = await b.read("rm", { epoch: keyed.epoch, offset: 1 });
        assert.notEqual(r.epoch, keyed.epoch);
        assert.deepEqual([r.offset, r.recovered, r.messages], [0, false, []]);
        const next = await b.publish("rm", "4");
        assert.deepEqual([next.epoch, next.offset], [r.epoch, 1]);
        assert.equal((await b.publish("rm", "1", "kept")).repeated, true, "the key still answers its first result");
        await b.removeHistory!("rm");
        await b.removeHistory!("never-published");
        const unread = await b.publish("rm", "5");
        assert.equal(unread.offset, 1, "a publish right after the removal starts the new epoch");
        assert.notEqual(unread.epoch, next.epoch);
        await waitFor(() => seen.length >= 5, 5000, "5 messages");
        assert.deepEqual(seen.map((m) => [m.epoch, m.offset]), [
          [keyed.epoch, 1],
          [keyed.epoch, 2],
          [keyed.epoch, 3],
          [next.epoch, 1],
          [unread.epoch, 1],
        ]);
      }));

    it("hands a signal to this node's listener once, as sent", () =>
      withBroker({}, async (b) => {
        assert.ok(b.signal && b.onSignal, "the broker has signals");
        const got: string[] = [];
        b.onSignal!((p) => got.push(p));
        const odd = '{"action":"disconnect","user":"ü\\n"}\n\u0000';
        await b.signal!("one");
        await b.signal!(odd);
        await b.signal!("");
        await waitFor(() => got.length >= 3, 5000, "3 signals");
        await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(got, ["one", odd, ""]);
      }));
  });
}
