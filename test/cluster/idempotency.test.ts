/**
 * Idempotent publish across Heartline nodes sharing one private redis-server:
 * a key is stored once whichever node each attempt reaches, and a publisher
 * that retries every publish it got no answer for — while its connections are
 * cut, Heartline's Redis connections are killed and Redis is paused so
 * commands time out — is seen exactly once by every subscriber.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { RedisBroker } from "../../src/index.js";
import { getJson, jsonOrText, startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";
import { RedisServer, redisSkip } from "../helpers/redis.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Outcome = { kind: "ok"; body: { epoch: string; offset: number } } | { kind: "status"; status: number; text: string } | { kind: "cut" };

/**
 * POST /api/publish on a connection of its own. `cutAfterMs`: the client
 * destroys the connection after that long, answered or not (an answer that
 * came first still counts); `timeoutMs`: gives up waiting for the answer.
 */
function attempt(node: TestServer, body: unknown, opts: { cutAfterMs?: number; timeoutMs: number }): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(cut);
      req.destroy();
      resolve(o);
    };
    const payload = JSON.stringify(body);
    const req = request(
      { host: "127.0.0.1", port: node.port, path: "/api/publish", method: "POST", agent: false, headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(payload) } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => finish(res.statusCode === 200 ? { kind: "ok", body: jsonOrText(text) } : { kind: "status", status: res.statusCode ?? 0, text }));
        res.on("error", () => finish({ kind: "cut" }));
      },
    );
    req.on("error", () => finish({ kind: "cut" }));
    const timer = setTimeout(() => finish({ kind: "cut" }), opts.timeoutMs);
    const cut = opts.cutAfterMs === undefined ? undefined : setTimeout(() => finish({ kind: "cut" }), opts.cutAfterMs);
    req.end(payload);
  });
}

