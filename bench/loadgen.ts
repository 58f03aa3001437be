/**
 * The one load generator used for every server under test. The parent side
 * (`LoadGen`) forks worker processes pinned to core 1 and drives them over
 * IPC; each worker holds subscribers of one server and transport
 * (subscribers.ts) and, when asked, publishes to them itself so that the
 * timing of a closed loop or of a latency sample never crosses a process.
 *
 * Every scenario publishes the same payload, `{"t":<ms>,"p":"x…"}`; a
 * subscriber counts the `{"t":` markers it receives, whatever the framing
 * (Heartline envelope, Socket.IO event, nchan raw message), and in the
 * latency scenario reads `t` to time publish → receive.
 */
import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import https from "node:https";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { cpuMicrosOf, pinned, sysMicrosOf, writeSyscallsOf } from "./proc.js";
import type { Endpoint, Transport } from "./servers.js";
import { counters, openSubscriber, type Subscriber } from "./subscribers.js";

// ---------------------------------------------------------------- protocol

export interface OpenCommand {
  cmd: "open";
  endpoint: Endpoint;
  transport: Transport;
  channel: string;
  n: number;
  /** Source addresses to spread connections over (127.0.0.2–.9); default: the system's choice. */
  localAddresses?: string[];
  /** Handshakes in flight at once. */
  concurrency?: number;
}
export interface OpenResult {
  opened: number;
  failed: number;
  errors: string[];
  ms: number;
}

export interface ClosedLoopCommand {
  cmd: "closedLoop";
  endpoint: Endpoint;
  channel: string;
  /** Messages published per round; the next round starts when every subscriber has the whole round. */
  batch: number;
  warmupMs: number;
  durationMs: number;
  /** Processes whose CPU counts as the server's. */
  serverPids: number[];
}
export interface ClosedLoopResult {
  rounds: number;
  delivered: number;
  elapsedMs: number;
  serverCpuUs: number;
  /** The kernel part of `serverCpuUs`. */
  serverSysUs: number;
  generatorCpuUs: number;
  /** Deliveries beyond what was published (duplicates); should be 0. */
  extra: number;
  /** The measured window on the monotonic clock (µs, as `process.hrtime`), to cut a CPU profile to it. */
  windowUs: [number, number];
  stalled?: string;
}

export interface SteadyCommand {
  cmd: "steady";
  endpoint: Endpoint;
  channel: string;
  /** Concurrent publishers, each publishing continuously over its kept-alive connection. */
  publishers: number;
  /** Messages published but not yet delivered to every subscriber, at most (shared by the publishers). */
  window: number;
  /** Payload size in bytes. */
  bytes: number;
  warmupMs: number;
  durationMs: number;
  serverPids: number[];
}
export interface SteadyResult {
  /** Messages published in the measured window. */
  published: number;
  /** Deliveries counted in the measured window (markers, all subscribers). */
  delivered: number;
  elapsedMs: number;
  serverCpuUs: number;
  serverSysUs: number;
  generatorCpuUs: number;
  /** Mean of (published − delivered to everyone) seen by a publisher before each publish. */
  meanInFlight: number;
  publishErrors: number;
  /** Write syscalls the server made in the window (its publish answers included). */
  serverWrites: number;
  /** The measured window on the monotonic clock (µs, as `process.hrtime`), to cut a CPU profile to it. */
  windowUs: [number, number];
  stalled?: string;
}

export interface LatencyCommand {
  cmd: "latency";
  endpoint: Endpoint;
  channel: string;
  rate: number;
  warmupMs: number;
  durationMs: number;
}
export interface LatencyResult {
  samples: number;
  expected: number;
  p50: number;
  p99: number;
  max: number;
  /** p99 timed when the generator reached each subscriber's socket (adds its own work on the others of the batch). */
  handledP99: number;
  publishErrors: number;
  /** p99 of how late the generator's own publish timer fired (ms): the machine's scheduling noise, beside the figures. */
  timerLateP99: number;
}

export interface CountsResult {
  subscribers: number;
  received: number;
  dropped: number;
  errors: number;
  heartbeats: number;
  cpuUs: number;
}

