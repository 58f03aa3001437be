/**
 * Heartline side by side with Socket.IO 4 and nchan, in one run.
 *
 *   npm run bench                       # everything (≈22–25 min; the estimate is printed first)
 *   npm run bench -- --quick            # smaller N, shorter runs: a smoke run (≈4 min)
 *   npm run bench -- --scenario 1,3     # a subset: 1 fan-out CPU, steady (fan-out CPU under a steady stream), 2 idle RSS, 3 latency, 4 hold, hooks, presence, profile
 *   npm run bench -- --scenario presence --servers heartline   # what presence costs (memory broker and Redis)
 *   npm run bench -- --servers heartline,socketio
 *
 * Heartline's SSE is also measured over HTTPS and HTTP/2 (transport
 * `sse-h2`, a second Heartline with --tls-cert; one session per subscriber).
 *
 * Env: BENCH_HOLD_SECONDS (scenario 4, default 120; 10 with --quick),
 * BENCH_HOLD_CONNECTIONS (default 19000; 2000 with --quick),
 * BENCH_PROFILE_TRANSPORT (ws, sse or poll; default ws) and
 * BENCH_PROFILE_SUBSCRIBERS (default 1000) and BENCH_PROFILE_LOAD (steady,
 * the default, or rounds) for the profile, BENCH_NGINX,
 * BENCH_NCHAN_MODULE. Servers run pinned to core 0 and the load generator
 * (plus this process) to core 1 when `taskset` exists. Figures are printed
 * as Markdown tables on stdout, progress on stderr, and everything is saved
 * to bench/results/<timestamp>.json.
 */
import { hooksScenario } from "./hooks.js";
import { get as httpGet, type IncomingMessage } from "node:http";
import { get as httpsGet } from "node:https";
import { presenceEstimate, presenceScenario } from "./presence.js";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { summarizeFile } from "./cpu-profile.js";
import { LoadGen, primeChannel, payload, publish, type ClosedLoopResult, type LatencyResult, type SteadyResult } from "./loadgen.js";
import { cpuMicrosOf, machine, pinProcess, rssKiBOf } from "./proc.js";
import { evaluateTargets, fullReport, type FanoutRow, type HoldResult, type IdleRow, type LatencyRow, type ProfileResult, type Results, type SteadyRow } from "./report.js";
import { nchanMissing, startHeartline, startServer, TRANSPORTS, type Endpoint, type ServerHandle, type ServerName, type Transport } from "./servers.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const RESULTS_DIR = join(ROOT, "bench/results");
/** Source addresses for connection-heavy scenarios: 8 × the ephemeral port range. */
const LOCAL_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"];

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: process.env.BENCH_QUICK === "1" },
    scenario: { type: "string", default: process.env.BENCH_SCENARIOS ?? "1,steady,2,3,4,hooks,presence,profile" },
    servers: { type: "string", default: "heartline,socketio,nchan" },
  },
});
const quick = values.quick!;
const scenarios = new Set(values.scenario!.split(",").map((s) => s.trim()));
for (const s of scenarios) {
  if (!["1", "steady", "2", "3", "4", "hooks", "presence", "profile"].includes(s)) {
    process.stderr.write(
      `unknown scenario ${JSON.stringify(s)}: use 1 (fan-out CPU), steady (fan-out CPU, steady stream), 2 (idle RSS), 3 (latency), 4 (hold), hooks (connect hook cost), presence (presence cost), profile\n`,
    );
    process.exit(2);
  }
}

