/**
 * What presence costs (scenario `presence`, SPEC §9), with the memory broker
 * and with Redis (a private `redis-server` on a free loopback port, pinned to
 * the server's core 0 and counted apart). Every Heartline runs with
 * `--presence room:* --presence-grace 0` (leaves at once); a presence
 * subscriber names its client (`client=<id>`) on a `room:` channel, its
 * baseline does the same on a `plain:` channel, which tracks nothing. The
 * generator is this process, pinned to core 1; it uses `ws`, node:http and
 * (to read `INFO`) ioredis, nothing of Heartline.
 *
 * - join + leave: server CPU per WebSocket connect → `presence` snapshot (or
 *   `subscribed` on a plain channel) → close, with members already held in
 *   the channels, so each operation also sends its join and leave to them
 *   and gets a snapshot of them; two shapes: many small channels and one
 *   large one.
 * - members: RSS (VmRSS as it stands, no forced GC) with N idle members held,
 *   minus the same on plain channels, per member; for Redis also
 *   `used_memory` and the `INFO commandstats` calls per join, per leave and
 *   per member per second while held (the refresh every 5 s).
 * - fan-out: WebSocket fan-out CPU per delivered message on a plain channel
 *   with and without `--presence other:*`: presence off costs nothing.
 */
import { Redis } from "ioredis";
import WebSocket from "ws";
import { RedisServer, redisSkip } from "../test/helpers/redis.js";
import { LoadGen, type ClosedLoopResult } from "./loadgen.js";
import { cpuMicros, pinProcess, rssKiB } from "./proc.js";
import { startHeartline, type ServerHandle } from "./servers.js";

export type PresenceBroker = "memory" | "redis";

/** Redis commands per operation or per member, by command name (evalsha, zadd, …). */
export type CommandCounts = Record<string, number>;

export interface PresenceOpRow {
  broker: PresenceBroker;
  /** Channels the operations spread over, and members held in each before they start. */
  channels: number;
  held: number;
  /** Operations measured. */
  n: number;
  /** Server CPU per connect → snapshot → close on a plain channel, µs. */
  plainUs: number;
  /** The same on a presence channel, µs. */
  presenceUs: number;
  /** redis-server's own CPU per operation, µs (Redis only). */
  redisPlainUs?: number;
  redisPresenceUs?: number;
  /** Redis commands per operation (join + leave) on a presence channel, and on a plain one. */
  cmdsPresence?: CommandCounts;
  cmdsPlain?: CommandCounts;
  /** Members in the snapshots the operations received, on average (a check that the channels were as full as meant). */
  snapshotMembers: number;
  /** Frames the held members received per operation (their joins and leaves). */
  framesToHeld: number;
  error?: string;
}

export interface PresenceMemRow {
  broker: PresenceBroker;
  kind: "presence" | "plain";
  members: number;
  channels: number;
  /** RSS after − before the members were opened, ÷ members, KiB (no forced GC). */
  rssPerMemberKiB: number;
  /** Redis `used_memory` after − before, ÷ members, bytes. */
  redisBytesPerMember?: number;
  /** Redis commands per join (connection opened), per leave (closed), and per member per second while held. */
  perJoin?: CommandCounts;
  perLeave?: CommandCounts;
  perMemberSecond?: CommandCounts;
  /** How long the members were held for the per-second counts, s. */
  heldSeconds: number;
  /** Server CPU while the members were held, per member per second, µs. */
  heldCpuUsPerMemberSecond: number;
  error?: string;
}

export interface PresenceFanoutRow {
  subscribers: number;
  /** Server CPU per delivered message without `--presence`, µs (mean of the repetitions). */
  offUs: number;
  /** With `--presence other:*` (the channel does not match), µs. */
  onUs: number;
  reps: number;
  error?: string;
}

export interface PresenceResult {
  ops: PresenceOpRow[];
  members: PresenceMemRow[];
  fanout: PresenceFanoutRow[];
  redisVersion?: string;
  notes: string[];
}

const HOST = "127.0.0.1";
const LOCAL_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"];
const PRESENCE_ARGS = ["--presence", "room:*", "--presence-grace", "0"];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const errMsg = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0]!.slice(0, 300);
let seq = 0;
const runTag = Date.now().toString(36);