type Command = OpenCommand | ClosedLoopCommand | SteadyCommand | LatencyCommand | { cmd: "counts" } | { cmd: "closeAll" } | { cmd: "exit" };
interface Envelope {
  id: number;
  command: Command;
}
interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

// ---------------------------------------------------------------- publishing

const PAD = "x".repeat(64);
/** The benchmark payload: a timestamp (performance.now() of the publishing process) and padding. */
export function payload(t = performance.now()): string {
  return '{"t":' + t.toFixed(3) + ',"p":"' + PAD + '"}';
}

/** The same payload padded to exactly `bytes` bytes (when the timestamp leaves room). */
export function payloadOf(bytes: number, t = performance.now()): string {
  const ts = t.toFixed(3);
  return '{"t":' + ts + ',"p":"' + "x".repeat(Math.max(0, bytes - 13 - ts.length)) + '"}';
}

const publishAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });
/** For a server on HTTPS (its certificate is the bench's own: not checked). */
const publishTlsAgent = new https.Agent({ keepAlive: true, maxSockets: 32, rejectUnauthorized: false });

/**
 * One publish over HTTP to `channel` of any server; resolves with the status
 * code. A kept-alive socket that the server closed just as it was reused is
 * retried once on a new one (the request never reached the server).
 */
export function publish(ep: Endpoint, channel: string, json: string, retry = true): Promise<number> {
  let path: string;
  let body: string;
  if (ep.server === "heartline") {
    path = "/api/publish";
    body = '{"channel":' + JSON.stringify(channel) + ',"data":' + json + "}";
  } else if (ep.server === "socketio") {
    path = "/publish?room=" + encodeURIComponent(channel);
    body = json;
  } else {
    path = "/pub/" + encodeURIComponent(channel);
    body = json;
  }
  return new Promise((resolve, reject) => {
    const req = (ep.tls ? https : http).request(
      {
        host: ep.host,
        port: ep.port,
        path,
        method: "POST",
        agent: ep.tls ? publishTlsAgent : publishAgent,
        headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (retry && req.reusedSocket && (err.code === "ECONNRESET" || err.code === "EPIPE")) publish(ep, channel, json, false).then(resolve, reject);
      else reject(err);
    });
    req.end(body);
  });
}

async function publishOk(ep: Endpoint, channel: string, json: string): Promise<void> {
  const status = await publish(ep, channel, json);
  if (status < 200 || status >= 300) throw new Error(`publish answered HTTP ${status}`);
}

/** nchan hands a new subscriber the channel's oldest message: publish one (without the marker) before subscribers come, and it tells each of them that it is in. */
export async function primeChannel(ep: Endpoint, channel: string): Promise<void> {
  if (ep.server === "nchan") await publishOk(ep, channel, '{"primer":true}');
}

// ---------------------------------------------------------------- worker

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const subs: Subscriber[] = [];

async function open(c: OpenCommand): Promise<OpenResult> {
  const started = performance.now();
  const errors: string[] = [];
  let opened = 0;
  let failed = 0;
  let next = 0;
  const concurrency = c.concurrency ?? 100;
  const lanes = Array.from({ length: Math.min(concurrency, c.n) }, async () => {
    while (next < c.n) {
      const i = next++;
      const localAddress = c.localAddresses?.length ? c.localAddresses[i % c.localAddresses.length] : undefined;
      try {
        subs.push(await openSubscriber(c.endpoint, c.transport, c.channel, localAddress));
        opened++;
      } catch (err) {
        failed++;
        if (errors.length < 5) errors.push((err as Error).message);
      }
    }
  });
  await Promise.all(lanes);
  return { opened, failed, errors, ms: Math.round(performance.now() - started) };
}

/** Resolves when `counters.received` reaches `target`, or false after `timeoutMs`. */
function receivedAtLeast(target: number, timeoutMs: number): Promise<boolean> {
  if (counters.received >= target) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      counters.waiter = undefined;
      resolve(false);
    }, timeoutMs);
    counters.waiter = {
      target,
      done: () => {
        clearTimeout(timer);
        resolve(true);
      },
    };
  });
}

