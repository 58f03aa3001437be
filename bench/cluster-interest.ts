/**
 * What interest-based fan-out and Redis shards change, in one run, with every
 * node and every Redis in its own process so each one's figures are its own.
 *
 *   npm run bench:cluster              # ≈1–2 min
 *   npm run bench:cluster -- --quick   # a smoke run (< 40 s)
 *
 * Needs `redis-server` on the PATH (private ones on free loopback ports).
 * Servers (nodes and Redis) are pinned to core 0, this process (publisher
 * and subscribers) to core 1, when `taskset` exists.
 *
 * 1. Interest vs every node: one Redis, 3 nodes (bench/cluster-node.ts, a
 *    `RedisBroker` with or without `subscribeAll`). Node i has one WebSocket
 *    subscriber on each channel whose index % 3 == i; messages are published
 *    over HTTP on all 3 nodes. Per node: notifications received / published
 *    (the ingress ratio), notification bytes, CPU µs per delivered message.
 * 2. 1 vs 3 shards: 2 nodes (`heartline serve --redis …`), a keep-alive HTTP
 *    publisher with many publishes in flight over 1,000 channels (no
 *    subscribers). Publishes/s and each Redis's CPU: per publish and as a
 *    share of one core.
 * 3. Unit costs, for the capacity model in docs/SCALING.md: Redis commands,
 *    bytes in and out, and Redis CPU per publish with 0, 1 and 3 nodes
 *    subscribed to the channel; bytes per channel name of a SUBSCRIBE or
 *    UNSUBSCRIBE batch; a node's notification bytes per message.
 *
 * Markdown tables on stdout, progress on stderr, everything saved to
 * bench/results/cluster-<timestamp>.json.
 */
