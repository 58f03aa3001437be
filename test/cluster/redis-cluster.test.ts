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
import type { Broker, StoredMessage } from "../../src/broker/broker.js";
import { RedisBroker } from "../../src/broker/redis.js";
import { ManualClock } from "../../src/clock.js";
import { parseRedisTopology, type RedisTopology } from "../../src/redis-topology.js";
import { nowSec, sign } from "../helpers/auth.js";
import { redisSkip } from "../helpers/redis.js";
import { nodeCommand, RedisCluster, slotOf } from "../helpers/redis-cluster.js";
import { getJson, publishHttp, startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";
import { isPosition, SseStream } from "../helpers/sse.js";
import { brokerSuite } from "../shared/broker-suite.js";
import { watch } from "../helpers/watch.js";
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

    it("starts a new epoch when a channel's history lost messages already delivered, instead of giving their offsets again", async () => {
      const [[port, ch]] = (await channelsPerMaster(cluster, "rw", 1)) as [[number, string]];
      const a = await broker({ prefix: "rw:" });
      const b = await broker({ prefix: "rw:" });
      const seen: StoredMessage[] = [];
      b.onMessage((m) => seen.push(m));
      await watch(b, ch);
      for (let i = 1; i <= 5; i++) await a.publish(ch, String(i));
      await waitFor(() => seen.length === 5, 5000, "5 messages at B");
      const { epoch } = seen[0]!;
      // Redis loses the last two, as a replica promoted before it received them would.
      const admin = admins.get(port)!;
      await admin.hset(`rw:{${ch}}:m`, "offset", 3);
      await admin.xdel(`rw:{${ch}}:s`, "4-0", "5-0");
      // B's sharded subscriber connection drops; ioredis resubscribes, and B catches up from history.
      await admin.call("CLIENT", "KILL", "TYPE", "pubsub");
      await waitFor(async () => (await a.read(ch)).epoch !== epoch, 5000, "a new epoch");
      const next = await a.publish(ch, "6");
      assert.equal(next.offset, 1);
      await waitFor(() => seen.length === 6, 5000, "the next message at B");
      assert.deepEqual([seen[5]!.epoch, seen[5]!.offset], [next.epoch, 1]);
    });

    it("authenticates with the user name and password given before the first seed", async () => {
      for (const admin of admins.values()) await admin.call("ACL", "SETUSER", "hl", "on", ">s3cret", "~*", "&*", "+@all");
      const url = cluster.url.replace("redis+cluster://", "redis+cluster://hl:s3cret@");
      const good = new RedisBroker({ url: "", cluster: parseRedisTopology(url) as typeof topology, historySize: 10, historyTtl: 60, prefix: "auth:" });
      const bad = new RedisBroker({ url: "", cluster: parseRedisTopology(url.replace("s3cret", "wrong")) as typeof topology, historySize: 10, historyTtl: 60, prefix: "auth:" });
      open.add(good).add(bad);
      assert.equal(await good.waitReady(5000), true, "the right password connects");
      assert.equal((await good.publish("authed", "1")).offset, 1);
      assert.equal(await bad.waitReady(1500), false, "a wrong password does not");
      await bad.close();
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
  describe("failover", () => {
    let fo: RedisCluster;
    let a: TestServer;
    let b: TestServer;
    before(async () => {
      fo = await RedisCluster.start({ masters: 3, replicas: 1 });
      [a, b] = await Promise.all([0, 1].map(() => startServer({ redis: fo.url, historySize: 1000 })));
    });
    after(async () => {
      await Promise.all([a?.close(), b?.close()]);
      await fo?.stop();
    });

    it("a master killed with SIGKILL: other masters' channels never fail, its own answer 200 or 503 without hanging, every acknowledged message reaches the other node once, in order, or after a reset", async (t) => {
      const killed = fo.masterPorts[0]!;
      const channels = await channelsPerMaster(fo, "fo", 2);
      const onKilled = new Set(channels.filter(([port]) => port === killed).map(([, ch]) => ch));
      const ws = await WsClient.connect(`${b.wsUrl}/ws?${channels.map(([, ch]) => `channel=${ch}`).join("&")}`);
      await waitFor(() => channels.every(([, ch]) => ws.frames.some((f) => f.type === "subscribed" && f.channel === ch)), 5000, "every subscription on B");
      for (const [port, ch] of channels) {
        await waitFor(async () => Number(((await nodeCommand(port, "PUBSUB", "SHARDNUMSUB", `heartline:{${ch}}:f`)) as unknown[])[1]) === 1, 5000, `${ch} subscribed`);
      }

      interface Sent { seq: number; status: number; code?: string; ms: number; at: number }
      const sent = new Map<string, Sent[]>(channels.map(([, ch]) => [ch, []]));
      let stop = false;
      // About 100 publishes a second through node A, one sequence per channel.
      const publishers = channels.map(async ([, ch]) => {
        for (let seq = 1; !stop; seq++) {
          const started = Date.now();
          let status = 0;
          let code: string | undefined;
          try {
            const r = await getJson(`${a.url}/api/publish`, {
              method: "POST",
              headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ channel: ch, data: { seq } }),
              signal: AbortSignal.timeout(8000),
            });
            status = r.status;
            code = r.body?.error?.code;
          } catch {
            status = -1; // no answer within 8 s
          }
          sent.get(ch)!.push({ seq, status, code, ms: Date.now() - started, at: Date.now() });
          await new Promise((r) => setTimeout(r, 25));
        }
      });
      await new Promise((r) => setTimeout(r, 1000));
      const killedAt = Date.now();
      await fo.killMaster(killed);
      const replica = await fo.waitFailover(killed);
      const failedOverAt = Date.now();
      await new Promise((r) => setTimeout(r, 2000));
      stop = true;
      await Promise.all(publishers);

      const frames = (ch: string) => ws.frames.filter((f) => f.channel === ch);
      const received = (ch: string) => frames(ch).filter((f) => f.type === "message").map((f) => (f.data as { seq: number }).seq);
      const hadReset = (ch: string) => frames(ch).some((f) => f.type === "reset");
      const acked = (ch: string) => sent.get(ch)!.filter((x) => x.status === 200).map((x) => x.seq);
      await waitFor(
        () => channels.every(([, ch]) => {
          const got = new Set(received(ch));
          const want = acked(ch);
          return hadReset(ch) ? got.has(want.at(-1)!) : want.every((seq) => got.has(seq));
        }),
        10_000,
        "every acknowledged message at B",
      );
      await new Promise((r) => setTimeout(r, 200));

      let unavailable = 0;
      let lost = 0;
      let resets = 0;
      let maxMs = 0;
      for (const [, ch] of channels) {
        const all = sent.get(ch)!;
        for (const x of all) {
          maxMs = Math.max(maxMs, x.ms);
          assert.ok(x.ms < 5000, `${ch} #${x.seq}: answered after ${x.ms} ms`);
          if (onKilled.has(ch)) {
            assert.ok(x.status === 200 || (x.status === 503 && x.code === "broker_unavailable"), `${ch} #${x.seq}: ${x.status} ${x.code}`);
            if (x.status === 503) unavailable++;
          } else assert.equal(x.status, 200, `${ch} #${x.seq} on a master that stayed up`);
        }
        // Once each, in publish order, epochs only moving forward after a reset.
        const got = received(ch);
        assert.equal(new Set(got).size, got.length, `${ch}: no duplicate`);
        assert.deepEqual(got, [...got].sort((x, y) => x - y), `${ch}: in order`);
        let epochOffset = 0;
        for (const f of frames(ch)) {
          if (f.type === "reset") epochOffset = Number(f.offset);
          else if (f.type === "message") {
            assert.ok(Number(f.offset) > epochOffset, `${ch}: offsets increase`);
            epochOffset = Number(f.offset);
          }
        }
        const missing = acked(ch).filter((seq) => !got.includes(seq));
        lost += missing.length;
        if (hadReset(ch)) resets++;
        assert.ok(missing.length === 0 || hadReset(ch), `${ch}: acknowledged ${missing.join(",")} missing without a reset`);
      }
      // The killed shard's channels flow again from the promoted replica, subscribed once there.
      for (const ch of onKilled) {
        const after = sent.get(ch)!.filter((x) => x.status === 200 && x.at > failedOverAt + 500).map((x) => x.seq);
        assert.ok(after.length > 0, `${ch}: publishes succeed after the failover`);
        assert.ok(after.every((seq) => received(ch).includes(seq)), `${ch}: delivered after the failover`);
        assert.equal(Number(((await nodeCommand(replica, "PUBSUB", "SHARDNUMSUB", `heartline:{${ch}}:f`)) as unknown[])[1]), 1);
      }
      t.diagnostic(
        `failover ${failedOverAt - killedAt} ms; publishes ${[...sent.values()].reduce((n, l) => n + l.length, 0)}, 503 ${unavailable}, ` +
          `acknowledged but lost ${lost}, channels reset ${resets}, slowest answer ${maxMs} ms`,
      );
      ws.close();
    });
  });
});