const plan = {
  fanout: quick
    ? { sizes: [100], batch: 10, warmupMs: 300, durationMs: 1500 }
    : { sizes: [100, 1000], batch: 10, warmupMs: 1000, durationMs: 4000 },
  /** `rounds`: every row is measured this many times, the servers in turn, and reported by its median (single runs vary with the machine's minute). */
  steady: quick
    ? { sizes: [100], publishers: 4, window: 16, bytes: 100, warmupMs: 500, durationMs: 1500, rounds: 1 }
    : { sizes: [100, 1000], publishers: 4, window: 16, bytes: 100, warmupMs: 1000, durationMs: 4000, rounds: 3 },
  /** `asIsMs`: how long after the last connection opened RSS is read as it stands (no forced GC); `settleMs`: the same before a forced GC. */
  /**
   * `warm`: connections opened and closed before the baseline is read. 1,000
   * in the full run, so that the baseline, like the readings after it, comes
   * after a settled burst (a server that collects after one, such as
   * Heartline with --settle-gc, would otherwise free the warm-up's garbage
   * only after the baseline and so report less than its connections hold).
   */
  idle: quick ? { sizes: [500, 1000], asIsMs: 3000, settleMs: 1500, warm: 100, workers: 2 } : { sizes: [5000, 19000], asIsMs: 12000, settleMs: 2500, warm: 1000, workers: 2 },
  latency: { subscribers: 100, rate: 50, warmupMs: quick ? 500 : 1000, durationMs: quick ? 3000 : 10000 },
  hold: {
    connections: Number(process.env.BENCH_HOLD_CONNECTIONS ?? (quick ? 2000 : 19000)),
    holdSeconds: Number(process.env.BENCH_HOLD_SECONDS ?? (quick ? 10 : 120)),
    heartbeatSeconds: 5,
    workers: 4,
  },
  profile: {
    subscribers: Number(process.env.BENCH_PROFILE_SUBSCRIBERS ?? 1000),
    transport: (process.env.BENCH_PROFILE_TRANSPORT ?? "ws") as Transport,
    /** `steady` (the default) profiles the steady stream, `rounds` the lock-step rounds of scenario 1. */
    load: (process.env.BENCH_PROFILE_LOAD ?? "steady") === "rounds" ? ("rounds" as const) : ("steady" as const),
    batch: 10, warmupMs: quick ? 300 : 1000, durationMs: quick ? 2000 : 5000 },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let channelSeq = 0;
const runTag = Date.now().toString(36);
const channelFor = (what: string) => `bench-${runTag}-${what}-${++channelSeq}`;

// ---------------------------------------------------------------- progress (stderr)

class Progress {
  private doneS = 0;
  private stepS = 0;
  private stepStart = Date.now();
  private label = "";
  private readonly started = Date.now();
  private readonly tty = process.stderr.isTTY === true;
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly totalS: number) {
    this.timer = setInterval(() => this.render(), 500);
    this.timer.unref();
  }
  /** Starts a step expected to take about `estimateS` seconds. */
  step(label: string, estimateS: number): void {
    this.doneS += this.stepS;
    this.stepS = estimateS;
    this.stepStart = Date.now();
    this.label = label;
    if (!this.tty) process.stderr.write(`[${this.percent().toString().padStart(3)}% ${this.elapsed()}] ${label}\n`);
    this.render();
  }
  note(text: string): void {
    if (this.tty) process.stderr.write("\r\x1b[K");
    process.stderr.write(text + "\n");
    this.render();
  }
  private percent(): number {
    const inStep = Math.min((Date.now() - this.stepStart) / 1000, this.stepS * 0.99);
    return Math.min(99, Math.floor((100 * (this.doneS + inStep)) / Math.max(this.totalS, 1)));
  }
  private elapsed(): string {
    const el = Math.round((Date.now() - this.started) / 1000);
    return `${Math.floor(el / 60)}:${String(el % 60).padStart(2, "0")}`;
  }
  private render(): void {
    if (!this.tty) return;
    const p = this.percent();
    const width = 30;
    const fill = Math.round((p / 100) * width);
    const bar = "█".repeat(fill) + "░".repeat(width - fill);
    const line = `${bar} ${p.toString().padStart(2)}% ${this.elapsed()} ${this.label}`;
    process.stderr.write("\r\x1b[K" + line.slice(0, (process.stderr.columns || 120) - 1));
  }
  done(): void {
    clearInterval(this.timer);
    if (this.tty) process.stderr.write("\r\x1b[K");
    process.stderr.write(`done in ${this.elapsed()}\n`);
  }
}

// ---------------------------------------------------------------- the run