import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { Pool } from "undici";
import WebSocket from "ws";
import { RedisBroker, systemClock } from "../src/index.js";
import { RedisServer } from "../test/helpers/redis.js";
import { cpuMicros, machine, pinned, pinProcess } from "./proc.js";
import { startHeartline, type ServerHandle } from "./servers.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const { values } = parseArgs({ options: { quick: { type: "boolean", default: false } } });
const quick = values.quick!;
const plan = {
  // Not a multiple of the node count, so that each channel is published through every node in turn.
  channels: quick ? 400 : 1000,
  nodes: 3,
  perChannel: quick ? 3 : 10,
  payloadBytes: 100,
  concurrency: 64,
  shardWarmupMs: quick ? 500 : 1000,
  shardMs: quick ? 2000 : 8000,
  shardInFlight: 256,
  unitPublishes: quick ? 1000 : 10000,
  /** Rounds of parts 1 and 2, alternating the designs, so that load from elsewhere on the machine shows as spread. */
  repeat: quick ? 1 : 2,
};
const PAYLOAD = JSON.stringify({ p: "x".repeat(plan.payloadBytes - 8) }); // exactly payloadBytes of JSON
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (what: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${what}\n`);
const t0 = performance.now();
const round = (x: number, d = 0) => Number(x.toFixed(d));

pinProcess(process.pid, 1);

// ---------------------------------------------------------------- Redis and nodes

interface RedisHandle {
  server: RedisServer;
  client: Redis;
  pid: number;
}

async function startRedis(): Promise<RedisHandle> {
  const server = await RedisServer.start();
  const client = new Redis(server.url, { lazyConnect: false });
  const pid = Number(/process_id:(\d+)/.exec(await client.info("server"))![1]);
  pinProcess(pid, 0);
  return { server, client, pid };
}

async function stopRedis(r: RedisHandle): Promise<void> {
  r.client.disconnect();
  await r.server.stop();
}

/** INFO fields as numbers: `commandstats` calls per command, net bytes, CPU. */
async function redisInfo(r: RedisHandle): Promise<Record<string, number>> {
  const text = await r.client.info("all");
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) out[`cmd:${m[1]}`] = Number(m[2]);
  for (const k of ["total_net_input_bytes", "total_net_output_bytes", "used_cpu_sys", "used_cpu_user"]) {
    const m = new RegExp(`^${k}:([\\d.]+)`, "m").exec(text);
    out[k] = m ? Number(m[1]) : 0;
  }
  out.cpu_us = (out.used_cpu_sys! + out.used_cpu_user!) * 1e6;
  return out;
}

function diff(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) out[k] = (b[k] ?? 0) - (a[k] ?? 0);
  return out;
}

interface NodeHandle {
  port: number;
  pid: number;
  proc: ChildProcess;
}

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const p of children) p.kill("SIGKILL");
});

/** bench/cluster-node.ts on core 0; resolves once it listens. */
async function startNode(redisUrl: string, subscribeAll: boolean): Promise<NodeHandle> {
  const [cmd, args] = pinned(0, process.execPath, ["--import", "tsx", join(ROOT, "bench/cluster-node.ts"), "--redis", redisUrl, ...(subscribeAll ? ["--subscribe-all"] : [])]);
  const proc = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  children.add(proc);
  proc.once("exit", () => children.delete(proc));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = "";
    proc.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      const m = /"port":(\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    proc.once("exit", (code) => reject(new Error(`cluster-node exited (code ${code}) before listening`)));
  });
  return { port, pid: proc.pid!, proc };
}

async function stopNode(n: NodeHandle): Promise<void> {
  if (n.proc.exitCode !== null || n.proc.signalCode !== null) return;
  const gone = new Promise((r) => n.proc.once("exit", r));
  n.proc.kill("SIGTERM");
  await Promise.race([gone, sleep(3000).then(() => n.proc.kill("SIGKILL"))]);
}

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

/** The node's broker counters from /metrics. */
async function brokerMetrics(port: number): Promise<{ notifications: number; bytes: number; subscribed: number }> {
  const text = await get(port, "/metrics");
  const read = (name: string) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
    return m ? Number(m[1]) : 0;
  };
  return {
    notifications: read("heartline_broker_notifications_total"),
    bytes: read("heartline_broker_notification_bytes_total"),
    subscribed: read("heartline_broker_subscribed_channels"),
  };
}

/** Kept-alive HTTP connections to one node (undici: cheaper per request than node:http, so the publisher stays light). */
function pool(port: number, connections: number): Pool {
  return new Pool(`http://127.0.0.1:${port}`, { connections, pipelining: 1 });
}

/** One POST /api/publish; rejects unless 200. */
async function publish(p: Pool, channel: string): Promise<void> {
  const res = await p.request({
    path: "/api/publish",
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"channel":"' + channel + '","data":' + PAYLOAD + "}",
  });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`publish answered ${res.statusCode}`);
}

// ---------------------------------------------------------------- 1. interest vs every node

interface InterestRow {
  design: string;
  round: number;
  node: number;
  published: number;
  notifications: number;
  ratio: number;
  notificationBytes: number;
  delivered: number;
  cpuUs: number;
  cpuUsPerDelivered: number;
}