function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function cpuNowUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

async function closedLoop(c: ClosedLoopCommand): Promise<ClosedLoopResult> {
  const n = subs.length;
  let expected = counters.received;
  const round = async (): Promise<boolean> => {
    expected += n * c.batch;
    const sends: Array<Promise<void>> = [];
    for (let i = 0; i < c.batch; i++) sends.push(publishOk(c.endpoint, c.channel, payload()));
    await Promise.all(sends);
    return receivedAtLeast(expected, 15000);
  };
  const stalled = (): string => `stalled: ${counters.received - (expected - n * c.batch)} of ${n * c.batch} deliveries of a round arrived`;
  const warmEnd = performance.now() + c.warmupMs;
  while (performance.now() < warmEnd) {
    if (!(await round())) return { rounds: 0, delivered: 0, elapsedMs: 0, serverCpuUs: 0, serverSysUs: 0, generatorCpuUs: 0, extra: 0, windowUs: [0, 0], stalled: stalled() };
  }
  const server0 = cpuMicrosOf(c.serverPids);
  const sys0 = sysMicrosOf(c.serverPids);
  const gen0 = cpuNowUs();
  const recv0 = counters.received;
  const t0 = performance.now();
  const w0 = monotonicUs();
  let rounds = 0;
  let stall: string | undefined;
  while (performance.now() - t0 < c.durationMs) {
    if (!(await round())) {
      stall = stalled();
      break;
    }
    rounds++;
  }
  const elapsedMs = performance.now() - t0;
  const w1 = monotonicUs();
  const serverCpuUs = cpuMicrosOf(c.serverPids) - server0;
  const serverSysUs = sysMicrosOf(c.serverPids) - sys0;
  const generatorCpuUs = cpuNowUs() - gen0;
  const delivered = counters.received - recv0;
  await sleep(200);
  return {
    rounds,
    delivered,
    elapsedMs: Math.round(elapsedMs),
    serverCpuUs,
    serverSysUs,
    generatorCpuUs,
    extra: Math.max(0, counters.received - expected),
    windowUs: [w0, w1],
    ...(stall ? { stalled: stall } : {}),
  };
}

/**
 * A steady stream: `publishers` loops publish back to back, each on its own
 * kept-alive connection, as long as fewer than `window` messages are
 * published but not yet delivered to every subscriber; the window is shared.
 * A subscriber's k-th message is counted in `hits[k]`; message k is
 * delivered to everyone when `hits[k]` reaches the number of subscribers
 * (each subscriber gets the channel's messages in one order).
 */