const servers = values.servers!.split(",").map((s) => s.trim()) as ServerName[];
for (const s of servers) {
  if (!(s in TRANSPORTS)) {
    process.stderr.write(`unknown server ${JSON.stringify(s)}: use heartline, socketio, nchan\n`);
    process.exit(2);
  }
}
const skipped: string[] = [];
const missing = nchanMissing();
if (servers.includes("nchan") && missing) {
  skipped.push(`nchan skipped: ${missing}; its rows are left out`);
  servers.splice(servers.indexOf("nchan"), 1);
}
const pairs: Array<[ServerName, Transport]> = [];
for (const t of ["ws", "sse", "sse-h2", "poll"] as Transport[]) for (const s of servers) if (TRANSPORTS[s].includes(t)) pairs.push([s, t]);
/** The steady stream runs on the plain transports (not SSE over HTTP/2). */
const steadyPairs = pairs.filter(([, t]) => t !== "sse-h2");
/** Scenario 2's sizes for a transport: SSE over HTTP/2 (a TLS handshake per connection) stops at the first. */
const idleSizes = (t: Transport): number[] => (t === "sse-h2" ? plan.idle.sizes.slice(0, 1) : plan.idle.sizes);

/** Running servers by name; Heartline's SSE over HTTP/2 is served by a second Heartline with TLS, "heartline-tls". */
type Running = Map<ServerName | "heartline-tls", ServerHandle>;
const handleOf = (running: Running, s: ServerName, t: Transport): ServerHandle => running.get(t === "sse-h2" ? "heartline-tls" : s)!;

const results: Results = {
  startedAt: new Date().toISOString(),
  quick,
  machine: machine(),
  skipped,
  plan,
  fanout: [],
  steady: [],
  idle: [],
  latency: [],
  targets: [],
};

function estimate(): number {
  let s = 0;
  if (scenarios.has("1") || scenarios.has("steady") || scenarios.has("3")) s += pairs.length * (quick ? 1 : 1.5) + 3;
  if (scenarios.has("1")) s += plan.fanout.sizes.length * pairs.length * ((plan.fanout.warmupMs + plan.fanout.durationMs) / 1000 + 1.5) + 3;
  if (scenarios.has("steady")) s += plan.steady.rounds * plan.steady.sizes.length * steadyPairs.length * ((plan.steady.warmupMs + plan.steady.durationMs) / 1000 + 2);
  // Two fresh servers per pair; per size: opening (about 1,500 connections a second) and the wait before reading.
  if (scenarios.has("2"))
    for (const [, t] of pairs) {
      const sizes = idleSizes(t);
      s += 8 + plan.idle.asIsMs / 1000 + (2 * sizes[sizes.length - 1]!) / 1500 + sizes.length * (plan.idle.asIsMs / 1000 + 1 + plan.idle.settleMs / 1000 + 2);
    }
  if (scenarios.has("3")) s += pairs.length * ((plan.latency.warmupMs + plan.latency.durationMs) / 1000 + 1.5) + 3;
  if (scenarios.has("4") && servers.includes("heartline")) s += plan.hold.holdSeconds + (quick ? 5 : 30);
  if (scenarios.has("hooks") && servers.includes("heartline")) s += 6 * (quick ? 3 : 8);
  if (scenarios.has("presence") && servers.includes("heartline")) s += presenceEstimate(quick);
  if (scenarios.has("profile") && servers.includes("heartline")) s += (plan.profile.warmupMs + plan.profile.durationMs) / 1000 + 6;
  return s;
}

const progress = new Progress(estimate());
progress.note(`estimated time: about ${Math.ceil(estimate() / 60)} min`);
const label = (s: ServerName, t: Transport) => `${{ heartline: "Heartline", socketio: "Socket.IO", nchan: "nchan" }[s]} ${t}`;
const errMsg = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0]!.slice(0, 300);

/**
 * RSS of a server (KiB) with its garbage collected first (Node servers, via
 * the inspector): the median of five readings 200 ms apart.
 */
async function steadyRss(h: ServerHandle): Promise<number> {
  await h.collectGarbage?.();
  await sleep(200);
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    if (i) await sleep(200);
    xs.push(rssKiBOf(h.pids()));
  }
  return xs.sort((a, b) => a - b)[2]!;
}