async function interestRun(subscribeAll: boolean, roundNo: number): Promise<InterestRow[]> {
  const design = subscribeAll ? "every node (subscribeAll)" : "interest";
  const redis = await startRedis();
  const nodes: NodeHandle[] = [];
  const sockets: WebSocket[] = [];
  try {
    nodes.push(...(await Promise.all(Array.from({ length: plan.nodes }, () => startNode(redis.server.url, subscribeAll)))));
    log(`${design}: ${plan.nodes} nodes up; ${plan.channels} WebSocket subscribers`);
    const delivered = new Array<number>(plan.nodes).fill(0);
    let total = 0;
    let onMessage = () => {};
    await Promise.all(
      Array.from({ length: plan.channels }, (_, c) => {
        const i = c % plan.nodes;
        const ws = new WebSocket(`ws://127.0.0.1:${nodes[i]!.port}/ws?channel=c${c}`);
        sockets.push(ws);
        return new Promise<void>((resolve, reject) => {
          ws.on("message", (raw) => {
            const text = raw.toString();
            if (text.startsWith('{"type":"message"')) {
              delivered[i]!++;
              total++;
              onMessage();
            } else if (text.startsWith('{"type":"subscribed"')) resolve();
          });
          ws.once("error", reject);
        });
      }),
    );
    await sleep(500); // every channel's SUBSCRIBE acknowledged
    const pools = nodes.map((n) => pool(n.port, Math.ceil(plan.concurrency / plan.nodes)));
    /** Publishes `perChannel` messages on every channel and waits until every subscriber has them. */
    const publishRound = async (perChannel: number): Promise<void> => {
      const messages = plan.channels * perChannel;
      const target = total + messages;
      const done = new Promise<void>((resolve) => {
        onMessage = () => {
          if (total >= target) resolve();
        };
      });
      let next = 0;
      await Promise.all(
        Array.from({ length: plan.concurrency }, async () => {
          while (next < messages) {
            const k = next++;
            // Channel k % channels through node k % nodes.
            await publish(pools[k % plan.nodes]!, `c${k % plan.channels}`);
          }
        }),
      );
      await Promise.race([done, sleep(60_000).then(() => Promise.reject(new Error(`only ${total} of ${target} messages arrived`)))]);
    };
    await publishRound(1); // warm-up: JIT, streams, every subscription active
    delivered.fill(0);
    await sleep(200);
    const before = await Promise.all(nodes.map((n) => brokerMetrics(n.port)));
    const cpuBefore = nodes.map((n) => cpuMicros(n.pid));
    const messages = plan.channels * plan.perChannel;
    log(`${design}: publishing ${messages} messages of ${plan.payloadBytes} B, ${plan.concurrency} in flight`);
    await publishRound(plan.perChannel);
    await sleep(200);
    const cpuAfter = nodes.map((n) => cpuMicros(n.pid));
    const after = await Promise.all(nodes.map((n) => brokerMetrics(n.port)));
    await Promise.all(pools.map((p) => p.close()));
    return nodes.map((_, i) => {
      const notifications = after[i]!.notifications - before[i]!.notifications;
      const cpuUs = cpuAfter[i]! - cpuBefore[i]!;
      return {
        design,
        round: roundNo,
        node: i + 1,
        published: messages,
        notifications,
        ratio: round(notifications / messages, 3),
        notificationBytes: after[i]!.bytes - before[i]!.bytes,
        delivered: delivered[i]!,
        cpuUs: round(cpuUs),
        cpuUsPerDelivered: round(cpuUs / delivered[i]!, 1),
      };
    });
  } finally {
    for (const ws of sockets) ws.terminate();
    await Promise.all(nodes.map(stopNode));
    await stopRedis(redis);
  }
}

// ---------------------------------------------------------------- 2. 1 vs 3 shards

interface ShardRow {
  shards: number;
  round?: number;
  seconds: number;
  publishes: number;
  publishesPerSecond: number;
  redisCpuUsPerPublish: number;
  redisCoreShare: number[];
  maxRedisCoreShare: number;
  nodeCoreShare: number[];
  /** This process: the HTTP publisher. */
  publisherCoreShare: number;
}