async function steady(c: SteadyCommand): Promise<SteadyResult> {
  const n = subs.length;
  if (n === 0) throw new Error("no subscribers");
  const base = subs[0]!.seen;
  if (subs.some((x) => x.seen !== base)) throw new Error("subscribers start from different counts");
  const RING = 1 << 12;
  if (c.window >= RING) throw new Error("window too large");
  const hits = new Uint32Array(RING);
  let full = base; // messages delivered to every subscriber
  let published = base;
  let lastProgress = performance.now();
  const waiting: Array<() => void> = [];
  counters.perSubscriber = (seen, k) => {
    for (let i = 1; i <= k; i++) hits[(seen + i) % RING]!++;
    let advanced = false;
    while (hits[(full + 1) % RING] === n) {
      hits[(full + 1) % RING] = 0;
      full++;
      advanced = true;
    }
    if (advanced) {
      lastProgress = performance.now();
      for (const w of waiting.splice(0)) w();
    }
  };
  let stop = false;
  let stall: string | undefined;
  let publishErrors = 0;
  let gaps = 0;
  let gapSamples = 0;
  const room = (): Promise<void> => (published - full < c.window ? Promise.resolve() : new Promise((r) => waiting.push(r)));
  const publisher = async (): Promise<void> => {
    while (!stop) {
      await room();
      if (stop) break;
      if (published - full >= c.window) continue;
      gaps += published - full;
      gapSamples++;
      published++;
      try {
        await publishOk(c.endpoint, c.channel, payloadOf(c.bytes));
      } catch (e) {
        publishErrors++;
        stall ??= `publish failed: ${(e as Error).message}`;
        stop = true;
      }
    }
  };
  const watchdog = setInterval(() => {
    if (performance.now() - lastProgress > 15000) {
      stall ??= `stalled: ${published - full} messages published but not delivered to every subscriber for 15 s`;
      stop = true;
      for (const w of waiting.splice(0)) w();
    }
  }, 500);
  const loops = Array.from({ length: c.publishers }, publisher);
  try {
    await sleep(c.warmupMs);
    const server0 = cpuMicrosOf(c.serverPids);
    const sys0 = sysMicrosOf(c.serverPids);
    const writes0 = writeSyscallsOf(c.serverPids);
    const gen0 = cpuNowUs();
    const recv0 = counters.received;
    const pub0 = published;
    gaps = 0;
    gapSamples = 0;
    const t0 = performance.now();
    const w0 = monotonicUs();
    await sleep(c.durationMs);
    const w1 = monotonicUs();
    const elapsedMs = performance.now() - t0;
    const serverCpuUs = cpuMicrosOf(c.serverPids) - server0;
    const serverSysUs = sysMicrosOf(c.serverPids) - sys0;
    const serverWrites = writeSyscallsOf(c.serverPids) - writes0;
    const generatorCpuUs = cpuNowUs() - gen0;
    const delivered = counters.received - recv0;
    const pubs = published - pub0;
    const meanInFlight = gapSamples ? gaps / gapSamples : 0;
    stop = true;
    for (const w of waiting.splice(0)) w();
    await Promise.all(loops);
    // Let what is in flight arrive, so the next run starts clean.
    const drainEnd = performance.now() + 5000;
    while (full < published && performance.now() < drainEnd) await sleep(20);
    return { published: pubs, delivered, elapsedMs: Math.round(elapsedMs), serverCpuUs, serverSysUs, generatorCpuUs, meanInFlight, publishErrors, serverWrites, windowUs: [w0, w1], ...(stall ? { stalled: stall } : {}) };
  } finally {
    stop = true;
    for (const w of waiting.splice(0)) w();
    clearInterval(watchdog);
    counters.perSubscriber = undefined;
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function latency(c: LatencyCommand): Promise<LatencyResult> {
  const n = subs.length;
  const samples: number[] = [];
  const handled: number[] = [];
  counters.latency = { samples, handled };
  const interval = 1000 / c.rate;
  const warm = Math.round((c.warmupMs / 1000) * c.rate);
  const total = warm + Math.round((c.durationMs / 1000) * c.rate);
  const start = performance.now();
  const recv0 = counters.received;
  let publishErrors = 0;
  const inflight: Array<Promise<void>> = [];
  const late: number[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    if (i >= warm) late.push(Math.max(0, performance.now() - due));
    // A warm-up message carries a negative time: delivered and counted, not sampled.
    const t = performance.now();
    inflight.push(publishOk(c.endpoint, c.channel, payload(i < warm ? -t : t)).catch(() => void publishErrors++));
  }
  await Promise.all(inflight);
  await receivedAtLeast(recv0 + n * total, 5000);
  counters.latency = undefined;
  const measured = (total - warm) * n;
  const sorted = Float64Array.from(samples).sort();
  return {
    samples: sorted.length,
    expected: measured,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
    handledP99: percentile(Float64Array.from(handled).sort(), 99),
    publishErrors,
    timerLateP99: percentile(Float64Array.from(late).sort(), 99),
  };
}

function counts(): CountsResult {
  return {
    subscribers: subs.length,
    received: counters.received,
    dropped: counters.dropped,
    errors: counters.errors,
    heartbeats: counters.heartbeats,
    cpuUs: cpuNowUs(),
  };
}

async function closeAll(): Promise<void> {
  for (const s of subs.splice(0)) s.close();
  await sleep(100);
}

async function run(command: Command): Promise<unknown> {
  switch (command.cmd) {
    case "open":
      return open(command);
    case "closedLoop":
      return closedLoop(command);
    case "steady":
      return steady(command);
    case "latency":
      return latency(command);
    case "counts":
      return counts();
    case "closeAll":
      return closeAll();
    case "exit":
      setImmediate(() => process.exit(0));
      return undefined;
  }
}

function workerMain(): void {
  process.on("message", (m: Envelope) => {
    run(m.command).then(
      (result) => process.send!({ id: m.id, ok: true, result } satisfies Reply),
      (err: Error) => process.send!({ id: m.id, ok: false, error: err.stack ?? String(err) } satisfies Reply),
    );
  });
  // The parent went away: do not linger holding thousands of sockets.
  process.on("disconnect", () => process.exit(0));
}

// ---------------------------------------------------------------- parent side

const WORKER_ENV = "HEARTLINE_BENCH_LOADGEN_WORKER";

class Worker {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  constructor(readonly proc: ChildProcess) {
    proc.on("message", (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r.result);
      else p.reject(new Error(r.error));
    });
    proc.once("exit", (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`load generator worker exited (code ${code})`));
      this.pending.clear();
    });
  }
  call<T>(command: Command): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.send({ id, command } satisfies Envelope);
    });
  }
}