/** This process's soft limit on open files (its workers inherit it), from /proc. */
function openFilesLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** RSS of a server (KiB) as it stands, as `top` shows it: no forced GC, the median of five readings 200 ms apart. */
async function asIsRss(h: ServerHandle): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    if (i) await sleep(200);
    xs.push(rssKiBOf(h.pids()));
  }
  return xs.sort((a, b) => a - b)[2]!;
}

/** Heartline's own JS heap in use (KiB), from its /metrics; splits RSS into heap and the rest. */
async function heartlineHeapKiB(ep: Endpoint): Promise<number | undefined> {
  try {
    const text = await getText(`${ep.tls ? "https" : "http"}://${ep.host}:${ep.port}/metrics`);
    const m = /^heartline_nodejs_heap_size_used_bytes\s+(\S+)/m.exec(text);
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** GET `url`'s body as text; over HTTPS the bench's own certificate is not checked. */
function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const done = (res: IncomingMessage) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d)).on("end", () => resolve(body)).on("error", reject);
    };
    const req = url.startsWith("https:") ? httpsGet(url, { rejectUnauthorized: false }, done) : httpGet(url, done);
    req.on("error", reject);
  });
}

async function openOrThrow(gen: LoadGen, ep: Endpoint, transport: Transport, channel: string, n: number, localAddresses?: string[]): Promise<number> {
  const o = await gen.open({ endpoint: ep, transport, channel, localAddresses, concurrency: 100 }, n);
  if (o.failed > 0) throw new Error(`${o.failed} of ${n} subscribers failed to open: ${o.errors.join("; ")}`);
  return o.opened;
}

/** Runs every server and transport briefly before anything is measured, so no figure pays for a cold JIT. */
async function warmUp(running: Running): Promise<void> {
  const gen = await LoadGen.start(1);
  try {
    for (const [s, t] of pairs) {
      progress.step(`warming up · ${label(s, t)}`, quick ? 1 : 1.5);
      const h = handleOf(running, s, t);
      try {
        const channel = channelFor(`warm-${t}`);
        await primeChannel(h.endpoint, channel);
        await openOrThrow(gen, h.endpoint, t, channel, 100);
        await gen.call<ClosedLoopResult>(0, { cmd: "closedLoop", endpoint: h.endpoint, channel, batch: 10, warmupMs: 0, durationMs: quick ? 500 : 1000, serverPids: h.pids() });
      } catch (e) {
        progress.note(`warming up · ${label(s, t)}: ${errMsg(e)}`);
      }
      await gen.closeAll();
    }
  } finally {
    await gen.stop();
  }
}

/** The figures scenario 1 and the steady stream share: CPU per delivered message, and the rate. */
function perDelivered(r: ClosedLoopResult | SteadyResult): Pick<FanoutRow, "serverUsPerMsg" | "serverSysUsPerMsg" | "generatorUsPerMsg" | "deliveredPerSec" | "delivered"> {
  return {
    serverUsPerMsg: r.serverCpuUs / r.delivered,
    serverSysUsPerMsg: r.serverSysUs / r.delivered,
    generatorUsPerMsg: r.generatorCpuUs / r.delivered,
    deliveredPerSec: r.delivered / (r.elapsedMs / 1000),
    delivered: r.delivered,
  };
}

/** Scenario 1: closed-loop fan-out, server CPU per delivered message. */
async function fanout(running: Running): Promise<void> {
  const gen = await LoadGen.start(1);
  try {
    for (const n of plan.fanout.sizes) {
      for (const [s, t] of pairs) {
        progress.step(`scenario 1 · ${label(s, t)} · ${n} subscribers`, (plan.fanout.warmupMs + plan.fanout.durationMs) / 1000 + 1.5);
        const h = handleOf(running, s, t);
        const row: FanoutRow = { server: s, transport: t, subscribers: n };
        try {
          const channel = channelFor(`fanout-${t}-${n}`);
          await primeChannel(h.endpoint, channel);
          await openOrThrow(gen, h.endpoint, t, channel, n);
          const r = await gen.call<ClosedLoopResult>(0, {
            cmd: "closedLoop",
            endpoint: h.endpoint,
            channel,
            batch: plan.fanout.batch,
            warmupMs: plan.fanout.warmupMs,
            durationMs: plan.fanout.durationMs,
            serverPids: h.pids(),
          });
          if (r.stalled) throw new Error(r.stalled);
          Object.assign(row, perDelivered(r), { rounds: r.rounds, extra: r.extra });
        } catch (e) {
          row.error = errMsg(e);
          progress.note(`scenario 1 · ${label(s, t)} · ${n}: ${row.error}`);
        }
        results.fanout.push(row);
        await gen.closeAll();
        await sleep(300);
      }
    }
  } finally {
    await gen.stop();
  }
}

