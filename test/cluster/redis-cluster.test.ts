/**
 * `--redis redis+cluster://…`: RedisBroker and Heartline nodes on a private
 * Redis Cluster (three masters): the Broker and Holds contracts, sharded
 * pub/sub (SSUBSCRIBE on the master of each channel's slot, SPUBLISH from the
 * publish script), holds refreshed across slots, two nodes serving channels
 * on every master on every transport, resume, history removal, presence and
 * the server API across nodes, and no subscription left behind.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import type { Broker } from "../../src/broker/broker.js";
import { RedisBroker } from "../../src/broker/redis.js";
import { ManualClock } from "../../src/clock.js";
import { parseRedisTopology, type RedisTopology } from "../../src/redis-topology.js";
import { nowSec, sign } from "../helpers/auth.js";
import { redisSkip } from "../helpers/redis.js";
import { RedisCluster, slotOf } from "../helpers/redis-cluster.js";
import { getJson, publishHttp, startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";
import { isPosition, SseStream } from "../helpers/sse.js";
import { brokerSuite } from "../shared/broker-suite.js";
import { holdsSuite } from "../shared/holds-suite.js";

const API_KEY = "redis-cluster-api-key";
const SECRET = "redis-cluster-secret-that-is-long-enough-for-hs256";
const key = { Authorization: `Bearer ${API_KEY}` };
const token = (sub: string) => sign({ sub, iat: nowSec() - 60, exp: nowSec() + 3600, channels: ["room:*"] }, SECRET);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const post = (s: TestServer, path: string, body: unknown) =>
  getJson(`${s.url}${path}`, { method: "POST", headers: { "Content-Type": "application/json", ...key }, body: JSON.stringify(body) });

/** `count` channel names `<base><i>` on each master, as `[masterPort, channel][]`. */
async function channelsPerMaster(cluster: RedisCluster, base: string, count: number): Promise<Array<[number, string]>> {
  const out: Array<[number, string]> = [];
  const per = new Map<number, number>(cluster.masterPorts.map((p) => [p, 0]));
  for (let i = 0; out.length < count * per.size; i++) {
    const channel = `${base}${i}`;
    const port = await cluster.masterOf(`heartline:{${channel}}:f`);
    if ((per.get(port) ?? count) >= count) continue;
    per.set(port, per.get(port)! + 1);
    out.push([port, channel]);
  }
  return out;
}