export function presencePlan(quick: boolean) {
  return quick
    ? {
        shapes: [
          { channels: 100, held: 4, n: 600 },
          { channels: 1, held: 200, n: 200 },
        ],
        members: 1000,
        perChannel: 100,
        holdSeconds: 10,
        fanout: { sizes: [100], reps: 1, warmupMs: 300, durationMs: 1500 },
      }
    : {
        shapes: [
          { channels: 1000, held: 4, n: 4000 },
          // Each operation here also sends 2,000 frames (its join and leave to every member): fewer of them.
          { channels: 1, held: 1000, n: 300 },
        ],
        members: 5000,
        perChannel: 100,
        // A multiple of the 5 s refresh period, so the window holds a whole number of refreshes.
        holdSeconds: 15,
        fanout: { sizes: [100, 1000], reps: 3, warmupMs: 1000, durationMs: 4000 },
      };
}

/** Seconds the scenario takes, about (for the progress bar). */
export function presenceEstimate(quick: boolean): number {
  const p = presencePlan(quick);
  const brokers = redisSkip === false ? 2 : 1;
  const ops = p.shapes.length * 2 * OPS_STEP_S(quick);
  const members = 2 * (MEMBERS_STEP_S(quick) + p.holdSeconds);
  const fanout = p.fanout.sizes.length * 2 * p.fanout.reps * FANOUT_STEP_S(p);
  return brokers * (ops + members) + fanout;
}
/** Seconds of one step, about. */
const OPS_STEP_S = (quick: boolean) => (quick ? 6 : 15);
const MEMBERS_STEP_S = (quick: boolean) => (quick ? 8 : 15);
const FANOUT_STEP_S = (p: ReturnType<typeof presencePlan>) => (p.fanout.warmupMs + p.fanout.durationMs) / 1000 + 2;

export type PresenceProgress = (what: string, estimateS: number) => void;

// ---------------------------------------------------------------- Redis

/** A private redis-server pinned to core 0, and a connection of the generator's for INFO. */
class BenchRedis {
  private constructor(
    readonly server: RedisServer,
    readonly client: Redis,
    readonly pid: number,
    readonly version: string,
  ) {}

  static async start(): Promise<BenchRedis> {
    const server = await RedisServer.start();
    const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    const info = await client.info("server");
    const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
    pinProcess(pid, 0);
    return new BenchRedis(server, client, pid, /redis_version:(\S+)/.exec(info)?.[1] ?? "?");
  }

  /** Calls so far per command (lower case, `info` and the generator's own commands left out). */
  async commands(): Promise<CommandCounts> {
    const out: CommandCounts = {};
    for (const m of (await this.client.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      if (!["info", "flushall", "client", "select", "hello", "ping", "config"].includes(m[1]!)) out[m[1]!] = Number(m[2]);
    }
    return out;
  }

  async usedMemory(): Promise<number> {
    return Number(/used_memory:(\d+)/.exec(await this.client.info("memory"))?.[1]);
  }

  /** Empties Redis between servers, so no set a killed server left lapses (and is expired) under the next one. */
  async flush(): Promise<void> {
    await this.client.flushall();
  }

  async stop(): Promise<void> {
    this.client.disconnect();
    await this.server.stop();
  }
}

/** (after − before) ÷ per, for every command that moved. */
function perUnit(before: CommandCounts, after: CommandCounts, per: number): CommandCounts {
  const out: CommandCounts = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d > 0) out[k] = d / per;
  }
  return out;
}

/** Settles once Redis saw no command for `quietMs` (after the last leave was sent), or after `maxMs`. */
async function redisQuiet(r: BenchRedis, quietMs: number, maxMs: number): Promise<void> {
  const total = (c: CommandCounts) => Object.values(c).reduce((s, x) => s + x, 0);
  const deadline = Date.now() + maxMs;
  let last = total(await r.commands());
  let since = Date.now();
  while (Date.now() < deadline) {
    await sleep(250);
    const now = total(await r.commands());
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return;
  }
}

// ---------------------------------------------------------------- connections

interface Held {
  sockets: WebSocket[];
  frames: number;
}