/**
 * Scenario steady: fan-out under a steady stream. Several publishers publish
 * back to back within a shared window of messages not yet delivered to every
 * subscriber; server CPU per delivered message over the measured seconds.
 */
async function steadyFanout(running: Running): Promise<void> {
  const { sizes, publishers, window, bytes, warmupMs, durationMs, rounds } = plan.steady;
  const gen = await LoadGen.start(1);
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const n of sizes) {
        for (const [s, t] of steadyPairs) {
          progress.step(`scenario steady · ${label(s, t)} · ${n} subscribers${rounds > 1 ? ` · round ${round} of ${rounds}` : ""}`, (warmupMs + durationMs) / 1000 + 2);
          const h = handleOf(running, s, t);
          const row: SteadyRow = { server: s, transport: t, subscribers: n, round };
          try {
            const channel = channelFor(`steady-${t}-${n}`);
            await primeChannel(h.endpoint, channel);
            await openOrThrow(gen, h.endpoint, t, channel, n);
            const r = await gen.call<SteadyResult>(0, { cmd: "steady", endpoint: h.endpoint, channel, publishers, window, bytes, warmupMs, durationMs, serverPids: h.pids() });
            if (r.stalled) throw new Error(r.stalled);
            Object.assign(row, perDelivered(r), {
              publishedPerSec: r.published / (r.elapsedMs / 1000),
              meanInFlight: r.meanInFlight,
              writesPerMsg: r.serverWrites / r.delivered,
            });
          } catch (e) {
            row.error = errMsg(e);
            progress.note(`scenario steady · ${label(s, t)} · ${n}: ${row.error}`);
          }
          results.steady.push(row);
          await gen.closeAll();
          await sleep(300);
        }
      }
    }
  } finally {
    await gen.stop();
  }
}

interface IdleReading {
  opened: number;
  before: number;
  after: number;
  heapBefore?: number;
  heapAfter?: number;
  error?: string;
}

/**
 * One pass of scenario 2 on a fresh server: warm the code, read the
 * baseline, then open the sizes in turn and read RSS at each. `asIs`: no
 * inspector and no forced GC anywhere in the server's life, each reading
 * `asIsMs` after the last connection opened, as `top` would show it; else
 * every reading (the baseline too) follows a forced GC.
 */