/** The parent's handle on the generator's worker processes (all pinned to core 1). */
export class LoadGen {
  private constructor(private readonly workers: Worker[]) {}

  static async start(count: number): Promise<LoadGen> {
    const file = fileURLToPath(import.meta.url);
    const workers: Worker[] = [];
    for (let i = 0; i < count; i++) {
      const [cmd, args] = pinned(1, process.execPath, ["--import", "tsx", "--max-old-space-size=2048", file]);
      const proc = spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit", "ipc"], env: { ...process.env, [WORKER_ENV]: "1" } });
      workers.push(new Worker(proc));
    }
    const gen = new LoadGen(workers);
    await gen.each(() => ({ cmd: "counts" }));
    return gen;
  }

  get size(): number {
    return this.workers.length;
  }

  pids(): number[] {
    return this.workers.map((w) => w.proc.pid!);
  }

  call<T>(worker: number, command: Command): Promise<T> {
    return this.workers[worker]!.call<T>(command);
  }

  /** Sends each worker its own command (given its index) and waits for every answer. */
  each<T>(command: (i: number) => Command): Promise<T[]> {
    return Promise.all(this.workers.map((w, i) => w.call<T>(command(i))));
  }

  /** Opens `n` subscribers spread evenly over the workers. */
  async open(c: Omit<OpenCommand, "cmd" | "n">, n: number): Promise<OpenResult> {
    const k = this.workers.length;
    const parts = await this.each<OpenResult>((i) => ({ ...c, cmd: "open", n: Math.floor(n / k) + (i < n % k ? 1 : 0) }));
    return {
      opened: parts.reduce((s, p) => s + p.opened, 0),
      failed: parts.reduce((s, p) => s + p.failed, 0),
      errors: parts.flatMap((p) => p.errors).slice(0, 5),
      ms: Math.max(...parts.map((p) => p.ms)),
    };
  }

  async counts(): Promise<CountsResult> {
    const parts = await this.each<CountsResult>(() => ({ cmd: "counts" }));
    const sum = (f: (c: CountsResult) => number) => parts.reduce((s, p) => s + f(p), 0);
    return {
      subscribers: sum((p) => p.subscribers),
      received: sum((p) => p.received),
      dropped: sum((p) => p.dropped),
      errors: sum((p) => p.errors),
      heartbeats: sum((p) => p.heartbeats),
      cpuUs: sum((p) => p.cpuUs),
    };
  }

  closeAll(): Promise<unknown> {
    return this.each(() => ({ cmd: "closeAll" }));
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.proc.exitCode !== null || w.proc.signalCode !== null) return resolve();
            const t = setTimeout(() => w.proc.kill("SIGKILL"), 5000);
            w.proc.once("exit", () => {
              clearTimeout(t);
              resolve();
            });
            w.call({ cmd: "exit" }).catch(() => {});
          }),
      ),
    );
  }
}

if (process.env[WORKER_ENV] === "1" && process.send) workerMain();
