/**
 * Two Heartline nodes on three independent redis-servers (`--redis
 * url1,url2,url3`, SPEC §13): each channel lives on the shard its name hashes
 * to; delivery, order, resume, resets, polls alternating nodes, presence and
 * the server API hold across shards; a shard that is down fails only its
 * channels; a changed shard list moves channels with a reset.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { shardOf } from "../../src/broker/sharded.js";
import { nowSec, sign } from "../helpers/auth.js";
import { freePort, redisSkip } from "../helpers/redis.js";
import { RedisShards } from "../helpers/redis-cluster.js";
import { getJson, publishHttp, startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";
import { SseStream } from "../helpers/sse.js";

const API_KEY = "shards-api-key";
const SECRET = "shards-jwt-secret-that-is-long-enough-for-hs256";
const key = { Authorization: `Bearer ${API_KEY}` };
const OPTIONS = { apiKey: API_KEY, jwtSecret: SECRET, presence: "room:*", presenceGrace: 0.5, historySize: 1000 };
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const token = (sub: string) => sign({ sub, iat: nowSec() - 5, exp: nowSec() + 3600, channels: ["room:*", "plain:*"] }, SECRET);

/** The first `n` channel names `<prefix><i>` that live on `shard` of 3. */
function onShard(prefix: string, shard: number, n = 1): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) if (shardOf(`${prefix}${i}`, 3) === shard) out.push(`${prefix}${i}`);
  return out;
}

