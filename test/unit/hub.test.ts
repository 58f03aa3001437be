import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/clock.js";
import { MemoryBroker } from "../../src/broker/memory.js";
import type { Broker, ReadResult } from "../../src/broker/broker.js";
import { memberOf } from "../../src/hub/presence.js";
import { Hub, type Outgoing, type PresenceOut, type Subscriber, type Subscription } from "../../src/hub/hub.js";
import type { Position } from "../../src/hub/cursor.js";

type Event =
  | { kind: "subscribed"; epoch: string; latest: number; recovered: boolean }
  | { kind: "message"; offset: number; json: string }
  | { kind: "reset"; epoch: string; offset: number }
  | { kind: "presence" | "join" | "leave"; json: string };

class Recorder implements Subscriber {
  events: Event[] = [];
  deliver(_sub: Subscription, out: Outgoing): void {
    this.events.push({ kind: "message", offset: out.message.offset, json: out.message.json });
  }
  reset(_sub: Subscription, epoch: string, offset: number): void {
    this.events.push({ kind: "reset", epoch, offset });
  }
  subscribed(_sub: Subscription, epoch: string, latest: number, recovered: boolean): void {
    this.events.push({ kind: "subscribed", epoch, latest, recovered });
  }
  presence(_sub: Subscription, out: PresenceOut): void {
    this.events.push({ kind: out.type, json: out.json });
  }
  offsets(): number[] {
    return this.events.flatMap((e) => (e.kind === "message" ? [e.offset] : []));
  }
}

function setup(historySize = 100) {
  const clock = new ManualClock();
  const broker = new MemoryBroker({ historySize, historyTtl: 60, clock });
  return { clock, broker, hub: new Hub(broker) };
}

describe("Hub", () => {
  describe("fan-out", () => {
    it("hands every live message to every subscriber of the channel, in order, once", async () => {
      const { hub } = setup();
      const a = new Recorder();
      const b = new Recorder();
      await hub.subscribe(a, "c").ready;
      await hub.subscribe(b, "c").ready;
      for (let i = 0; i < 5; i++) await hub.publish("c", String(i));
      assert.deepEqual(a.offsets(), [1, 2, 3, 4, 5]);
      assert.deepEqual(b.offsets(), [1, 2, 3, 4, 5]);
    });

    it("encodes each message once, whatever the number of subscribers", async () => {
      const { hub } = setup();
      const outs = new Set<Outgoing>();
      const grab: Subscriber = { deliver: (_s, o) => void outs.add(o), reset() {}, subscribed() {}, presence() {} };
      for (let i = 0; i < 10; i++) await hub.subscribe(grab, "c").ready;
      await hub.publish("c", "1");
      assert.equal(outs.size, 1);
      const [out] = [...outs];
      assert.equal(out!.ws, out!.ws, "the WebSocket payload is cached");
      assert.equal(out!.ws.toString(), '{"type":"message","channel":"c","offset":1,"data":1}');
      assert.equal(out!.sse.toString(), 'data: {"channel":"c","offset":1,"data":1}\n\n');
    });

    it("stops delivering after unsubscribe and forgets the channel", async () => {
      const { hub } = setup();
      const a = new Recorder();
      const sub = hub.subscribe(a, "c");
      await sub.ready;
      await hub.publish("c", "1");
      hub.unsubscribe(sub);
      hub.unsubscribe(sub);
      await hub.publish("c", "2");
      assert.deepEqual(a.offsets(), [1]);
      assert.equal(hub.subscriberCount("c"), 0);
      assert.equal(hub.totalSubscriptions, 0);
    });
  });

  describe("subscribe from a position", () => {
    it("replays the messages after it, then continues live, with recovered: true", async () => {
      const { hub } = setup();
      const first = await hub.publish("c", "1");
      for (let i = 2; i <= 4; i++) await hub.publish("c", String(i));
      const a = new Recorder();
      await hub.subscribe(a, "c", { epoch: first.epoch, offset: 1 }).ready;
      await hub.publish("c", "5");
      assert.deepEqual(a.events[0], { kind: "subscribed", epoch: first.epoch, latest: 4, recovered: true });
      assert.deepEqual(a.offsets(), [2, 3, 4, 5]);
    });

    it("announces a reset when the position was trimmed, then continues live from the latest offset", async () => {
      const { hub } = setup(3);
      const first = await hub.publish("c", "1");
      for (let i = 2; i <= 10; i++) await hub.publish("c", String(i));
      const a = new Recorder();
      await hub.subscribe(a, "c", { epoch: first.epoch, offset: 2 }).ready;
      await hub.publish("c", "11");
      assert.deepEqual(a.events.slice(0, 2), [
        { kind: "subscribed", epoch: first.epoch, latest: 10, recovered: false },
        { kind: "reset", epoch: first.epoch, offset: 10 },
      ]);
      assert.deepEqual(a.offsets(), [11]);
    });

    it("announces a reset for an unknown epoch", async () => {
      const { hub } = setup();
      const m = await hub.publish("c", "1");
      const a = new Recorder();
      await hub.subscribe(a, "c", { epoch: "gone", offset: 1 }).ready;
      assert.deepEqual(a.events[1], { kind: "reset", epoch: m.epoch, offset: 1 });
    });

    it("merges messages published while history is being read, with no gap and no duplicate", async () => {
      // A broker whose reads are slow: publishes land between the read's start and its answer.
      const clock = new ManualClock();
      const inner = new MemoryBroker({ historySize: 100, historyTtl: 60, clock });
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const slow: Broker = Object.assign(Object.create(inner) as MemoryBroker, {
        async read(channel: string, since?: Position, limit?: number): Promise<ReadResult> {
          const r = inner.readSync(channel, since, limit);
          await gate;
          return r;
        },
      });
      const hub = new Hub(slow);
      const first = await hub.publish("c", "1");
      await hub.publish("c", "2");
      const a = new Recorder();
      const sub = hub.subscribe(a, "c", { epoch: first.epoch, offset: 0 });
      for (let i = 3; i <= 6; i++) await hub.publish("c", String(i));
      assert.deepEqual(a.offsets(), [], "nothing is delivered before history");
      release();
      await sub.ready;
      await hub.publish("c", "7");
      assert.deepEqual(a.offsets(), [1, 2, 3, 4, 5, 6, 7]);
    });

    it("leaves nothing behind when the broker read fails", async () => {
      const { broker } = setup();
      const failing: Broker = Object.assign(Object.create(broker) as MemoryBroker, {
        read: async (): Promise<ReadResult> => {
          throw new Error("down");
        },
      });
      const hub = new Hub(failing);
      await assert.rejects(hub.subscribe(new Recorder(), "c").ready, /down/);
      assert.equal(hub.totalSubscriptions, 0);
    });
  });

  describe("epochs", () => {
    it("tells a live subscriber about a new epoch with a reset before its first message", async () => {
      const { hub, broker, clock } = setup();
      const a = new Recorder();
      const m1 = await hub.publish("c", "1");
      await hub.subscribe(a, "c").ready;
      clock.advance(61_000);
      broker.sweep(clock.now());
      const m2 = await hub.publish("c", "2");
      assert.notEqual(m2.epoch, m1.epoch);
      assert.deepEqual(a.events.slice(1), [
        { kind: "reset", epoch: m2.epoch, offset: 0 },
        { kind: "message", offset: 1, json: '{"channel":"c","offset":1,"data":2}' },
      ]);
    });
  });

  describe("waiters", () => {
    it("wakes a waiter on any of its channels and forgets it once removed", async () => {
      const { hub } = setup();
      let woken = 0;
      const w = { wake: () => void woken++ };
      hub.addWaiter(["a", "b"], w);
      await hub.publish("b", "1");
      assert.equal(woken, 1);
      hub.removeWaiter(["a", "b"], w);
      await hub.publish("a", "1");
      assert.equal(woken, 1);
      assert.equal(hub.totalWaiters, 0);
    });
  });
});