async function idlePass(gen: LoadGen, s: ServerName, t: Transport, asIs: boolean): Promise<IdleReading[]> {
  const how = asIs ? "as it stands" : "after forced GC";
  progress.step(`scenario 2 · ${label(s, t)} · ${how} · starting a fresh server`, 3);
  const out: IdleReading[] = [];
  let h: ServerHandle | undefined;
  let opened = 0;
  try {
    h = await startServer(s, { inspect: !asIs, tls: t === "sse-h2" });
    const read = (x: ServerHandle) => (asIs ? asIsRss(x) : steadyRss(x));
    const channel = channelFor(`idle-${t}`);
    await primeChannel(h.endpoint, channel);
    // Warm the code paths first so the baseline already holds compiled code
    // (and, in the full run, comes after a settled burst: see plan.idle).
    await gen.call(0, { cmd: "open", endpoint: h.endpoint, transport: t, channel, n: plan.idle.warm, concurrency: 50 });
    await gen.closeAll();
    await sleep(asIs ? plan.idle.asIsMs : 1000);
    const before = await read(h);
    const heapBefore = s === "heartline" && !asIs ? await heartlineHeapKiB(h.endpoint) : undefined;
    for (const n of idleSizes(t)) {
      progress.step(`scenario 2 · ${label(s, t)} · ${how} · ${n.toLocaleString("en-US")} idle connections`, (n - opened) / 1500 + (asIs ? plan.idle.asIsMs / 1000 + 1 : plan.idle.settleMs / 1000 + 2));
      const r: IdleReading = { opened, before, after: 0 };
      try {
        opened += await openOrThrow(gen, h.endpoint, t, channel, n - opened, LOCAL_ADDRESSES);
        await sleep(asIs ? plan.idle.asIsMs : plan.idle.settleMs);
        Object.assign(r, { opened, after: await read(h) });
        if (heapBefore !== undefined) Object.assign(r, { heapBefore, heapAfter: await heartlineHeapKiB(h.endpoint) });
      } catch (e) {
        r.error = errMsg(e);
        progress.note(`scenario 2 · ${label(s, t)} · ${how} · ${n}: ${r.error}`);
      }
      out.push(r);
      if (r.error) break;
    }
  } catch (e) {
    out.push({ opened, before: 0, after: 0, error: errMsg(e) });
    progress.note(`scenario 2 · ${label(s, t)} · ${how}: ${errMsg(e)}`);
  } finally {
    await h?.stop(false);
    await gen.closeAll();
    await sleep(500);
  }
  return out;
}

/**
 * Scenario 2: RSS per idle connection, each server and transport in two
 * fresh processes: one read as it stands (what a user sees), one read after
 * forced GCs (what is live).
 */
async function idle(): Promise<void> {
  const gen = await LoadGen.start(plan.idle.workers);
  const nofile = openFilesLimit();
  const need = Math.ceil(Math.max(...plan.idle.sizes) / plan.idle.workers) + 500;
  if (nofile !== undefined && nofile < need) progress.note(`scenario 2: the generator may open ${nofile} files per process (ulimit -n) but needs about ${need}`);
  try {
    for (const [s, t] of pairs) {
      const asIs = await idlePass(gen, s, t, true);
      const gc = await idlePass(gen, s, t, false);
      idleSizes(t).forEach((n, i) => {
        const a = asIs[i];
        const g = gc[i];
        if (!a && !g) return;
        const row: IdleRow = { server: s, transport: t, connections: n };
        if (a && !a.error) Object.assign(row, { opened: a.opened, rssBeforeAsIsKiB: a.before, rssAfterAsIsKiB: a.after, perConnAsIsKiB: (a.after - a.before) / a.opened });
        if (g && !g.error) {
          Object.assign(row, { rssBeforeKiB: g.before, rssAfterKiB: g.after, perConnKiB: (g.after - g.before) / g.opened });
          if (g.heapBefore !== undefined && g.heapAfter !== undefined) row.heapPerConnKiB = (g.heapAfter - g.heapBefore) / g.opened;
        }
        const errs = [a?.error && `as it stands: ${a.error}`, g?.error && `after forced GC: ${g.error}`].filter(Boolean);
        if (errs.length) row.error = errs.join("; ");
        results.idle.push(row);
      });
    }
  } finally {
    await gen.stop();
  }
}

/** Scenario 3: publish → receive latency at a steady rate. */
async function latency(running: Running): Promise<void> {
  const gen = await LoadGen.start(1);
  const { subscribers, rate, warmupMs, durationMs } = plan.latency;
  try {
    for (const [s, t] of pairs) {
      progress.step(`scenario 3 · ${label(s, t)} · ${rate} msg/s to ${subscribers}`, (warmupMs + durationMs) / 1000 + 1.5);
      const h = handleOf(running, s, t);
      const row: LatencyRow = { server: s, transport: t, subscribers, rate };
      try {
        const channel = channelFor(`latency-${t}`);
        await primeChannel(h.endpoint, channel);
        await openOrThrow(gen, h.endpoint, t, channel, subscribers);
        const r = await gen.call<LatencyResult>(0, { cmd: "latency", endpoint: h.endpoint, channel, rate, warmupMs, durationMs });
        Object.assign(row, { samples: r.samples, expected: r.expected, p50: r.p50, p99: r.p99, max: r.max, handledP99: r.handledP99, publishErrors: r.publishErrors, timerLateP99: r.timerLateP99 });
        if (r.publishErrors) progress.note(`scenario 3 · ${label(s, t)}: ${r.publishErrors} publishes failed`);
      } catch (e) {
        row.error = errMsg(e);
        progress.note(`scenario 3 · ${label(s, t)}: ${row.error}`);
      }
      results.latency.push(row);
      await gen.closeAll();
      await sleep(300);
    }
  } finally {
    await gen.stop();
  }
}

