/**
 * RedisBroker against a private redis-server: the shared Broker contract,
 * the key layout, cross-node fan-out, gap healing and outages.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import type { Broker, StoredMessage } from "../../src/broker/broker.js";
import { RedisBroker } from "../../src/broker/redis.js";
import { BrokerUnavailableError } from "../../src/errors.js";
import { waitFor } from "../helpers/server.js";
import { RedisServer, redisSkip } from "../helpers/redis.js";
import { brokerSuite } from "../shared/broker-suite.js";
import { watch } from "../helpers/watch.js";

describe("RedisBroker", { skip: redisSkip }, () => {
  let redis: RedisServer;
  let admin: Redis;
  let nextPrefix = 0;
  const prefixes = new WeakMap<Broker, string>();
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

  /** A broker on its own key prefix (two brokers given the same prefix act as two nodes). */
  async function broker(
    opts: { historySize?: number; historyTtl?: number; prefix?: string; url?: string; idempotencyTtl?: number; commandTimeoutMs?: number } = {},
  ): Promise<RedisBroker> {
    const prefix = opts.prefix ?? `t${nextPrefix++}:`;
    const b = new RedisBroker({
      url: opts.url ?? redis.url,
      historySize: opts.historySize ?? 100,
      historyTtl: opts.historyTtl ?? 300,
      prefix,
      idempotencyTtl: opts.idempotencyTtl,
      commandTimeoutMs: opts.commandTimeoutMs,
    });
    prefixes.set(b, prefix);
    open.add(b);
    assert.equal(await b.waitReady(5000), true, "the broker connects");
    return b;
  }

  brokerSuite("redis", {
    make: (opts) => broker(opts),
    // Time passing, as Redis sees it: every key of the broker's prefix is that much closer to expiry.
    async advance(b, seconds) {
      const keys = await admin.keys(prefixes.get(b)! + "*");
      for (const key of keys) {
        const left = await admin.pttl(key);
        if (left >= 0 && left <= seconds * 1000) await admin.del(key);
        else if (left > 0) await admin.pexpire(key, left - seconds * 1000);
      }
    },
  });

  const offsets = (ms: StoredMessage[]) => ms.map((m) => m.offset);
  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  describe("storage", () => {
    it("keeps a meta hash and a stream per channel under the prefix, with one hash tag, both expiring after historyTtl", async () => {
      const b = await broker({ historySize: 3, historyTtl: 60, prefix: "layout:" });
      for (let i = 1; i <= 5; i++) await b.publish("chat:lobby", JSON.stringify({ i }));
      assert.deepEqual((await admin.keys("layout:*")).sort(), ["layout:{chat:lobby}:m", "layout:{chat:lobby}:s"]);
      const meta = await admin.hgetall("layout:{chat:lobby}:m");
      assert.equal(meta.offset, "5");
      assert.equal(meta.epoch, (await b.read("chat:lobby")).epoch);
      const entries = await admin.xrange("layout:{chat:lobby}:s", "-", "+");
      assert.deepEqual(entries, [
        ["3-0", ["d", '{"i":3}']],
        ["4-0", ["d", '{"i":4}']],
        ["5-0", ["d", '{"i":5}']],
      ]);
      for (const key of ["layout:{chat:lobby}:m", "layout:{chat:lobby}:s"]) {
        const ttl = await admin.pttl(key);
        assert.ok(ttl > 55_000 && ttl <= 60_000, `${key} expires after historyTtl (pttl ${ttl})`);
      }
    });

    it("keeps no stream with historySize 0 and still recovers only from the latest position", async () => {
      const b = await broker({ historySize: 0, prefix: "nohist:" });
      const m1 = await b.publish("h", "1");
      const m2 = await b.publish("h", "2");
      assert.deepEqual([m1.offset, m2.offset], [1, 2]);
      assert.deepEqual(await admin.keys("nohist:*"), ["nohist:{h}:m"]);
      assert.equal((await b.read("h", { epoch: m2.epoch, offset: 1 })).recovered, false);
      const latest = await b.read("h", { epoch: m2.epoch, offset: 2 });
      assert.equal(latest.recovered, true);
      assert.deepEqual(latest.messages, []);
    });

    it("starts a new epoch once the history really expired (historyTtl of 1 s)", async () => {
      const b = await broker({ historyTtl: 1 });
      const first = await b.publish("ttl", "1");
      await new Promise((r) => setTimeout(r, 1300));
      const second = await b.publish("ttl", "2");
      assert.notEqual(second.epoch, first.epoch);
      assert.equal(second.offset, 1);
    });

    it("reads with limit 0 report recovery without returning messages", async () => {
      const b = await broker();
      for (let i = 0; i < 3; i++) await b.publish("l0", "0");
      const { epoch } = await b.read("l0");
      const r = await b.read("l0", { epoch, offset: 1 }, 0);
      assert.equal(r.recovered, true);
      assert.deepEqual(r.messages, []);
    });
  });

  describe("fan-out across nodes", () => {
    it("hands every message published on one node to another node's listener, in order, once", async () => {
      const a = await broker({ prefix: "x1:" });
      const b = await broker({ prefix: "x1:" });
      const seen: StoredMessage[] = [];
      b.onMessage((m) => seen.push(m));
      await watch(b, "room");
      const sent = await Promise.all(range(1, 100).map((i) => a.publish("room", JSON.stringify({ i }))));
      await waitFor(() => seen.length >= 100, 5000, "100 messages on the other node");
      assert.deepEqual(offsets(seen), range(1, 100));
      assert.deepEqual(
        seen.map((m) => m.json),
        sent.map((m) => m.json),
      );
      assert.equal(seen[0]!.json, '{"channel":"room","offset":1,"data":{"i":1}}');
      assert.ok(seen.every((m) => m.epoch === sent[0]!.epoch && m.channel === "room"));
    });

    it("resolves a publish only after its own node's listener has the message", async () => {
      const a = await broker({ prefix: "x2:" });
      const seen: number[] = [];
      a.onMessage((m) => seen.push(m.offset));
      await watch(a, "own");
      for (let i = 1; i <= 20; i++) {
        const m = await a.publish("own", "null");
        assert.equal(seen[seen.length - 1], m.offset, `message ${i} was fanned out before its acknowledgement`);
      }
    });
  });

  describe("idempotency keys", () => {
    it("records a key as <prefix>{<channel>}:k:<key> in the channel's slot, holding the first result, expiring after idempotencyTtl", async () => {
      const b = await broker({ prefix: "ik:", idempotencyTtl: 30 });
      const m = await b.publish("chat:lobby", "1", "Ab-9._~");
      assert.equal(await admin.get("ik:{chat:lobby}:k:Ab-9._~"), `${m.epoch}\n1`);
      const ttl = await admin.pttl("ik:{chat:lobby}:k:Ab-9._~");
      assert.ok(ttl > 25_000 && ttl <= 30_000, `pttl ${ttl}`);
      await b.publish("chat:lobby", "2");
      assert.deepEqual((await admin.keys("ik:*")).sort(), ["ik:{chat:lobby}:k:Ab-9._~", "ik:{chat:lobby}:m", "ik:{chat:lobby}:s"], "no key without an idempotency key");
    });

    it("stores a key published at once through two nodes exactly once, and both nodes' listeners get it once", async () => {
      const a = await broker({ prefix: "i2:" });
      const b = await broker({ prefix: "i2:" });
      const seenA: StoredMessage[] = [];
      const seenB: StoredMessage[] = [];
      a.onMessage((m) => seenA.push(m));
      await watch(a, "both");
      b.onMessage((m) => seenB.push(m));
      await watch(b, "both");
      for (let i = 1; i <= 20; i++) {
        const key = `twice-${i}`;
        const answers = await Promise.all([a.publish("both", String(i), key), b.publish("both", String(i), key)]);
        assert.deepEqual(answers[0]!.offset, answers[1]!.offset, key);
        assert.equal(answers.filter((r) => r.repeated).length, 1, `${key}: one stored, one repeated`);
      }
      await a.publish("both", "21");
      await waitFor(() => seenB.length >= 21, 5000, "21 messages on node b");
      assert.deepEqual(offsets(seenA), range(1, 21));
      assert.deepEqual(offsets(seenB), range(1, 21));
      assert.deepEqual(offsets((await a.read("both", { epoch: seenA[0]!.epoch, offset: 0 })).messages), range(1, 21));
    });

    it("answers the retry of a publish that timed out while Redis was paused (CLIENT PAUSE WRITE) with the result of the first", async () => {
      const b = await broker({ prefix: "ip:", commandTimeoutMs: 200 });
      await admin.call("CLIENT", "PAUSE", "800", "WRITE");
      await assert.rejects(b.publish("paused", '"x"', "retry-me"), BrokerUnavailableError);
      await waitFor(async () => (await admin.get("ip:{paused}:k:retry-me")) !== null, 5000, "the paused script to run");
      const retry = await b.publish("paused", '"x"', "retry-me");
      assert.equal(retry.repeated, true);
      assert.equal(retry.offset, 1);
      const r = await b.read("paused", { epoch: retry.epoch, offset: 0 });
      assert.deepEqual(r.messages.map((m) => m.json), ['{"channel":"paused","offset":1,"data":"x"}']);
    });
  });

  describe("gap healing", () => {
    it("fills what was published while the fan-out connection was dropped (CLIENT KILL TYPE pubsub)", async () => {
      const listener = await broker({ prefix: "g1:" });
      const publisher = await broker({ prefix: "g1:" });
      const seen: StoredMessage[] = [];
      listener.onMessage((m) => seen.push(m));
      await watch(listener, "g");
      for (let i = 1; i <= 5; i++) await publisher.publish("g", String(i));
      await waitFor(() => seen.length === 5, 5000, "the first 5 messages");
      await admin.client("KILL", "TYPE", "pubsub");
      for (let i = 6; i <= 25; i++) await publisher.publish("g", String(i));
      await waitFor(() => seen.length >= 25, 5000, "25 messages after the reconnect");
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(offsets(seen), range(1, 25));
      assert.deepEqual(
        seen.map((m) => m.json),
        range(1, 25).map((i) => `{"channel":"g","offset":${i},"data":${i}}`),
      );
      assert.ok(listener.healedMessages > 0, "some messages came from history");
      assert.equal(listener.isReady(), true);
    });

    it("keeps order while a steady publisher runs through two fan-out drops", async () => {
      const listener = await broker({ prefix: "g2:", historySize: 1000 });
      const publisher = await broker({ prefix: "g2:", historySize: 1000 });
      const seen: number[] = [];
      listener.onMessage((m) => seen.push(m.offset));
      await watch(listener, "steady");
      const total = 300;
      const publishing = (async () => {
        for (let i = 1; i <= total; i++) {
          await publisher.publish("steady", String(i));
          if (i % 10 === 0) await new Promise((r) => setImmediate(r));
        }
      })();
      await waitFor(() => seen.length >= 50, 5000, "50 messages");
      await admin.client("KILL", "TYPE", "pubsub");
      await waitFor(() => listener.isReady() && seen.length >= 150, 5000, "150 messages");
      await admin.client("KILL", "TYPE", "pubsub");
      await publishing;
      await waitFor(() => seen.length >= total, 5000, `${total} messages`);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(seen, range(1, total));
    });

    it("after a drop longer than history, goes on from the oldest message history still holds", async () => {
      const listener = await broker({ prefix: "g6:", historySize: 5 });
      const publisher = await broker({ prefix: "g6:", historySize: 5 });
      const seen: number[] = [];
      listener.onMessage((m) => seen.push(m.offset));
      await watch(listener, "short");
      for (let i = 1; i <= 3; i++) await publisher.publish("short", String(i));
      await waitFor(() => seen.length === 3, 5000, "3 messages");
      await admin.client("KILL", "TYPE", "pubsub");
      for (let i = 4; i <= 20; i++) await publisher.publish("short", String(i));
      await waitFor(() => seen[seen.length - 1] === 20, 5000, "message 20");
      assert.deepEqual(seen.slice(0, 3), [1, 2, 3]);
      const rest = seen.slice(3);
      assert.ok(rest[0]! > 4, `a jump over what history lost (got ${seen.join(",")})`);
      assert.deepEqual(rest, range(rest[0]!, 20), "contiguous from the oldest retained message on");
      assert.ok(rest.length >= 5, "at least the 5 messages history holds");
    });

    it("reads a message whose notification never came before handing over the next one", async () => {
      const listener = await broker({ prefix: "g3:" });
      const publisher = await broker({ prefix: "g3:" });
      const seen: StoredMessage[] = [];
      listener.onMessage((m) => seen.push(m));
      await watch(listener, "lost");
      for (let i = 1; i <= 3; i++) await publisher.publish("lost", String(i));
      await waitFor(() => seen.length === 3, 5000, "3 messages");
      // Message 4 is stored the way the publish script stores it, but its notification is never sent.
      await admin.hincrby("g3:{lost}:m", "offset", 1);
      await admin.xadd("g3:{lost}:s", "MAXLEN", "100", "4-0", "d", '"quiet"');
      await publisher.publish("lost", "5");
      await waitFor(() => seen.length >= 5, 5000, "messages 4 and 5");
      assert.deepEqual(offsets(seen), [1, 2, 3, 4, 5]);
      assert.equal(seen[3]!.json, '{"channel":"lost","offset":4,"data":"quiet"}');
      assert.equal(listener.healedMessages, 1);
    });

    it("drops a notification it has already handed over", async () => {
      const listener = await broker({ prefix: "g4:" });
      const publisher = await broker({ prefix: "g4:" });
      const seen: number[] = [];
      listener.onMessage((m) => seen.push(m.offset));
      await watch(listener, "dup");
      const tap = new Redis(redis.url);
      const payloads: string[] = [];
      try {
        await tap.subscribe("g4:{dup}:f");
        tap.on("message", (_c: string, p: string) => payloads.push(p));
        await publisher.publish("dup", "1");
        await publisher.publish("dup", "2");
        await waitFor(() => payloads.length === 2 && seen.length === 2, 5000, "2 notifications");
        await admin.publish("g4:{dup}:f", payloads[0]!);
        await admin.publish("g4:{dup}:f", payloads[1]!);
        await publisher.publish("dup", "3");
        await waitFor(() => seen.length >= 3, 5000, "message 3");
        await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(seen, [1, 2, 3]);
      } finally {
        tap.disconnect();
      }
    });

    it("goes on from the oldest message history holds when the missing range is partly trimmed", async () => {
      const listener = await broker({ prefix: "g5:", historySize: 2 });
      const publisher = await broker({ prefix: "g5:", historySize: 2 });
      const seen: number[] = [];
      listener.onMessage((m) => seen.push(m.offset));
      await watch(listener, "trim");
      await publisher.publish("trim", "1");
      await waitFor(() => seen.length === 1, 5000, "message 1");
      for (let i = 2; i <= 6; i++) {
        await admin.hincrby("g5:{trim}:m", "offset", 1);
        await admin.xadd("g5:{trim}:s", "MAXLEN", "2", `${i}-0`, "d", String(i));
      }
      // History now holds 5 and 6 (historySize 2); 2–4 are gone.
      await publisher.publish("trim", "7");
      await waitFor(() => seen[seen.length - 1] === 7, 5000, "message 7");
      await publisher.publish("trim", "8");
      await waitFor(() => seen[seen.length - 1] === 8, 5000, "message 8");
      assert.deepEqual(seen, [1, 6, 7, 8]);
    });
  });

  describe("outage", () => {
    let own: RedisServer;
    before(async () => {
      own = await RedisServer.start();
    });
    after(() => own?.stop());

    it("fails publishes fast with BrokerUnavailableError while Redis is down, reconnects by itself, and moves to a new epoch", async () => {
      const a = await broker({ url: own.url, prefix: "o:" });
      const b = await broker({ url: own.url, prefix: "o:" });
      const seen: StoredMessage[] = [];
      b.onMessage((m) => seen.push(m));
      await watch(b, "out");
      const before = await a.publish("out", "1");
      await waitFor(() => seen.length === 1, 5000, "message 1");

      await own.kill();
      await waitFor(() => !a.isReady() && !b.isReady(), 5000, "both brokers to notice");
      const t0 = Date.now();
      await assert.rejects(a.publish("out", "2"), (err: unknown) => {
        assert.ok(err instanceof BrokerUnavailableError);
        assert.equal(err.code, "broker_unavailable");
        assert.equal(err.status, 503);
        return true;
      });
      await assert.rejects(a.read("out"), BrokerUnavailableError);
      assert.ok(Date.now() - t0 < 1000, "rejected without waiting for a timeout");

      await own.restart();
      assert.equal(await a.waitReady(10_000), true, "node a reconnects");
      assert.equal(await b.waitReady(10_000), true, "node b reconnects");
      const after = await a.publish("out", "3");
      assert.notEqual(after.epoch, before.epoch, "Redis came back without the data: a new epoch");
      assert.equal(after.offset, 1);
      await waitFor(() => seen.length === 2, 5000, "the first message of the new epoch on node b");
      assert.deepEqual(
        seen.map((m) => [m.epoch, m.offset]),
        [
          [before.epoch, 1],
          [after.epoch, 1],
        ],
      );
    });

    it("refuses to work after close()", async () => {
      const a = await broker();
      await a.close();
      assert.equal(a.isReady(), false);
      await assert.rejects(a.publish("c", "1"), BrokerUnavailableError);
    });
  });
});