describe("idempotent publish in a cluster", { skip: redisSkip }, () => {
  let redis: RedisServer;
  let admin: Redis;
  const nodes: TestServer[] = [];
  const clients: WsClient[] = [];

  before(async () => {
    redis = await RedisServer.start();
    admin = new Redis(redis.url, { lazyConnect: true, connectionName: "test-admin" });
    await admin.connect();
    for (let i = 0; i < 2; i++) {
      // A short command timeout, so a paused Redis makes commands time out (the script may still run later).
      const broker = new RedisBroker({ url: redis.url, historySize: 10_000, historyTtl: 300, commandTimeoutMs: 250, connectTimeoutMs: 500, maxReconnectDelayMs: 100 });
      nodes.push(await startServer({ redis: redis.url }, { broker }));
    }
  });
  after(async () => {
    for (const c of clients) c.close();
    await Promise.all(nodes.map((n) => n.close()));
    admin?.disconnect();
    await redis?.stop();
  });

  async function subscribe(node: TestServer, channel: string): Promise<WsClient> {
    const c = await WsClient.connect(`${node.wsUrl}/ws?channel=${channel}`);
    clients.push(c);
    await c.next((f) => f.type === "subscribed");
    return c;
  }

  it("stores a key published once through each node exactly once; subscribers on both nodes get it once", async () => {
    const channel = "two:room";
    const subs = [await subscribe(nodes[0]!, channel), await subscribe(nodes[1]!, channel)];
    for (let i = 1; i <= 10; i++) {
      const body = { channel, data: { i }, idempotencyKey: `two-${i}` };
      const [a, b] = await Promise.all(nodes.map((n) => attempt(n, body, { timeoutMs: 5000 })));
      assert.equal(a!.kind, "ok");
      assert.deepEqual(a, b, `key two-${i}: both nodes answer the same result`);
    }
    const last = await attempt(nodes[0]!, { channel, data: { i: 11 } }, { timeoutMs: 5000 });
    assert.equal(last.kind === "ok" && last.body.offset, 11);
    for (const s of subs) {
      await waitFor(() => s.messages(channel).length >= 11, 5000, "11 messages");
      assert.deepEqual(s.messages(channel).map((f) => (f.data as { i: number }).i), Array.from({ length: 11 }, (_, k) => k + 1));
    }
    const info = await getJson(`${nodes[1]!.url}/api/channels/${channel}`);
    assert.equal(info.body.offset, 11);
  });

  it("chaos: a publisher retrying every unanswered publish while connections are cut and Redis pauses → every subscriber sees every acknowledged message exactly once", async () => {
    const channel = "chaos:room";
    const subs = [await subscribe(nodes[0]!, channel), await subscribe(nodes[0]!, channel), await subscribe(nodes[1]!, channel), await subscribe(nodes[1]!, channel)];
    const total = 240;
    const acked = new Map<number, number>(); // message id → acknowledged offset
    const counts = { attempts: 0, cut: 0, unavailable: 0, pauses: 0, kills: 0 };
    let publishing = true;

    const chaos = (async () => {
      for (let round = 0; publishing; round++) {
        await sleep(250 + Math.random() * 250);
        if (!publishing) break;
        if (round % 3 === 0) {
          // Commands time out at 250 ms; the paused scripts run afterwards.
          await admin.call("CLIENT", "PAUSE", "700", "WRITE");
          counts.pauses++;
        } else {
          // Cut Heartline's command (and, every other time, fan-out) connections to Redis.
          await admin.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
          if (round % 2 === 0) await admin.call("CLIENT", "KILL", "TYPE", "pubsub");
          counts.kills++;
        }
      }
    })();

    const deadline = Date.now() + 25_000;
    const publishOne = async (id: number) => {
      const body = { channel, data: { id }, idempotencyKey: `msg-${id}` };
      for (let n = 0; ; n++) {
        assert.ok(Date.now() < deadline, `message ${id} still unacknowledged at the deadline`);
        counts.attempts++;
        // One attempt in four is cut by the client a few ms in: the server may store it and the answer is lost.
        const cutAfterMs = Math.random() < 0.25 ? 2 + Math.random() * 15 : undefined;
        const o = await attempt(nodes[(id + n) % 2]!, body, { cutAfterMs, timeoutMs: 1500 });
        if (o.kind === "ok") {
          acked.set(id, o.body.offset);
          return;
        }
        if (o.kind === "cut") counts.cut++;
        else {
          // 503: nothing was stored (or the answer is unknown after a timeout); retry.
          assert.equal(o.status, 503, `message ${id}: an attempt was answered ${o.status} ${o.text}`);
          counts.unavailable++;
        }
        await sleep(20 + Math.random() * 30);
      }
    };
    let failure: unknown;
    const workers = Array.from({ length: 4 }, async (_, w) => {
      try {
        for (let id = w + 1; id <= total && failure === undefined; id += 4) {
          await publishOne(id);
          await sleep(30);
        }
      } catch (err) {
        failure ??= err;
      }
    });
    await Promise.all(workers);
    publishing = false;
    await chaos;
    if (failure !== undefined) throw failure;

    assert.equal(acked.size, total, "every message was acknowledged in the end");
    assert.ok(counts.cut + counts.unavailable >= 20, `the chaos left answers unknown: ${JSON.stringify(counts)}`);
    assert.ok(counts.pauses >= 2 && counts.kills >= 2, JSON.stringify(counts));
    // Stored exactly once each: offsets 1..total, one per message.
    assert.deepEqual([...acked.values()].sort((a, b) => a - b), Array.from({ length: total }, (_, k) => k + 1));
    // The last pause may still hold Redis: end it, then read the channel once a node can.
    await admin.call("CLIENT", "UNPAUSE");
    const info = await waitFor(async () => {
      const r = await getJson(`${nodes[0]!.url}/api/channels/${channel}`);
      return r.status === 200 ? r : undefined;
    }, 5000, "the channel's position");
    assert.equal(info.body.offset, total, "nothing was stored twice");

    for (const [i, s] of subs.entries()) {
      await waitFor(() => s.messages(channel).length >= total, 15_000, `subscriber ${i} to receive ${total} messages`).catch((err: Error) => {
        // Say what arrived, so a failure shows whether the subscriber stalled or lost messages.
        const offsets = s.messages(channel).map((f) => f.offset);
        const missing = Array.from({ length: total }, (_, k) => k + 1).filter((o) => !offsets.includes(o));
        throw new Error(`${err.message}: it has ${offsets.length} (last offset ${offsets.at(-1)}), missing offsets ${missing.slice(0, 20).join(",")}${missing.length > 20 ? ",…" : ""}, connection ${s.closeCode === undefined ? "open" : "closed " + s.closeCode}`);
      });
      await sleep(100);
      const seen = new Map<number, number>();
      for (const f of s.messages(channel)) {
        const id = (f.data as { id: number }).id;
        seen.set(id, (seen.get(id) ?? 0) + 1);
        assert.equal(f.offset, acked.get(id), `subscriber ${i}: message ${id} at its acknowledged offset`);
      }
      const duplicates = [...seen.values()].filter((n) => n > 1).length;
      assert.equal(duplicates, 0, `subscriber ${i} saw ${duplicates} duplicates`);
      assert.equal(seen.size, total, `subscriber ${i} saw every acknowledged message`);
      assert.deepEqual(s.messages(channel).map((f) => f.offset), Array.from({ length: total }, (_, k) => k + 1), `subscriber ${i}: in order`);
      assert.equal(s.closeCode, undefined, `subscriber ${i} stayed connected`);
    }
    console.log(`# chaos: ${JSON.stringify(counts)}`);
  });
});