/** Opens one WebSocket subscriber with a client id; resolves with its socket once the snapshot (presence) or `subscribed` (plain) arrived, and the snapshot's size. */
function connect(port: number, channel: string, client: string, presence: boolean, localAddress: string, held?: Held): Promise<{ ws: WebSocket; members: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${HOST}:${port}/ws?channel=${encodeURIComponent(channel)}&client=${client}`, { localAddress, perMessageDeflate: false });
    const wanted = presence ? '{"type":"presence"' : '{"type":"subscribed"';
    let ready = false;
    ws.on("message", (d: Buffer) => {
      if (ready) {
        if (held) held.frames++;
        return;
      }
      const text = d.toString();
      if (!text.startsWith(wanted)) return;
      ready = true;
      resolve({ ws, members: presence ? (JSON.parse(text) as { members: unknown[] }).members.length : 0 });
    });
    ws.on("error", (e) => {
      if (!ready) reject(e);
    });
    ws.on("close", (code) => {
      if (!ready) reject(new Error(`closed (${code}) before it was subscribed`));
    });
  });
}

function closed(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise((r) => {
    ws.once("close", () => r());
    ws.close();
  });
}

async function pool(n: number, concurrency: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) await one(next++);
    }),
  );
}

/** `perChannel` idle members in each of `channels` channels (`<prefix>0…`). */
async function hold(port: number, prefix: string, channels: number, perChannel: number, presence: boolean): Promise<Held> {
  const held: Held = { sockets: [], frames: 0 };
  await pool(channels * perChannel, 100, async (i) => {
    const { ws } = await connect(port, `${prefix}${i % channels}`, `held-${i}`, presence, LOCAL_ADDRESSES[i % LOCAL_ADDRESSES.length]!, held);
    held.sockets.push(ws);
  });
  return held;
}

/** `n` operations: connect with a new client id → snapshot → close, spread over the channels; resolves with the snapshot sizes summed. */
async function operations(port: number, prefix: string, channels: number, n: number, offset: number, presence: boolean): Promise<number> {
  let members = 0;
  await pool(n, 50, async (i) => {
    const k = offset + i;
    const c = await connect(port, `${prefix}${k % channels}`, `op-${k}`, presence, LOCAL_ADDRESSES[k % LOCAL_ADDRESSES.length]!);
    members += c.members;
    await closed(c.ws);
  });
  return members;
}

/** Median of five RSS readings 200 ms apart, KiB. */
async function rssNow(pid: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    if (i) await sleep(200);
    xs.push(rssKiB(pid));
  }
  return xs.sort((a, b) => a - b)[2]!;
}

async function heartline(redis: BenchRedis | undefined, extra: string[] = PRESENCE_ARGS): Promise<ServerHandle> {
  if (redis) await redis.flush();
  return startHeartline({ args: [...extra, ...(redis ? ["--redis", redis.server.url] : [])] });
}

// ---------------------------------------------------------------- the parts

async function opsRow(redis: BenchRedis | undefined, shape: { channels: number; held: number; n: number }, progress: PresenceProgress, stepS: number): Promise<PresenceOpRow> {
  const broker: PresenceBroker = redis ? "redis" : "memory";
  const row: PresenceOpRow = { broker, channels: shape.channels, held: shape.held, n: shape.n, plainUs: 0, presenceUs: 0, snapshotMembers: 0, framesToHeld: 0 };
  for (const presence of [false, true]) {
    progress(`presence · ${broker} · join + leave, ${shape.channels} × ${shape.held} held · ${presence ? "presence" : "plain"} channels`, stepS);
    const h = await heartline(redis);
    let held: Held | undefined;
    try {
      const port = h.endpoint.port;
      const pid = h.pids()[0]!;
      const prefix = `${presence ? "room" : "plain"}:${runTag}-${++seq}-`;
      held = await hold(port, prefix, shape.channels, shape.held, presence);
      // Warm-up of the same kind, then the measured run.
      await operations(port, prefix, shape.channels, Math.min(300, Math.ceil(shape.n / 3)), 1_000_000, presence);
      if (redis) await redisQuiet(redis, 500, 3000);
      const frames0 = held.frames;
      const c0 = redis ? await redis.commands() : {};
      const r0 = redis ? cpuMicros(redis.pid) : 0;
      const cpu0 = cpuMicros(pid);
      const members = await operations(port, prefix, shape.channels, shape.n, 0, presence);
      const us = (cpuMicros(pid) - cpu0) / shape.n;
      if (redis) {
        // The last leaves reach Redis after their close: count them too.
        await redisQuiet(redis, 500, 5000);
        const rUs = (cpuMicros(redis.pid) - r0) / shape.n;
        const cmds = perUnit(c0, await redis.commands(), shape.n);
        if (presence) {
          row.redisPresenceUs = rUs;
          row.cmdsPresence = cmds;
        } else {
          row.redisPlainUs = rUs;
          row.cmdsPlain = cmds;
        }
      } else await sleep(300);
      if (presence) {
        row.presenceUs = us;
        row.snapshotMembers = members / shape.n;
        row.framesToHeld = (held.frames - frames0) / shape.n;
      } else row.plainUs = us;
    } catch (e) {
      row.error = errMsg(e);
    } finally {
      for (const ws of held?.sockets ?? []) ws.terminate();
      await h.stop(false);
    }
    if (row.error) break;
  }
  return row;
}

async function membersRow(redis: BenchRedis | undefined, presence: boolean, plan: ReturnType<typeof presencePlan>, progress: PresenceProgress, stepS: number): Promise<PresenceMemRow> {
  const broker: PresenceBroker = redis ? "redis" : "memory";
  const channels = Math.ceil(plan.members / plan.perChannel);
  const row: PresenceMemRow = { broker, kind: presence ? "presence" : "plain", members: plan.members, channels, rssPerMemberKiB: 0, heldSeconds: plan.holdSeconds, heldCpuUsPerMemberSecond: 0 };
  progress(`presence · ${broker} · ${plan.members.toLocaleString("en-US")} idle members on ${presence ? "presence" : "plain"} channels`, stepS);
  const h = await heartline(redis);
  let held: Held | undefined;
  try {
    const port = h.endpoint.port;
    const pid = h.pids()[0]!;
    const prefix = `${presence ? "room" : "plain"}:${runTag}-${++seq}-`;
    // Warm the code paths (and let their garbage go) so the baseline already holds compiled code.
    const warm = await hold(port, `${prefix}warm-`, 10, 20, presence);
    await Promise.all(warm.sockets.map(closed));
    await sleep(1500);
    if (redis) await redisQuiet(redis, 500, 3000);
    const rss0 = await rssNow(pid);
    const mem0 = redis ? await redis.usedMemory() : 0;
    const c0 = redis ? await redis.commands() : {};
    held = await hold(port, prefix, channels, plan.perChannel, presence);
    await sleep(1000);
    if (redis) await redisQuiet(redis, 500, 3000);
    const c1 = redis ? await redis.commands() : {};
    row.rssPerMemberKiB = ((await rssNow(pid)) - rss0) / plan.members;
    if (redis) row.redisBytesPerMember = ((await redis.usedMemory()) - mem0) / plan.members;
    progress(`presence · ${broker} · holding ${plan.members.toLocaleString("en-US")} ${presence ? "presence" : "plain"} members ${plan.holdSeconds} s`, plan.holdSeconds);
    const cpu1 = cpuMicros(pid);
    const t1 = performance.now();
    await sleep(plan.holdSeconds * 1000);
    const c2 = redis ? await redis.commands() : {};
    const seconds = (performance.now() - t1) / 1000;
    row.heldSeconds = seconds;
    row.heldCpuUsPerMemberSecond = (cpuMicros(pid) - cpu1) / plan.members / seconds;
    await Promise.all(held.sockets.map(closed));
    held = undefined;
    if (redis) {
      await redisQuiet(redis, 1000, 20000);
      row.perJoin = perUnit(c0, c1, plan.members);
      row.perMemberSecond = perUnit(c1, c2, plan.members * seconds);
      row.perLeave = perUnit(c2, await redis.commands(), plan.members);
    }
  } catch (e) {
    row.error = errMsg(e);
  } finally {
    for (const ws of held?.sockets ?? []) ws.terminate();
    await h.stop(false);
  }
  return row;
}

async function fanoutRows(plan: ReturnType<typeof presencePlan>, progress: PresenceProgress): Promise<PresenceFanoutRow[]> {
  const rows: PresenceFanoutRow[] = [];
  const gen = await LoadGen.start(1);
  try {
    for (const n of plan.fanout.sizes) {
      const row: PresenceFanoutRow = { subscribers: n, offUs: 0, onUs: 0, reps: plan.fanout.reps };
      try {
        // Alternating, so a change of the machine's load falls on both.
        for (let rep = 0; rep < plan.fanout.reps; rep++) {
          for (const on of [false, true]) {
            progress(`presence · fan-out to ${n} on a plain channel · ${on ? "--presence other:*" : "no --presence"}`, FANOUT_STEP_S(plan));
            const h = await startHeartline({ args: on ? ["--presence", "other:*"] : [] });
            try {
              const channel = `plain:${runTag}-${++seq}`;
              const o = await gen.open({ endpoint: h.endpoint, transport: "ws", channel, concurrency: 100 }, n);
              if (o.failed > 0) throw new Error(`${o.failed} of ${n} subscribers failed to open: ${o.errors.join("; ")}`);
              const r = await gen.call<ClosedLoopResult>(0, {
                cmd: "closedLoop",
                endpoint: h.endpoint,
                channel,
                batch: 10,
                warmupMs: plan.fanout.warmupMs,
                durationMs: plan.fanout.durationMs,
                serverPids: h.pids(),
              });
              if (r.stalled) throw new Error(r.stalled);
              const us = r.serverCpuUs / r.delivered / plan.fanout.reps;
              if (on) row.onUs += us;
              else row.offUs += us;
            } finally {
              await gen.closeAll();
              await h.stop(false);
            }
          }
        }
      } catch (e) {
        row.error = errMsg(e);
      }
      rows.push(row);
    }
  } finally {
    await gen.stop();
  }
  return rows;
}

export async function presenceScenario(progress: PresenceProgress, quick: boolean): Promise<PresenceResult> {
  const plan = presencePlan(quick);
  const out: PresenceResult = { ops: [], members: [], fanout: [], notes: [] };
  let redis: BenchRedis | undefined;
  try {
    redis = await BenchRedis.start();
    out.redisVersion = redis.version;
  } catch (e) {
    out.notes.push(`Redis rows left out: ${errMsg(e)}`);
  }
  try {
    for (const r of redis ? [undefined, redis] : [undefined]) {
      for (const shape of plan.shapes) out.ops.push(await opsRow(r, shape, progress, OPS_STEP_S(quick)));
      for (const presence of [false, true]) out.members.push(await membersRow(r, presence, plan, progress, MEMBERS_STEP_S(quick)));
    }
  } finally {
    await redis?.stop();
  }
  out.fanout = await fanoutRows(plan, progress);
  return out;
}

// ---------------------------------------------------------------- tables

function f(x: number | undefined, digits = 1): string {
  if (x === undefined || !Number.isFinite(x)) return "—";
  return Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(digits);
}

/** `evalsha 2 · zadd 1 · …`, most called first, total in front. */
function commandList(c: CommandCounts | undefined, digits = 2): string {
  if (!c) return "—";
  const entries = Object.entries(c).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return "0";
  const total = entries.reduce((s, [, v]) => s + v, 0);
  const n = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(digits));
  return `**${n(total)}**: ` + entries.map(([k, v]) => `${k} ${n(v)}`).join(" · ");
}

/**
 * Refresh passes seen while the members were held: a pass pushes each set's
 * expiry with one ZADD per set (per 1,000 members), and nothing else calls
 * ZADD while no one joins.
 */
function refreshPasses(m: PresenceMemRow): number {
  const zadd = m.perMemberSecond?.zadd;
  if (!zadd) return 0;
  return Math.round((zadd * m.members * m.heldSeconds) / (m.channels * Math.ceil(m.members / m.channels / 1000)));
}

function scale(c: CommandCounts | undefined, by: number): CommandCounts | undefined {
  if (!c) return undefined;
  return Object.fromEntries(Object.entries(c).map(([k, v]) => [k, v * by]));
}

export function presenceTables(r: PresenceResult): string {
  const parts: string[] = [];
  if (r.redisVersion) parts.push(`Redis ${r.redisVersion}, pinned to core 0 with the server; its CPU is counted apart.`);
  for (const n of r.notes) parts.push(`note: ${n}`);
  const ops = [
    "| broker | channels × members held | ops | plain µs/op | presence µs/op | presence adds µs/op | snapshot members | frames to held members per op | redis-server µs/op (plain → presence) |",
    "|---|---|---|---|---|---|---|---|---|",
    ...r.ops.map((o) =>
      o.error
        ? `| ${o.broker} | ${o.channels.toLocaleString("en-US")} × ${o.held.toLocaleString("en-US")} | ${o.n} | error: ${o.error} ||||||`
        : `| ${o.broker} | ${o.channels.toLocaleString("en-US")} × ${o.held.toLocaleString("en-US")} | ${o.n} | ${f(o.plainUs)} | ${f(o.presenceUs)} | ${f(o.presenceUs - o.plainUs)} | ${f(o.snapshotMembers)} | ${f(o.framesToHeld)} | ${o.broker === "redis" ? `${f(o.redisPlainUs)} → ${f(o.redisPresenceUs)}` : "—"} |`,
    ),
  ];
  parts.push("Join + leave: server CPU per WebSocket connect (with `client=`) → snapshot → close\n\n" + ops.join("\n"));
  const redisOps = r.ops.filter((o) => o.broker === "redis" && !o.error);
  if (redisOps.length) {
    parts.push(
      "Redis commands per join + leave (`INFO commandstats`; refreshes of the held members' sets during the run included)\n\n" +
        [
          "| channels × members held | plain channel | presence channel |",
          "|---|---|---|",
          ...redisOps.map((o) => `| ${o.channels.toLocaleString("en-US")} × ${o.held.toLocaleString("en-US")} | ${commandList(o.cmdsPlain)} | ${commandList(o.cmdsPresence)} |`),
        ].join("\n"),
    );
  }
  const mem = [
    "| broker | members (channels) | channel | RSS KiB/member | presence adds KiB/member | Redis used_memory B/member | presence adds B/member | server CPU while held µs/member/s |",
    "|---|---|---|---|---|---|---|---|",
    ...r.members.map((m) => {
      if (m.error) return `| ${m.broker} | ${m.members} | ${m.kind} | error: ${m.error} |||||`;
      const base = r.members.find((x) => x.broker === m.broker && x.kind === "plain" && !x.error);
      const adds = m.kind === "presence" && base;
      return `| ${m.broker} | ${m.members.toLocaleString("en-US")} (${m.channels}) | ${m.kind} | ${f(m.rssPerMemberKiB, 2)} | ${adds ? f(m.rssPerMemberKiB - base.rssPerMemberKiB, 2) : ""} | ${f(m.redisBytesPerMember)} | ${adds && m.redisBytesPerMember !== undefined ? f(m.redisBytesPerMember - (base.redisBytesPerMember ?? 0)) : ""} | ${f(m.heldCpuUsPerMemberSecond, 2)} |`;
    }),
  ];
  parts.push("Idle members held: memory (RSS as it stands, no forced GC)\n\n" + mem.join("\n"));
  const redisMem = r.members.filter((m) => m.broker === "redis" && !m.error);
  if (redisMem.length) {
    parts.push(
      "Redis commands per member (`INFO commandstats`)\n\n" +
        [
          "| channel | per join | per leave | per member per second held | refresh passes in the window | per member per refresh pass |",
          "|---|---|---|---|---|---|",
          ...redisMem.map((m) => {
            const p = refreshPasses(m);
            const perPass = p ? scale(m.perMemberSecond, m.heldSeconds / p) : undefined;
            return `| ${m.kind} (${m.members.toLocaleString("en-US")} in ${m.channels}, held ${m.heldSeconds.toFixed(1)} s) | ${commandList(m.perJoin)} | ${commandList(m.perLeave)} | ${commandList(m.perMemberSecond, 5)} | ${p || "—"} | ${commandList(perPass, 4)} |`;
          }),
        ].join("\n") +
        "\n\n(A window of a few refresh periods holds one pass more or less depending on where it falls; the per-pass figure does not.)",
    );
  }
  if (r.fanout.length) {
    parts.push(
      "WebSocket fan-out on a plain channel: server CPU per delivered message\n\n" +
        [
          "| subscribers | no --presence µs/msg | --presence other:* µs/msg | change |",
          "|---|---|---|---|",
          ...r.fanout.map((x) =>
            x.error
              ? `| ${x.subscribers} | error: ${x.error} |||`
              : `| ${x.subscribers} | ${f(x.offUs, 2)} | ${f(x.onUs, 2)} | ${(((x.onUs - x.offUs) / x.offUs) * 100).toFixed(1)} % |`,
          ),
        ].join("\n") +
        (r.fanout[0] ? `\n\n(mean of ${r.fanout[0].reps} alternating run${r.fanout[0].reps > 1 ? "s" : ""} each)` : ""),
    );
  }
  return parts.join("\n\n") + "\n";
}