async function shardRun(redises: RedisHandle[], shards: number): Promise<ShardRow> {
  const url = redises
    .slice(0, shards)
    .map((r) => r.server.url)
    .join(",");
  const nodes: ServerHandle[] = [];
  try {
    nodes.push(...(await Promise.all([0, 1].map(() => startHeartline({ args: ["--redis", url] })))));
    log(`${shards} shard(s): 2 nodes up; publishing for ${(plan.shardWarmupMs + plan.shardMs) / 1000} s, ${plan.shardInFlight} in flight`);
    const pools = nodes.map((n) => pool(n.endpoint.port, plan.shardInFlight / 2));
    let count = 0;
    let k = 0;
    let stop = false;
    const workers = Array.from({ length: plan.shardInFlight }, async () => {
      while (!stop) {
        const n = k++;
        await publish(pools[n % 2]!, `s${n % plan.channels}`);
        count++;
      }
    });
    const snap = () => ({ t: performance.now(), count, redis: redises.map((r) => cpuMicros(r.pid)), nodes: nodes.map((n) => cpuMicros(n.pids()[0]!)), self: cpuMicros(process.pid) });
    await sleep(plan.shardWarmupMs);
    const start = snap();
    await sleep(plan.shardMs);
    const end = snap();
    stop = true;
    await Promise.all(workers);
    await Promise.all(pools.map((p) => p.close()));
    const seconds = (end.t - start.t) / 1000;
    const publishes = end.count - start.count;
    const redisUs = end.redis.map((v, i) => v - start.redis[i]!).slice(0, shards);
    const redisCoreShare = redisUs.map((us) => round(us / 1e6 / seconds, 3));
    return {
      shards,
      seconds: round(seconds, 2),
      publishes,
      publishesPerSecond: round(publishes / seconds),
      redisCpuUsPerPublish: round(redisUs.reduce((a, b) => a + b, 0) / publishes, 1),
      redisCoreShare,
      maxRedisCoreShare: Math.max(...redisCoreShare),
      nodeCoreShare: end.nodes.map((v, i) => round((v - start.nodes[i]!) / 1e6 / seconds, 3)),
      publisherCoreShare: round((end.self - start.self) / 1e6 / seconds, 3),
    };
  } finally {
    await Promise.all(nodes.map((n) => n.stop(true)));
  }
}

// ---------------------------------------------------------------- 3. unit costs

interface PublishCost {
  subscribedNodes: number;
  inFlight: number;
  publishes: number;
  commandsPerPublish: Record<string, number>;
  inBytesPerPublish: number;
  outBytesPerPublish: number;
  redisCpuUsPerPublish: number;
  notificationBytesPerMessage: number;
}

interface UnitCosts {
  payloadBytes: number;
  publish: PublishCost[];
  subscribe: { channels: number; nameBytes: number; commands: number; inBytesPerChannel: number; outBytesPerChannel: number };
  unsubscribe: { channels: number; commands: number; inBytesPerChannel: number; outBytesPerChannel: number };
}

function broker(url: string): RedisBroker {
  return new RedisBroker({ url, historySize: 1000, historyTtl: 3600, lingerMs: 0 });
}

async function ready(b: RedisBroker): Promise<void> {
  if (!(await b.waitReady(5000))) throw new Error("broker not ready");
}

/** INFO's own reply is counted in the next snapshot's output bytes: measure that overhead with nothing in between. */
async function quietDiff(r: RedisHandle): Promise<Record<string, number>> {
  const a = await redisInfo(r);
  const b = await redisInfo(r);
  return diff(a, b);
}

/**
 * `plan.unitPublishes` publishes over `plan.channels` channels (names of 11 characters)
 * from one broker, `inFlight` at a time, with `subscribedNodes` other brokers
 * subscribed to every one of them.
 */