describe("Redis Cluster", { skip: redisSkip }, () => {
  let cluster: RedisCluster;
  let topology: Extract<RedisTopology, { kind: "cluster" }>;
  /** A plain connection to each master, by port. */
  const admins = new Map<number, Redis>();
  const open = new Set<RedisBroker>();
  let nextPrefix = 0;
  const prefixes = new WeakMap<Broker, string>();

  before(async () => {
    cluster = await RedisCluster.start({ masters: 3 });
    topology = parseRedisTopology(cluster.url) as typeof topology;
    for (const port of cluster.masterPorts) {
      const r = new Redis({ host: "127.0.0.1", port, lazyConnect: true });
      await r.connect();
      admins.set(port, r);
    }
  });
  after(async () => {
    await Promise.all([...open].map((b) => b.close()));
    for (const r of admins.values()) r.disconnect();
    await cluster?.stop();
  });

  const shardNumSub = async (port: number, name: string) => Number(((await admins.get(port)!.call("PUBSUB", "SHARDNUMSUB", name)) as unknown[])[1]);

  async function broker(opts: { historySize?: number; historyTtl?: number; prefix?: string; clock?: ManualClock } = {}): Promise<RedisBroker> {
    const prefix = opts.prefix ?? `rc${nextPrefix++}:`;
    const b = new RedisBroker({ url: "", cluster: topology, historySize: opts.historySize ?? 100, historyTtl: opts.historyTtl ?? 300, prefix, clock: opts.clock });
    prefixes.set(b, prefix);
    open.add(b);
    assert.equal(await b.waitReady(5000), true, "the broker connects to the cluster");
    return b;
  }

  brokerSuite("redis cluster", {
    make: (opts) => broker(opts),
    // Time passing, as Redis sees it, on every master: each key of the broker's prefix is that much closer to expiry.
    async advance(b, seconds) {
      for (const admin of admins.values()) {
        for (const k of await admin.keys(prefixes.get(b)! + "*")) {
          const left = await admin.pttl(k);
          if (left >= 0 && left <= seconds * 1000) await admin.del(k);
          else if (left > 0) await admin.pexpire(k, left - seconds * 1000);
        }
      }
    },
  });

  holdsSuite("redis cluster", {
    async make() {
      const clock = new ManualClock();
      const b = await broker({ clock });
      return { holds: b.holds, now: () => clock.now(), close: () => (open.delete(b), b.close()) };
    },
  });

  describe("broker", () => {
    it("subscribes each channel with SSUBSCRIBE on the master of its slot and publishes with SPUBLISH, channels on every master", async () => {
      const channels = await channelsPerMaster(cluster, "ss", 2);
      const a = await broker({ prefix: "heartline:" });
      const b = await broker({ prefix: "heartline:" });
      const seen = new Map<string, number[]>();
      b.onMessage((m) => seen.set(m.channel, [...(seen.get(m.channel) ?? []), m.offset]));
      for (const [, ch] of channels) b.interest(ch, true);
      await waitFor(() => channels.every(([, ch]) => b.isSubscribed(ch)), 5000, "every subscription active");
      for (const [port, ch] of channels) {
        assert.equal(await shardNumSub(port, `heartline:{${ch}}:f`), 1, `${ch}: one sharded subscriber on its master`);
        assert.equal(slotOf(`heartline:{${ch}}:f`), slotOf(`heartline:{${ch}}:m`));
      }
      for (let i = 0; i < 5; i++) for (const [, ch] of channels) await a.publish(ch, String(i));
      await waitFor(() => channels.every(([, ch]) => (seen.get(ch)?.length ?? 0) >= 5), 5000, "every message at the other broker");
      for (const [, ch] of channels) assert.deepEqual(seen.get(ch), range(1, 5), ch);
      // Classic pub/sub (signals) still reaches every node, whatever node it was published on.
      const got: string[] = [];
      b.onSignal((p) => got.push(p));
      await a.signal("hello");
      await waitFor(() => got.length === 1, 5000, "the signal");
      for (const [, ch] of channels) b.interest(ch, false);
      b.sweep(Infinity);
      for (const [port, ch] of channels) {
        await waitFor(async () => (await shardNumSub(port, `heartline:{${ch}}:f`)) === 0, 5000, `${ch} unsubscribed`);
      }
      assert.equal(b.subscribedChannels, 0);
    });

    it("refreshes holds in sets on different masters in one call", async () => {
      const clock = new ManualClock();
      const b = await broker({ prefix: "hr:", clock });
      const sets = (await channelsPerMaster(cluster, "set", 1)).map(([, set]) => set);
      for (const set of sets) assert.equal(await b.holds.hold(set, "k", '{"m":1}', 1000), true);
      await b.holds.refresh(sets.map((set) => [set, "k"] as const), 50_000);
      for (const set of sets) {
        const port = await cluster.masterOf(`hr:{${set}}:ph`);
        assert.equal(Number(await admins.get(port)!.zscore(`hr:{${set}}:ph`, `k\n${b.holds.nodeId}`)), 50_000, set);
      }
    });
  });

  describe("two Heartline nodes", () => {
    let a: TestServer;
    let b: TestServer;
    let channels: Array<[number, string]>;
    before(async () => {
      const options = { redis: cluster.url, historySize: 1000, apiKey: API_KEY, jwtSecret: SECRET, presence: "room:p*", presenceGrace: 0.2 };
      [a, b] = await Promise.all([startServer(options), startServer(options)]);
      channels = await channelsPerMaster(cluster, "room:n", 1);
    });
    after(() => Promise.all([a?.close(), b?.close()]));

    it("delivers messages published on either node to WS, SSE and polls on the other, in order, for channels on every master", async () => {
      const names = channels.map(([, ch]) => ch);
      const t = await token("u1");
      const ws = await WsClient.connect(`${b.wsUrl}/ws?${names.map((c) => `channel=${c}`).join("&")}&token=${t}`);
      await waitFor(() => names.every((ch) => ws.frames.some((f) => f.type === "subscribed" && f.channel === ch)), 5000, "every subscription on B");
      const sse = await Promise.all(names.map((ch) => SseStream.open(`${a.url}/sse?channel=${ch}&token=${t}`)));
      for (const s of sse) await s.next(isPosition);
      const cursors = await Promise.all(names.map(async (ch) => (await getJson(`${a.url}/poll?channel=${ch}&token=${t}`)).body.cursor as string));
      for (const [port, ch] of channels) {
        // Both nodes serve the channel: two sharded subscribers on its master.
        await waitFor(async () => (await shardNumSub(port, `heartline:{${ch}}:f`)) === 2, 5000, `${ch} subscribed by both nodes`);
      }
      const total = 12;
      for (let i = 1; i <= total; i++) {
        for (const ch of names) {
          const r = await publishHttp(i % 2 ? a : b, ch, { i }, key);
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.equal(r.body.offset, i);
        }
      }
      const expected = (ch: string) => range(1, total).map((i) => ({ channel: ch, offset: i, data: { i } }));
      for (const [k, ch] of names.entries()) {
        await waitFor(() => ws.messages(ch).length >= total && sse[k]!.messages().length >= total, 5000, `${ch} on WS and SSE`);
        assert.deepEqual(ws.messages(ch).map(({ channel, offset, data }) => ({ channel, offset, data })), expected(ch), `WS on B, ${ch}`);
        assert.deepEqual(sse[k]!.messages(), expected(ch), `SSE on A, ${ch}`);
        // Polls alternating between the nodes with one cursor.
        const got: unknown[] = [];
        let cursor = cursors[k]!;
        for (let n = 0; got.length < total && n < 20; n++) {
          const r = await getJson(`${(n % 2 ? a : b).url}/poll?channel=${ch}&cursor=${cursor}&timeout=1&token=${t}`);
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.deepEqual(r.body.resets, []);
          got.push(...r.body.messages);
          cursor = r.body.cursor;
        }
        assert.deepEqual(got, expected(ch), `polls, ${ch}`);
      }
      assert.equal(ws.frames.filter((f) => f.type === "reset" || f.type === "error").length, 0);
      ws.close();
      for (const s of sse) s.close();
    });

    it("resumes on node B from a cursor given by node A", async () => {
      const [, ch] = channels[1]!;
      const t = await token("u2");
      const first = await WsClient.connect(`${a.wsUrl}/ws?channel=${ch}&token=${t}`);
      const sub = await first.next((f) => f.type === "subscribed");
      const start = Number(sub.offset);
      for (let i = 1; i <= 3; i++) await publishHttp(b, ch, `r${i}`, key);
      await waitFor(() => first.messages(ch).length >= 3, 5000, "3 messages on A");
      first.close();
      for (let i = 4; i <= 6; i++) await publishHttp(a, ch, `r${i}`, key);
      const second = await WsClient.connect(`${b.wsUrl}/ws?token=${t}`);
      second.send({ type: "subscribe", channel: ch, since: { epoch: sub.epoch, offset: start + 3 } });
      const resumed = await second.next((f) => f.type === "subscribed");
      assert.equal(resumed.recovered, true);
      await waitFor(() => second.messages(ch).length >= 3, 5000, "the 3 missed messages on B");
      assert.deepEqual(second.messages(ch).map((m) => m.data), ["r4", "r5", "r6"]);
      second.close();
    });

    it("a history removal asked of node A resets node B's subscriber; later messages start the new epoch", async () => {
      const [, ch] = channels[2]!;
      const t = await token("u3");
      for (let i = 1; i <= 3; i++) await publishHttp(a, ch, i, key);
      const ws = await WsClient.connect(`${b.wsUrl}/ws?channel=${ch}&token=${t}`);
      const sub = await ws.next((f) => f.type === "subscribed");
      const r = await getJson(`${a.url}/api/history/${ch}`, { method: "DELETE", headers: key });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const reset = await ws.next((f) => f.type === "reset");
      assert.equal(reset.epoch, r.body.epoch);
      assert.notEqual(reset.epoch, sub.epoch);
      await publishHttp(a, ch, "after", key);
      const m = await ws.next((f) => f.type === "message");
      assert.deepEqual([m.offset, m.data], [1, "after"]);
      ws.close();
    });

    it("presence across nodes, in sets on every master", async () => {
      const rooms = (await channelsPerMaster(cluster, "room:p", 1)).map(([, ch]) => ch);
      for (const room of rooms) {
        const wa = await WsClient.connect(`${a.wsUrl}/ws?channel=${room}&client=ca&token=${await token("pa")}`);
        await wa.next((f) => f.type === "presence");
        const wb = await WsClient.connect(`${b.wsUrl}/ws?channel=${room}&client=cb&token=${await token("pb")}`);
        const snap = await wb.next((f) => f.type === "presence");
        assert.deepEqual((snap.members as Array<{ client: string }>).map((m) => m.client).sort(), ["ca", "cb"], room);
        const join = await wa.next((f) => f.type === "join");
        assert.equal(join.client, "cb");
        const onA = (await getJson(`${a.url}/api/presence/${room}`, { headers: key })).body;
        assert.deepEqual((onA.members as Array<{ client: string }>).map((m) => m.client).sort(), ["ca", "cb"]);
        wb.close();
        const leave = await wa.next((f) => f.type === "leave", 10_000);
        assert.equal(leave.client, "cb");
        wa.close();
      }
    });

    it("a disconnect asked of node A closes the user's WebSocket on node B", async () => {
      const ws = await WsClient.connect(`${b.wsUrl}/ws?channel=${channels[0]![1]}&token=${await token("gone")}`);
      await ws.next((f) => f.type === "subscribed");
      const r = await post(a, "/api/disconnect", { user: "gone", reconnect: false });
      assert.deepEqual(r.body, { disconnected: 1 });
      await ws.closed;
      assert.equal(ws.closeCode, 4403);
    });

    it("leaves no sharded subscription behind once the clients are gone and the linger passed", async () => {
      for (const node of [a, b]) await waitFor(() => node.hl.connections === 0, 5000, "no connection");
      const all = [...channels, ...(await channelsPerMaster(cluster, "room:p", 1))];
      await waitFor(
        async () => {
          for (const [port, ch] of all) if ((await shardNumSub(port, `heartline:{${ch}}:f`)) !== 0) return false;
          return true;
        },
        8000,
        "every SHARDNUMSUB back to 0",
      );
    });
  });
});