/** Scenario 4: many WebSocket connections held by one Heartline process, with heartbeats. */
async function hold(): Promise<void> {
  const { connections, holdSeconds, heartbeatSeconds, workers } = plan.hold;
  progress.step(`scenario 4 · opening ${connections.toLocaleString("en-US")} WebSocket connections`, quick ? 3 : 25);
  const h = await startHeartline({ args: ["--heartbeat-interval", String(heartbeatSeconds)] });
  const gen = await LoadGen.start(workers);
  const pids = h.pids();
  const r: HoldResult = {
    connections,
    opened: 0,
    failed: 0,
    openSeconds: 0,
    holdSeconds,
    heartbeatSeconds,
    dropped: 0,
    heartbeatsPerConnection: 0,
    serverSubscribers: 0,
    finalDelivered: 0,
    rssBeforeKiB: 0,
    rssOpenKiB: 0,
    rssEndKiB: 0,
    perConnKiB: 0,
    serverCpuPct: 0,
    errors: [],
  };
  try {
    await sleep(500);
    r.rssBeforeKiB = rssKiBOf(pids);
    const channel = channelFor("hold");
    const o = await gen.open({ endpoint: h.endpoint, transport: "ws", channel, localAddresses: LOCAL_ADDRESSES, concurrency: 50 }, connections);
    r.opened = o.opened;
    r.failed = o.failed;
    r.errors = o.errors;
    r.openSeconds = o.ms / 1000;
    r.rssOpenKiB = rssKiBOf(pids);
    progress.step(`scenario 4 · holding ${o.opened.toLocaleString("en-US")} connections for ${holdSeconds} s (heartbeat ${heartbeatSeconds} s)`, holdSeconds);
    const c0 = await gen.counts();
    const cpu0 = cpuMicrosOf(pids);
    const t0 = Date.now();
    while (Date.now() - t0 < holdSeconds * 1000) {
      await sleep(Math.min(5000, holdSeconds * 1000 - (Date.now() - t0)));
      const c = await gen.counts();
      if (c.dropped > 0) progress.note(`scenario 4 · ${c.dropped} connections dropped so far`);
    }
    const cpu1 = cpuMicrosOf(pids);
    const heldMs = Date.now() - t0;
    const c1 = await gen.counts();
    r.heartbeatsPerConnection = (c1.heartbeats - c0.heartbeats) / Math.max(o.opened, 1);
    r.serverCpuPct = (100 * (cpu1 - cpu0)) / 1000 / heldMs;
    r.rssEndKiB = rssKiBOf(pids);
    r.perConnKiB = (r.rssEndKiB - r.rssBeforeKiB) / Math.max(o.opened, 1);
    const info = (await (await fetch(`http://${h.endpoint.host}:${h.endpoint.port}/api/channels/${channel}`)).json()) as { subscribers: number };
    r.serverSubscribers = info.subscribers;
    // Every held connection must still be live: one message to all of them.
    const status = await publish(h.endpoint, channel, payload());
    if (status !== 200) r.errors.push(`final publish answered HTTP ${status}`);
    const deadline = Date.now() + 20000;
    let c2 = await gen.counts();
    while (c2.received - c1.received < o.opened && Date.now() < deadline) {
      await sleep(250);
      c2 = await gen.counts();
    }
    r.finalDelivered = c2.received - c1.received;
    r.dropped = c2.dropped;
  } catch (e) {
    r.error = errMsg(e);
    progress.note(`scenario 4: ${r.error}`);
  } finally {
    results.hold = r;
    await gen.closeAll().catch(() => {});
    await gen.stop();
    await h.stop(false);
  }
}