async function publishCost(r: RedisHandle, subscribedNodes: number, inFlight: number): Promise<PublishCost> {
  const publisher = broker(r.server.url);
  const subscribers = Array.from({ length: subscribedNodes }, () => broker(r.server.url));
  try {
    await Promise.all([publisher, ...subscribers].map(ready));
    const names = Array.from({ length: plan.channels }, (_, i) => `u${subscribedNodes}-${inFlight}-${String(i).padStart(4, "0")}`.padEnd(11, "_"));
    for (const s of subscribers) for (const c of names) s.interest(c, true);
    while (subscribers.some((s) => names.some((c) => !s.isSubscribed(c)))) await sleep(10);
    for (const c of names) await publisher.publish(c, PAYLOAD); // the streams exist, the script is cached
    await sleep(100);
    const quiet = await quietDiff(r);
    const before = await redisInfo(r);
    const usage0 = subscribers.map((s) => s.usage());
    const n = plan.unitPublishes;
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < n) await publisher.publish(names[next++ % names.length]!, PAYLOAD);
      }),
    );
    await sleep(200);
    // The reply to `before` and the request of the closing INFO are in the delta: one quiet INFO's worth.
    const full = diff(before, await redisInfo(r));
    const work: Record<string, number> = {};
    for (const k of Object.keys(full)) work[k] = full[k]! - (quiet[k] ?? 0);
    const commandsPerPublish: Record<string, number> = {};
    for (const [k, v] of Object.entries(work)) if (k.startsWith("cmd:") && k !== "cmd:info" && v > 0) commandsPerPublish[k.slice(4)] = round(v / n, 2);
    const notes = subscribers.map((s, i) => {
      const u = s.usage();
      return { count: (u.notifications ?? 0) - (usage0[i]!.notifications ?? 0), bytes: (u.notificationBytes ?? 0) - (usage0[i]!.notificationBytes ?? 0) };
    });
    const noteCount = notes.reduce((a, b) => a + b.count, 0);
    return {
      subscribedNodes,
      inFlight,
      publishes: n,
      commandsPerPublish,
      inBytesPerPublish: round(work.total_net_input_bytes! / n, 1),
      outBytesPerPublish: round(work.total_net_output_bytes! / n, 1),
      redisCpuUsPerPublish: round(work.cpu_us! / n, 1),
      notificationBytesPerMessage: noteCount ? round(notes.reduce((a, b) => a + b.bytes, 0) / noteCount, 1) : 0,
    };
  } finally {
    await Promise.all([publisher, ...subscribers].map((b) => b.close()));
  }
}

async function subscriptionCost(r: RedisHandle): Promise<Pick<UnitCosts, "subscribe" | "unsubscribe">> {
  const b = broker(r.server.url);
  try {
    await ready(b);
    const names = Array.from({ length: plan.channels }, (_, i) => `chat:room-${String(i).padStart(6, "0")}`);
    const c0 = b.subscriptionCommands;
    const quiet = await quietDiff(r);
    const s0 = await redisInfo(r);
    for (const name of names) b.interest(name, true);
    while (names.some((n) => !b.isSubscribed(n))) await sleep(10);
    const s1 = await redisInfo(r);
    const c1 = b.subscriptionCommands;
    for (const name of names) b.interest(name, false);
    b.sweep(systemClock.now() + 1);
    await sleep(300);
    const s2 = await redisInfo(r);
    const sub = diff(s0, s1);
    const unsub = diff(s1, s2);
    const perChannel = (d: Record<string, number>, k: string) => round((d[k]! - quiet[k]!) / names.length, 1);
    return {
      subscribe: {
        channels: names.length,
        nameBytes: names[0]!.length,
        commands: c1 - c0,
        inBytesPerChannel: perChannel(sub, "total_net_input_bytes"),
        outBytesPerChannel: perChannel(sub, "total_net_output_bytes"),
      },
      unsubscribe: {
        channels: names.length,
        commands: b.subscriptionCommands - c1,
        inBytesPerChannel: perChannel(unsub, "total_net_input_bytes"),
        outBytesPerChannel: perChannel(unsub, "total_net_output_bytes"),
      },
    };
  } finally {
    await b.close();
  }
}

// ---------------------------------------------------------------- report