describe("Hub presence", () => {
  function presenceHub(graceMs = 1000) {
    const clock = new ManualClock();
    const broker = new MemoryBroker({ historySize: 10, historyTtl: 60, clock });
    return { clock, hub: new Hub(broker, { presence: ["room:*"], presenceGraceMs: graceMs, now: () => clock.now() }) };
  }
  const settle = () => new Promise((r) => setImmediate(r));

  it("sends the snapshot after subscribed, then changes; a change is encoded once for every subscriber", async () => {
    const { hub } = presenceHub();
    const outs = new Set<PresenceOut>();
    const recorders = Array.from({ length: 10 }, () => new Recorder());
    for (let i = 0; i < 10; i++) {
      const r = recorders[i]!;
      const grab: Subscriber = { deliver() {}, reset() {}, subscribed: (...a) => r.subscribed(...a), presence: (s, o) => (outs.add(o), r.presence(s, o)) };
      await hub.subscribe(grab, "room:1", undefined, memberOf(`c${i}`, undefined, undefined)).ready;
    }
    await settle();
    assert.deepEqual(recorders[0]!.events.map((e) => e.kind), ["subscribed", "presence", ...Array(9).fill("join")]);
    outs.clear();
    await hub.subscribe(new Recorder(), "room:1", undefined, memberOf("late", undefined, undefined)).ready;
    await settle();
    const joins = [...outs].filter((o) => o.type === "join");
    assert.equal(joins.length, 1, "one encoded join for ten subscribers");
    assert.equal(JSON.parse(joins[0]!.json).client, "late");
  });

  it("lets a member go after the grace when its connection ends, at once when it unsubscribes; the ticker looks at leaving members only", async () => {
    const { hub, clock } = presenceHub(1000);
    const watcher = new Recorder();
    await hub.subscribe(watcher, "room:2", undefined, memberOf("w", undefined, undefined)).ready;
    const a = hub.subscribe(new Recorder(), "room:2", undefined, memberOf("a", undefined, undefined));
    const b = hub.subscribe(new Recorder(), "room:2", undefined, memberOf("b", undefined, undefined));
    await Promise.all([a.ready, b.ready]);
    hub.unsubscribe(a, true);
    hub.unsubscribe(b, false);
    await settle();
    const leaves = () => watcher.events.filter((e) => e.kind === "leave").map((e) => JSON.parse((e as { json: string }).json).client);
    assert.deepEqual(leaves(), ["b"]);
    clock.advance(999);
    hub.presence.tick(clock.now());
    await settle();
    assert.deepEqual(leaves(), ["b"], "still within the grace");
    clock.advance(1);
    hub.presence.tick(clock.now());
    await settle();
    assert.deepEqual(leaves(), ["b", "a"]);
    assert.equal(hub.presence.held, 1);
  });
});