/** A V8 CPU profile of Heartline's fan-out (1,000 WebSocket subscribers under the steady stream unless told otherwise). */
async function profile(stamp: string): Promise<void> {
  const { subscribers, batch, warmupMs, durationMs, transport, load } = plan.profile;
  progress.step(`profile · Heartline ${transport} fan-out to ${subscribers}`, (warmupMs + durationMs) / 1000 + 6);
  const dir = mkdtempSync(join(tmpdir(), "heartline-bench-prof-"));
  const out: ProfileResult = { subscribers, transport, load };
  let window: [number, number] | undefined;
  const h = await startHeartline({ cpuProfDir: dir });
  const gen = await LoadGen.start(1);
  try {
    const channel = channelFor("profile");
    await openOrThrow(gen, h.endpoint, transport, channel, subscribers);
    const st = plan.steady;
    const r =
      load === "steady"
        ? await gen.call<SteadyResult>(0, { cmd: "steady", endpoint: h.endpoint, channel, publishers: st.publishers, window: st.window, bytes: st.bytes, warmupMs, durationMs, serverPids: h.pids() })
        : await gen.call<ClosedLoopResult>(0, { cmd: "closedLoop", endpoint: h.endpoint, channel, batch, warmupMs, durationMs, serverPids: h.pids() });
    if (r.stalled) throw new Error(r.stalled);
    out.serverUsPerMsg = r.serverCpuUs / r.delivered;
    window = r.windowUs;
    await gen.closeAll();
    await sleep(300);
  } catch (e) {
    out.error = errMsg(e);
  } finally {
    await gen.stop();
    // The profile is written when the process exits cleanly.
    await h.stop(true);
  }
  try {
    const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
    if (!file) throw new Error("no .cpuprofile was written");
    const kept = join(RESULTS_DIR, `${stamp}-heartline-${transport}-fanout.cpuprofile`);
    copyFileSync(join(dir, file), kept);
    out.file = kept.slice(ROOT.length);
    out.summary = summarizeFile(kept, 15, window);
  } catch (e) {
    out.error ??= errMsg(e);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  results.profile = out;
}

async function main(): Promise<void> {
  pinProcess(process.pid, 1);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = results.startedAt.replace(/[:.]/g, "-");
  for (const s of skipped) progress.note(`note: ${s}`);
  if (scenarios.has("1") || scenarios.has("steady") || scenarios.has("3")) {
    progress.step("starting servers", 3);
    const running: Running = new Map();
    try {
      for (const s of servers) running.set(s, await startServer(s));
      if (pairs.some(([, t]) => t === "sse-h2")) running.set("heartline-tls", await startServer("heartline", { tls: true }));
      await warmUp(running);
      if (scenarios.has("1")) await fanout(running);
      if (scenarios.has("steady")) await steadyFanout(running);
      if (scenarios.has("3")) await latency(running);
    } finally {
      for (const h of running.values()) await h.stop(false);
    }
  }
  if (scenarios.has("2")) await idle();
  if (scenarios.has("4") && servers.includes("heartline")) await hold();
  if (scenarios.has("hooks") && servers.includes("heartline")) {
    results.hooks = await hooksScenario((what) => progress.step(what, quick ? 3 : 8), quick);
  }
  if (scenarios.has("presence") && servers.includes("heartline")) {
    results.presence = await presenceScenario((what, seconds) => progress.step(what, seconds), quick);
  }
  if (scenarios.has("profile") && servers.includes("heartline")) await profile(stamp);
  progress.done();
  results.machine.loadavgEnd = loadavg().map((x) => Number(x.toFixed(2)));
  results.targets = evaluateTargets(results);
  const file = join(RESULTS_DIR, `${stamp}.json`);
  writeFileSync(file, JSON.stringify(results, null, 2) + "\n");
  process.stdout.write(fullReport(results));
  process.stdout.write(`\nresults: ${file.slice(ROOT.length)}\n`);
}

process.on("SIGINT", () => process.exit(130));
process.on("SIGTERM", () => process.exit(143));

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`\nbench failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