function table(head: string[], rows: Array<Array<string | number>>): string {
  const fmt = (v: string | number) => (typeof v === "number" ? v.toLocaleString("en-US") : v);
  return [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.map(fmt).join(" | ")} |`)].join("\n") + "\n";
}

const results: Record<string, unknown> = { startedAt: new Date().toISOString(), quick, plan, machine: machine() };
const loadStart = loadavg().map((x) => round(x, 2));
log(`load average at start: ${loadStart.join(" ")}`);

const interest: InterestRow[] = [];
for (let r = 1; r <= plan.repeat; r++) for (const all of [false, true]) interest.push(...(await interestRun(all, r)));
results.interest = interest;

const redises = await Promise.all([0, 1, 2].map(() => startRedis()));
let shards: ShardRow[];
try {
  shards = [];
  for (let r = 1; r <= plan.repeat; r++) for (const n of [1, 3]) shards.push({ ...(await shardRun(redises, n)), round: r });
} finally {
  await Promise.all(redises.map(stopRedis));
}
results.shards = shards;

log("unit costs");
const unitRedis = await startRedis();
let units: UnitCosts;
try {
  const publishCosts = [];
  for (const [k, inFlight] of [[0, 1], [1, 1], [3, 1], [0, 64], [1, 64], [3, 64]] as const) publishCosts.push(await publishCost(unitRedis, k, inFlight));
  units = { payloadBytes: plan.payloadBytes, publish: publishCosts, ...(await subscriptionCost(unitRedis)) };
} finally {
  await stopRedis(unitRedis);
}
results.unitCosts = units;
const loadEnd = loadavg().map((x) => round(x, 2));
(results.machine as Record<string, unknown>).loadavgEnd = loadEnd;

let out = `# Heartline cluster benchmark${quick ? " (quick)" : ""}\n\n`;
const m = results.machine as ReturnType<typeof machine>;
out += `${m.cpus} × ${m.model}, Node ${m.node}, pinned: ${m.pinned ? "servers core 0, generator core 1" : "no"}; load average ${loadStart.join(" ")} at start, ${loadEnd.join(" ")} at end\n\n`;
out += `## 1. Interest vs every node: one Redis, ${plan.nodes} nodes, ${plan.channels} channels, 1 WebSocket subscriber per channel (on node index % ${plan.nodes}), ${plan.channels * plan.perChannel} messages of ${plan.payloadBytes} B\n\n`;
out += table(
  ["design", "round", "node", "notifications / published", "ingress ratio", "notification bytes", "delivered", "node CPU µs / delivered"],
  interest.map((r) => [r.design, r.round, r.node, `${r.notifications} / ${r.published}`, r.ratio, r.notificationBytes, r.delivered, r.cpuUsPerDelivered]),
);
const mean = (rows: InterestRow[], f: (r: InterestRow) => number) => rows.reduce((a, r) => a + f(r), 0) / rows.length;
const ri = interest.filter((r) => r.design === "interest");
const ra = interest.filter((r) => r.design !== "interest");
out += `\nMean ingress ratio: interest ${round(mean(ri, (r) => r.ratio), 3)}, every node ${round(mean(ra, (r) => r.ratio), 3)}; ratio of ratios ${round(mean(ri, (r) => r.ratio) / mean(ra, (r) => r.ratio), 3)}. `;
out += `Mean node CPU per delivered message: interest ${round(mean(ri, (r) => r.cpuUsPerDelivered), 1)} µs, every node ${round(mean(ra, (r) => r.cpuUsPerDelivered), 1)} µs (each includes the node's share of the HTTP publishes).\n\n`;
out += `## 2. Publish throughput through 2 nodes: 1 vs 3 Redis shards, ${plan.shardInFlight} publishes in flight over ${plan.channels} channels, no subscribers\n\n`;
const nodeUsPerPublish = (s: ShardRow) => round((s.nodeCoreShare.reduce((a, b) => a + b, 0) * 1e6) / s.publishesPerSecond, 1);
const core0 = (s: ShardRow) => round(s.nodeCoreShare.reduce((a, b) => a + b, 0) + s.redisCoreShare.reduce((a, b) => a + b, 0), 2);
/** Publishes/s the shards would carry at 100% of one core each, at the CPU per publish measured here. */
const ceiling = (s: ShardRow) => round((1e6 / s.redisCpuUsPerPublish) * s.shards);
out += table(
  ["shards", "round", "publishes/s", "node CPU µs / publish", "Redis CPU µs / publish (all shards)", "Redis core share per shard", "node core share (2 nodes)", "core 0 busy (nodes + Redis)", "publisher core share (core 1)", "Redis ceiling at 1 core each, publishes/s"],
  shards.map((s) => [s.shards, s.round ?? 1, s.publishesPerSecond, nodeUsPerPublish(s), s.redisCpuUsPerPublish, s.redisCoreShare.join(", "), s.nodeCoreShare.join(", "), core0(s), s.publisherCoreShare, ceiling(s)]),
);
const maxRedis = Math.max(...shards.map((s) => s.maxRedisCoreShare));
const saturated = shards.some((s) => core0(s) >= 0.9 || s.publisherCoreShare >= 0.9);
out += `\nNo Redis used more than ${maxRedis} of a core: Redis is far from its limit, and the Node.js processes (the 2 nodes and the publisher) are the bottleneck. `;
out += saturated
  ? "A core was saturated by them.\n\n"
  : "Neither core was saturated by them alone, so the rest of the time went to other load on the machine (see the load average): read the publishes/s as a floor, and the Redis CPU per publish and core shares as what the shards change.\n\n";
{
  const pub = shards.reduce((a, s) => a + nodeUsPerPublish(s), 0) / shards.length;
  const sum = (rows: InterestRow[], f: (r: InterestRow) => number) => rows.reduce((a, r) => a + f(r), 0);
  const extraNotes = sum(ra, (r) => r.notifications) - sum(ri, (r) => r.notifications);
  const unserved = (sum(ra, (r) => r.cpuUs) - sum(ri, (r) => r.cpuUs)) / extraNotes;
  results.derived = { nodeCpuUsPerHttpPublish: round(pub, 1), nodeCpuUsPerNotificationAndDelivery: round(mean(ri, (r) => r.cpuUsPerDelivered) - pub, 1), nodeCpuUsPerUnservedNotification: round(unserved, 1) };
  out += `Derived for the capacity model: a node spends ≈ ${round(pub, 1)} µs per HTTP publish (part 2, mean); part 1's CPU per delivered message minus that leaves ≈ ${round(mean(ri, (r) => r.cpuUsPerDelivered) - pub, 1)} µs for a notification and its one delivery (interest); `;
  out += `the every-node design spent ${round(unserved, 1)} µs more per notification it received for a channel it does not serve (total CPU difference / extra notifications; within noise when near 0 or negative).\n\n`;
}
out += `## 3. Unit costs (one Redis, in-process brokers, ${units.payloadBytes} B payloads)\n\n`;
out += table(
  ["nodes subscribed", "publishes in flight", "commands / publish", "Redis bytes in / publish", "Redis bytes out / publish", "Redis CPU µs / publish", "notification bytes / message"],
  units.publish.map((p) => [
    p.subscribedNodes,
    p.inFlight,
    Object.entries(p.commandsPerPublish)
      .map(([k, v]) => `${k} ${v}`)
      .join(", "),
    p.inBytesPerPublish,
    p.outBytesPerPublish,
    p.redisCpuUsPerPublish,
    p.notificationBytesPerMessage,
  ]),
);
out += `\nSubscription changes, ${units.subscribe.channels} channel names of ${units.subscribe.nameBytes} characters: SUBSCRIBE in ${units.subscribe.commands} command(s), ${units.subscribe.inBytesPerChannel} B in and ${units.subscribe.outBytesPerChannel} B out per channel; `;
out += `UNSUBSCRIBE in ${units.unsubscribe.commands} command(s), ${units.unsubscribe.inBytesPerChannel} B in and ${units.unsubscribe.outBytesPerChannel} B out per channel.\n`;

const dir = join(ROOT, "bench/results");
mkdirSync(dir, { recursive: true });
const file = join(dir, `cluster-${String(results.startedAt).replace(/[:.]/g, "-")}.json`);
writeFileSync(file, JSON.stringify(results, null, 2) + "\n");
process.stdout.write(out + `\nresults: ${file.slice(ROOT.length)}\n`);
log("done");
process.exit(0);
