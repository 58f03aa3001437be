/**
 * Holds and signals of RedisBroker against a private redis-server: the shared
 * Holds contract, the key layout, two brokers as two nodes (refcounted joins
 * and leaves, expiry of a dead node's holds, one version order), batched
 * refresh, signals, and outages.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import type { HoldChange } from "../../src/broker/holds.js";
import { RedisBroker } from "../../src/broker/redis.js";
import { HOLD_KEY_MARGIN_MS, parseChange } from "../../src/broker/redis-holds.js";
import { ManualClock, systemClock } from "../../src/clock.js";
import { BrokerUnavailableError } from "../../src/errors.js";
import { RedisServer, redisSkip } from "../helpers/redis.js";
import { waitFor } from "../helpers/server.js";
import { holdsSuite } from "../shared/holds-suite.js";
import { watch } from "../helpers/watch.js";

describe("RedisBroker holds and signals", { skip: redisSkip }, () => {
  let redis: RedisServer;
  let admin: Redis;
  let nextPrefix = 0;
  const open = new Set<RedisBroker>();

  before(async () => {
    redis = await RedisServer.start();
    admin = new Redis(redis.url, { lazyConnect: true });
    await admin.connect();
  });
  after(async () => {
    await Promise.all([...open].map((b) => b.close()));
    admin?.disconnect();
    await redis?.stop();
  });

  /** A broker (a node); brokers given the same prefix and clock are nodes of one cluster. */
  async function node(opts: { prefix?: string; clock?: ManualClock; url?: string; commandTimeoutMs?: number } = {}): Promise<RedisBroker> {
    const b = new RedisBroker({
      url: opts.url ?? redis.url,
      historySize: 100,
      historyTtl: 300,
      prefix: opts.prefix ?? `h${nextPrefix++}:`,
      clock: opts.clock ?? new ManualClock(),
      commandTimeoutMs: opts.commandTimeoutMs,
    });
    open.add(b);
    assert.equal(await b.waitReady(5000), true, "the broker connects");
    return b;
  }

  /** Two nodes of one cluster on one shared clock, each recording the changes it is told. */
  async function cluster(prefix: string) {
    const clock = new ManualClock();
    const a = await node({ prefix, clock });
    const b = await node({ prefix, clock });
    const seenA: HoldChange[] = [];
    const seenB: HoldChange[] = [];
    a.holds.onChange((c) => seenA.push(c));
    b.holds.onChange((c) => seenB.push(c));
    return { clock, a, b, seenA, seenB };
  }

  const brief = (c: HoldChange) => `${c.kind} ${c.set} ${c.key}`;
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

  holdsSuite("redis", {
    async make() {
      const clock = new ManualClock();
      const b = await node({ clock });
      return {
        holds: b.holds,
        now: () => clock.now(),
        close: async () => {
          open.delete(b);
          await b.close();
        },
      };
    },
  });

  describe("storage", () => {
    it("keeps a set in four keys with one hash tag, living until the latest expiry plus the margin; an empty set keeps only its version", async () => {
      const clock = new ManualClock();
      const b = await node({ prefix: "lay:", clock });
      await b.holds.hold("chat:lobby", "u1", '{"user":"u1"}', 30_000);
      await b.holds.hold("chat:lobby", "u2", '{"user":"u2"}', 10_000);
      const id = b.holds.nodeId;
      assert.match(id, /^[A-Za-z0-9_-]{16}$/);
      assert.deepEqual((await admin.keys("lay:*")).sort(), ["lay:{chat:lobby}:pc", "lay:{chat:lobby}:ph", "lay:{chat:lobby}:pm", "lay:{chat:lobby}:pv"]);
      assert.deepEqual(await admin.zrange("lay:{chat:lobby}:ph", 0, -1, "WITHSCORES"), [`u2\n${id}`, "10000", `u1\n${id}`, "30000"]);
      assert.deepEqual(await admin.hgetall("lay:{chat:lobby}:pm"), { u1: '{"user":"u1"}', u2: '{"user":"u2"}' });
      assert.deepEqual(await admin.hgetall("lay:{chat:lobby}:pc"), { u1: "1", u2: "1" });
      const version = Number(await admin.get("lay:{chat:lobby}:pv"));
      assert.equal((await b.holds.members("chat:lobby")).version, version);
      assert.ok(Math.abs(version - Date.now() * 1000) < 60_000_000, "the version is Redis time in µs");
      for (const k of ["ph", "pm", "pc", "pv"]) {
        const ttl = await admin.pttl(`lay:{chat:lobby}:${k}`);
        assert.ok(ttl > 30_000 + HOLD_KEY_MARGIN_MS - 5000 && ttl <= 30_000 + HOLD_KEY_MARGIN_MS, `${k}: pttl ${ttl}, the latest expiry + margin`);
      }
      await b.holds.refresh([["chat:lobby", "u2"]], 100_000);
      assert.equal(await admin.zscore("lay:{chat:lobby}:ph", `u2\n${id}`), "100000");
      assert.ok((await admin.pttl("lay:{chat:lobby}:pm")) > 100_000 + HOLD_KEY_MARGIN_MS - 5000, "refresh moves the keys' lifetime");
      await b.holds.release("chat:lobby", "u1");
      await b.holds.release("chat:lobby", "u2");
      assert.deepEqual(await admin.keys("lay:*"), ["lay:{chat:lobby}:pv"], "an empty set leaves only its version");
      const left = await admin.pttl("lay:{chat:lobby}:pv");
      assert.ok(left > HOLD_KEY_MARGIN_MS - 5000 && left <= HOLD_KEY_MARGIN_MS, `the version lives the margin (pttl ${left})`);
    });

    it("stores the expiries of the system clock as wall-clock ms, so nodes started at different times agree", async () => {
      const b = new RedisBroker({ url: redis.url, historySize: 10, historyTtl: 300, prefix: "wall:" });
      open.add(b);
      assert.equal(await b.waitReady(5000), true);
      const now = systemClock.now();
      await b.holds.hold("s", "k", "1", now + 10_000);
      const score = Number(await admin.zscore("wall:{s}:ph", `k\n${b.holds.nodeId}`));
      assert.ok(Math.abs(score - (Date.now() + 10_000)) < 1000, `score ${score} is wall-clock ms`);
      // Another node's view: a hold lives until its wall-clock expiry, whatever that node's uptime.
      await admin.zadd("wall:{s}:ph", Date.now() - 1000, "lapsed\nAAAAAAAAAAAAAAAA");
      await admin.hset("wall:{s}:pm", "lapsed", "2");
      await admin.hset("wall:{s}:pc", "lapsed", "1");
      assert.deepEqual((await b.holds.members("s")).members, ["1"]);
      await b.holds.expire("s", systemClock.now());
      assert.equal(await admin.zcard("wall:{s}:ph"), 1, "the lapsed hold is expired, the live one kept");
    });

    it("publishes each change on <prefix>holds as `<version> <previous> <j|l>` and the set, key and member", async () => {
      const b = await node({ prefix: "wire:" });
      const tap = new Redis(redis.url);
      const payloads: string[] = [];
      try {
        await tap.subscribe("wire:holds");
        tap.on("message", (_c: string, p: string) => payloads.push(p));
        await b.holds.hold("s", "k\n1", '{"a":1}', 5000);
        await b.holds.release("s", "k\n1");
        await waitFor(() => payloads.length === 2, 5000, "2 changes");
        const [join, leave] = payloads.map((p) => parseChange(p)!);
        assert.match(payloads[0]!, /^\d+ \d+ j\n"s"\n"k\\n1"\n\{"a":1\}$/);
        assert.deepEqual([join!.kind, join!.key, leave!.kind, leave!.member], ["join", "k\n1", "leave", '{"a":1}']);
        assert.equal(leave!.previous, join!.version);
      } finally {
        tap.disconnect();
      }
    });

    it("ignores malformed changes on the holds channel and keeps working", async () => {
      const { a, seenA } = await cluster("bad:");
      for (const p of ["", "x", "1 0 j\nnot json\n\"k\"\nm", "1 0 q\n\"s\"\n\"k\"\nm", "1 0 j\n1\n\"k\"\nm", "abc 0 j\n\"s\"\n\"k\"\nm", "9".repeat(30) + " 0 j\n\"s\"\n\"k\"\nm", " 0 j\n\"s\"\n\"k\"\nm", "1 0 j \n\"s\"\n\"k\"\nm"]) {
        await admin.publish("bad:holds", p);
      }
      await a.holds.hold("s", "k", "1", 1000);
      await waitFor(() => seenA.length >= 1, 5000, "the real join");
      await pause(20);
      assert.deepEqual(seenA.map(brief), ["join s k"]);
      assert.equal(a.isReady(), true);
    });
  });

  describe("bad input", () => {
    it("refuses a time that is not a finite number with a TypeError, storing nothing", async () => {
      const b = await node({ prefix: "nan:" });
      for (const t of [NaN, Infinity, -Infinity, "5" as unknown as number]) {
        await assert.rejects(b.holds.hold("s", "k", "1", t), TypeError);
        await assert.rejects(b.holds.refresh([["s", "k"]], t), TypeError);
        await assert.rejects(b.holds.expire("s", t), TypeError);
      }
      assert.deepEqual(await admin.keys("nan:*"), []);
      assert.equal(await b.holds.hold("s", "k", "1", 1000), true, "still works");
    });
  });

  describe("two nodes", () => {
    it("tells both nodes of a join made on one", async () => {
      const { a, seenA, seenB } = await cluster("n1:");
      assert.equal(await a.holds.hold("room", "alice", '{"user":"alice"}', 5000), true);
      await waitFor(() => seenA.length === 1 && seenB.length === 1, 5000, "the join on both nodes");
      assert.deepEqual(seenB[0], seenA[0]);
      assert.equal(seenB[0]!.member, '{"user":"alice"}');
    });

    it("counts a key held on both nodes as one member: one join, and a leave only when the last node releases it", async () => {
      const { a, b, seenA, seenB } = await cluster("n2:");
      assert.equal(await a.holds.hold("room", "bob", '"bob"', 5000), true);
      assert.equal(await b.holds.hold("room", "bob", '"bob"', 5000), false, "held already by the other node");
      assert.deepEqual((await b.holds.members("room")).members, ['"bob"']);
      assert.equal(await a.holds.release("room", "bob"), false, "node b still holds it");
      assert.deepEqual((await a.holds.members("room")).members, ['"bob"']);
      assert.equal(await a.holds.release("room", "bob"), false, "node a holds it no more");
      assert.equal(await b.holds.release("room", "bob"), true, "the last hold");
      await waitFor(() => seenA.length === 2 && seenB.length === 2, 5000, "join and leave on both");
      await pause(20);
      assert.deepEqual(seenA.map(brief), ["join room bob", "leave room bob"]);
      assert.deepEqual(seenB, seenA);
    });

    it("lets the holds of a node that stopped refreshing lapse; the expire of a third node reports the leaves to every node", async () => {
      const { clock, a, b, seenB } = await cluster("n3:");
      const c = await node({ prefix: "n3:", clock });
      const seenC: HoldChange[] = [];
      c.holds.onChange((x) => seenC.push(x));
      await a.holds.hold("room", "gone-1", '"g1"', clock.now() + 10_000);
      await a.holds.hold("room", "gone-2", '"g2"', clock.now() + 10_000);
      await a.holds.hold("room", "shared", '"s"', clock.now() + 10_000);
      await b.holds.hold("room", "shared", '"s"', clock.now() + 10_000);
      await b.holds.hold("room", "stays", '"st"', clock.now() + 10_000);
      await waitFor(() => seenB.length === 4, 5000, "4 joins");
      open.delete(a);
      await a.close(); // node a dies: nobody pushes its expiries forward
      clock.advance(8000);
      await b.holds.refresh([["room", "shared"], ["room", "stays"]], clock.now() + 10_000);
      clock.advance(4000);
      assert.deepEqual([...(await b.holds.members("room")).members].sort(), ['"s"', '"st"'], "lapsed holds are no longer members");
      await b.holds.expire("room", clock.now() - 3000);
      assert.equal((await b.holds.members("room")).members.length, 2, "an expire before the expiry removes nothing");
      await c.holds.expire("room", clock.now());
      await waitFor(() => seenB.length === 6 && seenC.length === 6, 5000, "2 leaves on nodes b and c");
      await pause(20);
      assert.deepEqual(seenB.slice(4).map(brief).sort(), ["leave room gone-1", "leave room gone-2"]);
      assert.deepEqual(seenC, seenB);
      assert.deepEqual([...(await b.holds.members("room")).members].sort(), ['"s"', '"st"']);
      assert.equal(await admin.hget("n3:{room}:pc", "shared"), "1", "only node b's hold of the shared key is left");
      assert.equal(await b.holds.release("room", "shared"), true);
    });

    it("orders every change of a set the same on both nodes, versions strictly growing and chained, and members() agrees with them", async () => {
      const { a, b, seenA, seenB } = await cluster("n4:");
      const snapshots: Array<{ members: string[]; version: number }> = [];
      let changes = 0;
      const work = async (n: RedisBroker, tag: string) => {
        for (let i = 0; i < 60; i++) {
          const key = `${tag}${i % 7}`;
          if (i % 3 === 2) {
            if (await n.holds.release("busy", key)) changes++;
          } else if (await n.holds.hold("busy", key, JSON.stringify(key), 60_000)) changes++;
          if (i % 5 === 0) snapshots.push(await n.holds.members("busy"));
        }
      };
      await Promise.all([work(a, "a"), work(b, "b"), work(a, "x"), work(b, "x")]);
      await waitFor(() => seenA.length === changes && seenB.length === changes, 5000, `${changes} changes on both nodes`);
      await pause(20);
      assert.ok(changes > 20);
      assert.deepEqual(seenB, seenA, "both nodes saw one order");
      for (let i = 1; i < seenA.length; i++) {
        assert.ok(seenA[i]!.version > seenA[i - 1]!.version, "versions strictly grow");
        assert.equal(seenA[i]!.previous, seenA[i - 1]!.version, "each change names the one before it");
      }
      const final = [...(await a.holds.members("busy")).members].sort();
      for (const snap of snapshots) {
        const list = new Set(snap.members);
        for (const c of seenA) {
          if (c.version <= snap.version) continue;
          if (c.kind === "join") list.add(c.member);
          else list.delete(c.member);
        }
        assert.deepEqual([...list].sort(), final, `snapshot at ${snap.version} plus the later changes is the set`);
      }
    });

    it("refreshes 5,000 holds over 5 sets in one pipeline: one script call per set", async () => {
      const clock = new ManualClock();
      const a = await node({ prefix: "bulk:", clock });
      const holds: Array<[string, string]> = [];
      for (let s = 0; s < 5; s++) for (let k = 0; k < 1000; k++) holds.push([`set${s}`, `user${k}`]);
      for (let i = 0; i < holds.length; i += 500) {
        await Promise.all(holds.slice(i, i + 500).map(([set, key]) => a.holds.hold(set, key, '"m"', 1000)));
      }
      await a.holds.refresh(holds.slice(0, 10), 1500); // loads the script on this connection
      await admin.config("RESETSTAT");
      await a.holds.refresh(holds, 50_000);
      const stats = await admin.info("commandstats");
      const calls = (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
      assert.equal(calls("evalsha") + calls("eval"), 5, "one script call per set");
      assert.equal(calls("zadd"), 5, "one ZADD per set");
      assert.equal(calls("hset") + calls("publish"), 0, "a refresh changes no member and tells nobody");
      clock.advance(10_000);
      for (let s = 0; s < 5; s++) {
        await a.holds.expire(`set${s}`, clock.now());
        assert.equal((await a.holds.members(`set${s}`)).members.length, 1000, `set${s} was refreshed`);
        assert.equal(await admin.zcount(`bulk:{set${s}}:ph`, 50_000, 50_000), 1000);
      }
    });
  });

  describe("signals", () => {
    it("reach every node, the sender included, once each", async () => {
      const a = await node({ prefix: "sig:" });
      const b = await node({ prefix: "sig:" });
      const other = await node({ prefix: "sig-other:" });
      const gotA: string[] = [];
      const gotB: string[] = [];
      const gotOther: string[] = [];
      a.onSignal((p) => gotA.push(p));
      b.onSignal((p) => gotB.push(p));
      other.onSignal((p) => gotOther.push(p));
      await a.signal('{"disconnect":"u1"}');
      await b.signal('{"revoke":"u2"}');
      await waitFor(() => gotA.length === 2 && gotB.length === 2, 5000, "2 signals on both nodes");
      await pause(20);
      assert.deepEqual(gotA, ['{"disconnect":"u1"}', '{"revoke":"u2"}']);
      assert.deepEqual(gotB, gotA);
      assert.deepEqual(gotOther, [], "another prefix is another cluster");
    });

    it("keeps going when a signal listener throws", async () => {
      const a = await node({ prefix: "sigthrow:" });
      const got: string[] = [];
      a.onSignal((p) => {
        got.push(p);
        throw new Error("listener bug");
      });
      a.holds.onChange(() => {
        throw new Error("listener bug");
      });
      await a.signal("1");
      await a.holds.hold("s", "k", "1", 1000);
      await a.signal("2");
      await waitFor(() => got.length === 2, 5000, "both signals");
      assert.equal(a.isReady(), true);
    });

    it("are missed by a node whose subscription is down, and reach it again once it is back", async () => {
      const a = await node({ prefix: "sigdrop:" });
      const b = await node({ prefix: "sigdrop:" });
      const got: string[] = [];
      b.onSignal((p) => got.push(p));
      await admin.client("KILL", "TYPE", "pubsub");
      await a.signal("while-down").catch(() => {});
      await waitFor(() => b.isReady() && a.isReady(), 5000, "both nodes back");
      await a.signal("after");
      await waitFor(() => got.includes("after"), 5000, "the signal after the reconnect");
      assert.ok(got.length <= 2 && got.at(-1) === "after");
    });
  });

  describe("history removal across nodes", () => {
    it("lets another node's fan-out follow the new epoch in order, without healing or duplicates", async () => {
      const a = await node({ prefix: "rmh:" });
      const b = await node({ prefix: "rmh:" });
      const seen: Array<[string, number]> = [];
      b.onMessage((m) => seen.push([m.epoch, m.offset]));
      await watch(b, "room");
      for (let i = 1; i <= 5; i++) await a.publish("room", String(i));
      const old = (await b.read("room")).epoch;
      await waitFor(() => seen.length === 5, 5000, "5 messages");
      await a.removeHistory("room");
      assert.deepEqual(await admin.keys("rmh:*"), [], "meta hash and stream are gone");
      const fresh = await a.publish("room", "6");
      assert.equal(fresh.offset, 1);
      for (let i = 7; i <= 9; i++) await a.publish("room", String(i));
      await waitFor(() => seen.length === 9, 5000, "9 messages");
      await pause(30);
      assert.deepEqual(seen, [...[1, 2, 3, 4, 5].map((o) => [old, o]), ...[1, 2, 3, 4].map((o) => [fresh.epoch, o])]);
      assert.equal(b.healedMessages, 0, "nothing had to be read back from history");
      const r = await b.read("room", { epoch: old, offset: 5 });
      assert.deepEqual([r.epoch, r.offset, r.recovered], [fresh.epoch, 4, false]);
    });

    it("catches up in the new epoch when the removal happened while its fan-out connection was down", async () => {
      const a = await node({ prefix: "rmd:" });
      const b = await node({ prefix: "rmd:" });
      const seen: Array<[string, number]> = [];
      b.onMessage((m) => seen.push([m.epoch, m.offset]));
      await watch(b, "room");
      const first = await a.publish("room", "1");
      await waitFor(() => seen.length === 1, 5000, "message 1");
      await admin.client("KILL", "TYPE", "pubsub", "SKIPME", "no");
      await a.publish("room", "2").catch(() => {});
      await a.removeHistory("room");
      const fresh = await a.publish("room", "3");
      await a.publish("room", "4");
      await waitFor(() => seen.some(([e, o]) => e === fresh.epoch && o === 2), 5000, "the new epoch's messages on node b");
      await pause(30);
      const after = seen.slice(seen.findIndex(([e]) => e === fresh.epoch));
      assert.deepEqual(after, [
        [fresh.epoch, 1],
        [fresh.epoch, 2],
      ]);
      assert.ok(seen.slice(0, seen.length - 2).every(([e]) => e === first.epoch), "the old epoch, then the new one, never back");
    });
  });

  describe("outage", () => {
    let own: RedisServer;
    before(async () => {
      own = await RedisServer.start();
    });
    after(() => own?.stop());

    it("rejects holds and signals while Redis is paused past the command timeout, and works once it is back", async () => {
      const clock = new ManualClock();
      const a = await node({ url: own.url, prefix: "pz:", clock, commandTimeoutMs: 200 });
      const ctl = new Redis(own.url);
      try {
        await ctl.call("CLIENT", "PAUSE", "700", "ALL");
        await assert.rejects(a.holds.hold("s", "k", "1", 1000), BrokerUnavailableError);
        await assert.rejects(a.holds.members("s"), BrokerUnavailableError);
        await assert.rejects(a.signal("paused"), BrokerUnavailableError);
        await waitFor(async () => (await a.holds.members("s").catch(() => null)) !== null, 5000, "Redis to answer again");
        await a.holds.hold("s", "k2", "2", 1000);
        assert.ok((await a.holds.members("s")).members.includes("2"));
      } finally {
        ctl.disconnect();
      }
    });

    it("rejects every holds call, signals and history removal at once with BrokerUnavailableError while Redis is down, and recovers", async () => {
      const clock = new ManualClock();
      const a = await node({ url: own.url, prefix: "dn:", clock });
      const b = await node({ url: own.url, prefix: "dn:", clock });
      const seenB: HoldChange[] = [];
      const signals: string[] = [];
      b.holds.onChange((c) => seenB.push(c));
      b.onSignal((p) => signals.push(p));
      await a.holds.hold("s", "k", "1", 1000);
      await waitFor(() => seenB.length === 1, 5000, "B to see the first join before the outage");
      await own.kill();
      await waitFor(() => !a.isReady() && !b.isReady(), 5000, "both nodes to notice");
      const t0 = Date.now();
      const calls: Array<[string, () => Promise<unknown>]> = [
        ["hold", () => a.holds.hold("s", "k2", "2", 1000)],
        ["release", () => a.holds.release("s", "k")],
        ["refresh", () => a.holds.refresh([["s", "k"]], 2000)],
        ["expire", () => a.holds.expire("s", 0)],
        ["members", () => a.holds.members("s")],
        ["signal", () => a.signal("x")],
        ["removeHistory", () => a.removeHistory("c")],
      ];
      for (const [name, call] of calls) {
        await assert.rejects(call(), (err: unknown) => {
          assert.ok(err instanceof BrokerUnavailableError, name);
          assert.equal(err.status, 503);
          return true;
        });
      }
      assert.ok(Date.now() - t0 < 1000, "rejected without waiting for a timeout");
      await own.restart();
      assert.equal(await a.waitReady(10_000), true);
      assert.equal(await b.waitReady(10_000), true);
      assert.equal(await a.holds.hold("s", "k", "1", 1000), true, "Redis came back empty: a join again");
      await a.signal("back");
      await waitFor(() => seenB.length >= 2 && signals.includes("back"), 5000, "changes and signals flow again");
      assert.deepEqual(signals, ["back"], "nothing was queued while disconnected");
    });
  });
});