describe("sharded Redis: three independent instances", { skip: redisSkip }, () => {
  let shards: RedisShards;
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    shards = await RedisShards.start(3);
    [a, b] = await Promise.all([0, 1].map(() => startServer({ ...OPTIONS, redis: shards.url })));
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await shards?.stop();
  });

  it("keeps each channel on the shard its name hashes to, and delivers across nodes in order on WebSocket, SSE and polls alternating nodes", async () => {
    const channels = [0, 1, 2].flatMap((s) => onShard("plain:", s, 2));
    const t = await token("wes");
    const ws = await WsClient.connect(`${b.wsUrl}/ws?token=${t}`);
    channels.forEach((c, i) => ws.send({ type: "subscribe", channel: c, id: i + 1 }));
    await ws.next(() => ws.frames.filter((f) => f.type === "subscribed").length === channels.length);
    const sse = await Promise.all(channels.map(async (c) => {
      const s = await SseStream.open(`${a.url}/sse?channel=${c}&token=${t}`);
      await s.next((e) => e.event === "position");
      return s;
    }));
    const cursors = await Promise.all(channels.map(async (c) => (await getJson(`${a.url}/poll?channel=${c}&token=${t}`)).body.cursor as string));

    for (let i = 1; i <= 10; i++) {
      for (const c of channels) assert.equal((await publishHttp(i % 2 ? a : b, c, i, key)).status, 200);
    }
    for (const [k, c] of channels.entries()) {
      await ws.next(() => ws.messages(c).length === 10);
      assert.deepEqual(ws.messages(c).map((m) => m.data), range(1, 10), `WS ${c}`);
      await sse[k]!.next(() => sse[k]!.messages().length === 10);
      assert.deepEqual(sse[k]!.messages().map((m) => m.data), range(1, 10), `SSE ${c}`);
      // Polls alternating nodes with one cursor.
      const got: number[] = [];
      let cursor = cursors[k]!;
      for (let i = 0; got.length < 10; i++) {
        const r = await getJson(`${(i % 2 ? a : b).url}/poll?channel=${c}&cursor=${cursor}&limit=3&timeout=2&token=${t}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        got.push(...r.body.messages.map((m: { data: number }) => m.data));
        cursor = r.body.cursor;
      }
      assert.deepEqual(got, range(1, 10), `poll ${c}`);
    }
    ws.close();
    for (const s of sse) s.close();

    // The keys are where the documented hash says, and nowhere else.
    for (const [i, url] of shards.urls.entries()) {
      const r = new Redis(url);
      try {
        const metas = (await r.keys("heartline:{plain:*}:m")).map((k) => k.slice("heartline:{".length, -"}:m".length)).sort();
        assert.deepEqual(metas, channels.filter((c) => shardOf(c, 3) === i).sort(), `shard ${i + 1}`);
      } finally {
        r.disconnect();
      }
    }
  });

  it("stores a publish repeated with one idempotency key through both nodes once, on every shard", async () => {
    for (const c of [0, 1, 2].map((sh) => onShard("plain:once", sh)[0]!)) {
      const answers = await Promise.all(
        [a, b].map((n) => getJson(`${n.url}/api/publish`, { method: "POST", headers: { ...key, "Content-Type": "application/json" }, body: JSON.stringify({ channel: c, data: "x", idempotencyKey: "k-1" }) })),
      );
      assert.deepEqual(answers.map((r) => r.status), [200, 200]);
      assert.deepEqual(answers[0]!.body, answers[1]!.body, `${c}: both nodes answer the first result`);
      const position = await getJson(`${b.url}/api/channels/${c}`, { headers: key });
      assert.equal(position.body.offset, 1, c);
    }
  });

  it("resumes on the other node from Last-Event-ID, and resets a node's subscribers when a channel's history is removed on another", async () => {
    const [c] = onShard("plain:resume", 2);
    const t = await token("rosa");
    const first = await SseStream.open(`${a.url}/sse?channel=${c}&token=${t}`);
    await first.next((e) => e.event === "position");
    for (let i = 1; i <= 5; i++) await publishHttp(b, c, i, key);
    await first.next(() => first.messages().length === 5);
    const last = first.lastEventId;
    first.close();
    for (let i = 6; i <= 9; i++) await publishHttp(a, c, i, key);
    const again = await SseStream.open(`${b.url}/sse?channel=${c}&token=${t}`, { "Last-Event-ID": last });
    await again.next(() => again.messages().length === 4);
    assert.deepEqual(again.messages().map((m) => m.data), [6, 7, 8, 9]);
    again.close();

    const ws = await WsClient.connect(`${b.wsUrl}/ws?channel=${c}&token=${t}`);
    await ws.next((f) => f.type === "subscribed");
    const removed = await getJson(`${a.url}/api/history/${c}`, { method: "DELETE", headers: key });
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    const reset = await ws.next((f) => f.type === "reset");
    assert.deepEqual([reset.epoch, reset.offset], [removed.body.epoch, 0]);
    await publishHttp(a, c, "new", key);
    const m = await ws.next((f) => f.type === "message");
    assert.deepEqual([m.offset, m.data], [1, "new"]);
    ws.close();
  });

  it("lists presence members of both nodes on every shard's channels, and a disconnect asked of A closes the user's connections on B whatever shard their channels live on", async () => {
    const rooms = [0, 1, 2].map((s) => onShard("room:p", s)[0]!);
    const ann = await WsClient.connect(`${a.wsUrl}/ws?token=${await token("ann")}&client=ann1`);
    const bob = await WsClient.connect(`${b.wsUrl}/ws?token=${await token("bob")}&client=bob1`);
    for (const [i, r] of rooms.entries()) {
      ann.send({ type: "subscribe", channel: r, id: i + 1 });
      bob.send({ type: "subscribe", channel: r, id: i + 1 });
    }
    for (const r of rooms) {
      await waitFor(async () => {
        const body = (await getJson(`${a.url}/api/presence/${r}`, { headers: key })).body;
        return body.members?.map((m: { user: string }) => m.user).sort().join(",") === "ann,bob";
      }, 5000, `both members of ${r}`);
    }
    const d = await getJson(`${a.url}/api/disconnect`, { method: "POST", headers: { ...key, "Content-Type": "application/json" }, body: JSON.stringify({ user: "bob", reconnect: false }) });
    assert.deepEqual(d.body, { disconnected: 1 });
    await bob.closed;
    assert.equal(bob.closeCode, 4403);
    for (const r of rooms) {
      await waitFor(async () => {
        const body = (await getJson(`${b.url}/api/presence/${r}`, { headers: key })).body;
        return body.members?.map((m: { user: string }) => m.user).join(",") === "ann";
      }, 5000, `bob gone from ${r}`);
    }
    ann.close();
  });

  it("with the first shard down: its channels answer 503, the others serve, /readyz names it, and actions still reach every node; back empty, its subscribers get a reset", async () => {
    const [down] = onShard("plain:down", 0);
    const [up] = onShard("plain:up", 1);
    const t = await token("dora");
    const ws = await WsClient.connect(`${b.wsUrl}/ws?token=${t}`);
    ws.send({ type: "subscribe", channel: down, id: 1 });
    ws.send({ type: "subscribe", channel: up, id: 2 });
    await ws.next(() => ws.frames.filter((f) => f.type === "subscribed").length === 2);
    assert.equal((await publishHttp(a, down, "before", key)).status, 200);
    await ws.next(() => ws.messages(down).length === 1);

    const shard = shards.servers[0]!;
    await shard.kill();
    await waitFor(async () => (await getJson(`${a.url}/readyz`)).status === 503, 5000, "A to see the shard down");
    const ready = await getJson(`${a.url}/readyz`);
    assert.match(JSON.stringify(ready.body), new RegExp(`shard 1 \\(redis://127\\.0\\.0\\.1:${shard.port}\\)`));
    assert.doesNotMatch(JSON.stringify(ready.body), /shard 2|shard 3/);
    const refused = await publishHttp(a, down, "during", key);
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, "broker_unavailable");
    assert.equal((await publishHttp(a, up, "during", key)).status, 200);
    await ws.next(() => ws.messages(up).length === 1);

    // Signals go out on the first shard that is up: an action still reaches node B.
    const other = await WsClient.connect(`${b.wsUrl}/ws?channel=${up}&token=${await token("otto")}`);
    await other.next((f) => f.type === "subscribed");
    const d = await getJson(`${a.url}/api/disconnect`, { method: "POST", headers: { ...key, "Content-Type": "application/json" }, body: JSON.stringify({ user: "otto" }) });
    assert.equal(d.status, 200, JSON.stringify(d.body));
    await other.closed;

    await shard.restart();
    await waitFor(async () => (await getJson(`${a.url}/readyz`)).status === 200, 10_000, "A ready again");
    await waitFor(async () => (await publishHttp(a, down, "after", key)).status === 200, 10_000, "publishing on the shard again");
    // The shard came back without its data: a new epoch, announced before the message.
    const reset = await ws.next((f) => f.type === "reset" && f.channel === down);
    assert.equal(reset.offset, 0);
    await ws.next(() => ws.messages(down).some((m) => m.data === "after"));
    assert.deepEqual(ws.messages(down).map((m) => m.data).slice(0, 1), ["before"]);
    ws.close();
  });

  it("started with a shard that is not reachable: serves the other shards' channels, answers 503 on its channels, and /readyz names it", async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`;
    const node = await startServer({ ...OPTIONS, redis: [shards.urls[0], dead, shards.urls[2]].join(",") });
    try {
      const ready = await getJson(`${node.url}/readyz`);
      assert.equal(ready.status, 503);
      assert.match(JSON.stringify(ready.body), new RegExp(`shard 2 \\(${dead.replace(/[.:/]/g, "\\$&")}\\)`));
      assert.equal((await publishHttp(node, onShard("plain:start", 0)[0]!, 1, key)).status, 200);
      assert.equal((await publishHttp(node, onShard("plain:start", 2)[0]!, 1, key)).status, 200);
      const refused = await publishHttp(node, onShard("plain:start", 1)[0]!, 1, key);
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error.code, "broker_unavailable");
    } finally {
      await node.close();
    }
  });

  it("a node given another shard list finds a moved channel in a new epoch: its subscriber resuming there gets a reset, never the other shard's messages as its own", async () => {
    // A channel on the third shard of three: with two shards it hashes elsewhere.
    const c = onShard("plain:moved", 2).find((name) => shardOf(name, 2) !== 2)!;
    for (let i = 1; i <= 5; i++) await publishHttp(a, c, i, key);
    const position = (await getJson(`${a.url}/api/channels/${c}`, { headers: key })).body;
    const twoShards = await startServer({ ...OPTIONS, redis: shards.urls.slice(0, 2).join(",") });
    try {
      const ws = await WsClient.connect(`${twoShards.wsUrl}/ws?token=${await token("mo")}`);
      ws.send({ type: "subscribe", channel: c, since: { epoch: position.epoch, offset: 3 }, id: 1 });
      const reset = await ws.next((f) => f.type === "reset");
      assert.notEqual(reset.epoch, position.epoch);
      assert.deepEqual(ws.messages(c), [], "nothing of the other shard's history");
      ws.close();
    } finally {
      await twoShards.close();
    }
  });
});
