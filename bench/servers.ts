/**
 * The servers under test, each in its own process pinned to core 0:
 * Heartline (built `dist/cli.js`), the Socket.IO peer
 * (`peers/socketio-server.ts`, compiled once to plain JS so it runs without
 * a TypeScript loader, like Heartline's `dist/`), and nchan (nginx with its
 * own `-p` prefix and config in a temporary folder, on a loopback port).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { childrenOf, pinned } from "./proc.js";

export type ServerName = "heartline" | "socketio" | "nchan";
/** `sse-h2`: Heartline's SSE over HTTPS and HTTP/2 (its `--tls-cert`), one session per subscriber as separate browsers would. */
export type Transport = "ws" | "sse" | "poll" | "sse-h2";

/** Where a server listens; enough for the load generator to build every URL. */
export interface Endpoint {
  server: ServerName;
  host: string;
  port: number;
  /** HTTPS (a self-signed certificate: the generator does not check it). */
  tls?: boolean;
}

export interface ServerHandle {
  readonly name: ServerName;
  readonly endpoint: Endpoint;
  /** The processes whose CPU and memory count as the server's. */
  pids(): number[];
  /** Stops the server; `graceful` waits for a clean exit (needed for a CPU profile). */
  stop(graceful?: boolean): Promise<void>;
  /** Node servers started with `inspect`: a full garbage collection, so memory is read without garbage. */
  collectGarbage?(): Promise<void>;
}

export const TRANSPORTS: Record<ServerName, Transport[]> = {
  heartline: ["ws", "sse", "sse-h2", "poll"],
  socketio: ["ws"],
  nchan: ["ws", "sse", "poll"],
};

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const BUILD_DIR = join(ROOT, "bench/results/.build");
const HOST = "127.0.0.1";
/** Open files a server may hold: the 19,000 connections of the hold scenario, plus room. */
const NOFILE = 20000;
/** nginx's worker_connections: above NOFILE by more than 1/16, where nginx begins to drain idle connections. */
const NGINX_CONNECTIONS = Math.ceil((NOFILE * 16) / 15) + 1000;

const NGINX = process.env.BENCH_NGINX ?? "/usr/sbin/nginx";
const NCHAN_MODULE = process.env.BENCH_NCHAN_MODULE ?? "/usr/lib/nginx/modules/ngx_nchan_module.so";

/** Why nchan cannot run here, or undefined when it can. */
export function nchanMissing(): string | undefined {
  if (!existsSync(NGINX)) return `${NGINX} not found`;
  if (!existsSync(NCHAN_MODULE)) return `${NCHAN_MODULE} not found (install libnginx-mod-nchan)`;
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Servers still running, stopped if the benchmark exits early (nginx by SIGTERM, so its master takes its workers along). */
const live = new Map<ChildProcess, NodeJS.Signals>();
process.on("exit", () => {
  for (const [proc, signal] of live) if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
});
function track(proc: ChildProcess, signal: NodeJS.Signals): ChildProcess {
  live.set(proc, signal);
  proc.once("exit", () => live.delete(proc));
  return proc;
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((r) => proc.once("exit", () => r()));
}

async function stopProcess(proc: ChildProcess, graceful: boolean): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill(graceful ? "SIGTERM" : "SIGKILL");
  const done = await Promise.race([exited(proc).then(() => true), sleep(graceful ? 15000 : 3000).then(() => false)]);
  if (!done) {
    proc.kill("SIGKILL");
    await exited(proc);
  }
}

/** Resolves with the port of the first `{"msg":"listening","port":N}` line on the process's stdout. */
function listeningPort(proc: ChildProcess, what: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let buf = "";
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const j = JSON.parse(line) as { msg?: string; port?: number };
          if (j.msg === "listening" && j.port) {
            proc.stdout!.off("data", onData);
            proc.stdout!.resume();
            resolve(j.port);
            return;
          }
        } catch {
          /* not a JSON line */
        }
      }
    };
    proc.stdout!.on("data", onData);
    proc.once("exit", (code) => reject(new Error(`${what} exited (code ${code}) before listening`)));
  });
}

/** Node flags and a GC hook for a server whose garbage the benchmark may collect through the inspector (loopback only). */
async function inspectable(enabled: boolean | undefined): Promise<{ flags: string[]; gc?: () => Promise<void> }> {
  if (!enabled) return { flags: [] };
  const port = await freePort();
  return { flags: [`--inspect=${HOST}:${port}`], gc: () => inspectorGc(port) };
}

async function inspectorGc(port: number): Promise<void> {
  const list = (await (await fetch(`http://${HOST}:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  const ws = new WebSocket(list[0]!.webSocketDebuggerUrl);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once("error", reject);
      ws.once("open", () => ws.send(JSON.stringify({ id: 1, method: "HeapProfiler.collectGarbage" })));
      ws.on("message", (data: Buffer) => {
        if ((JSON.parse(data.toString()) as { id?: number }).id === 1) resolve();
      });
    });
  } finally {
    ws.close();
  }
}

/** Forwards a server's stderr, minus the inspector's own chatter. */
function forwardStderr(proc: ChildProcess): void {
  let buf = "";
  proc.stderr?.on("data", (chunk: Buffer) => {
    buf += chunk.toString();
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl + 1);
      buf = buf.slice(nl + 1);
      if (!/^(Debugger listening on|Debugger attached|Debugger ending on|For help, see|Waiting for the debugger)/.test(line)) process.stderr.write(line);
    }
  });
}

export interface HeartlineOptions {
  /** Extra `heartline serve` flags, e.g. `["--heartbeat-interval", "5"]`. */
  args?: string[];
  /** Write a V8 CPU profile of the server into this folder (written at exit). */
  cpuProfDir?: string;
  /** Open the inspector on a loopback port so that `collectGarbage()` works. */
  inspect?: boolean;
  /** Serve HTTPS with HTTP/2 (a self-signed certificate made once with openssl). */
  tls?: boolean;
}

/** A self-signed certificate for 127.0.0.1 in the build folder, made once with Debian's openssl. */
function benchCertificate(): string[] {
  const dir = join(BUILD_DIR, "tls");
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  if (!existsSync(cert) || !existsSync(key)) {
    mkdirSync(dir, { recursive: true });
    const r = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
      "-addext", "subjectAltName=IP:127.0.0.1", "-days", "30", "-keyout", key, "-out", cert], { stdio: "ignore" });
    if (r.status !== 0) throw new Error("openssl could not make the bench certificate (apt-get install openssl)");
  }
  return ["--tls-cert", cert, "--tls-key", key];
}

/** Starts `node dist/cli.js serve` on a loopback port. Run `npm run build` first. */
export async function startHeartline(opts: HeartlineOptions = {}): Promise<ServerHandle> {
  const cli = join(ROOT, "dist/cli.js");
  if (!existsSync(cli)) throw new Error("dist/cli.js is missing: run npm run build first");
  const nodeArgs = [...(opts.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", opts.cpuProfDir] : []), ...(process.env.BENCH_HEARTLINE_NODE_FLAGS ?? "").split(" ").filter(Boolean)];
  const inspector = await inspectable(opts.inspect);
  const [cmd, args] = pinned(0, process.execPath, [
    ...nodeArgs,
    ...inspector.flags,
    cli,
    "serve",
    "--port",
    "0",
    "--host",
    HOST,
    "--max-connections",
    String(NOFILE),
    // The load generators open thousands of connections at once from a few loopback addresses:
    // until each is admitted as a subscriber it counts toward the pending limits.
    "--max-pending-connections-per-ip",
    "0",
    "--max-pending-connections",
    "0",
    "--log-level",
    "warn",
    ...(opts.tls ? benchCertificate() : []),
    ...(opts.args ?? []),
  ]);
  const proc = track(spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] }), "SIGKILL");
  forwardStderr(proc);
  const port = await listeningPort(proc, "heartline");
  return {
    name: "heartline",
    endpoint: { server: "heartline", host: HOST, port, tls: opts.tls },
    pids: () => [proc.pid!],
    stop: (graceful = false) => stopProcess(proc, graceful),
    ...(inspector.gc ? { collectGarbage: inspector.gc } : {}),
  };
}

/** Compiles peers/socketio-server.ts to plain JS under bench/results/.build (module resolution still finds node_modules). */
async function buildSocketIoPeer(): Promise<string> {
  const { transform } = await import("esbuild");
  const src = join(ROOT, "bench/peers/socketio-server.ts");
  const out = join(BUILD_DIR, "socketio-server.mjs");
  const { code } = await transform(readFileSync(src, "utf8"), { loader: "ts", format: "esm", target: "node20", sourcefile: src });
  mkdirSync(BUILD_DIR, { recursive: true });
  writeFileSync(out, code);
  return out;
}

let socketIoScript: Promise<string> | undefined;

/** Starts the Socket.IO 4 peer on a loopback port. */
export async function startSocketIo(opts: { inspect?: boolean } = {}): Promise<ServerHandle> {
  socketIoScript ??= buildSocketIoPeer();
  const inspector = await inspectable(opts.inspect);
  const [cmd, args] = pinned(0, process.execPath, [...inspector.flags, await socketIoScript, "--port", "0", "--host", HOST]);
  const proc = track(spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] }), "SIGKILL");
  forwardStderr(proc);
  const port = await listeningPort(proc, "socket.io peer");
  return {
    name: "socketio",
    endpoint: { server: "socketio", host: HOST, port },
    pids: () => [proc.pid!],
    stop: (graceful = false) => stopProcess(proc, graceful),
    ...(inspector.gc ? { collectGarbage: inspector.gc } : {}),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, HOST, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ host: HOST, port });
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

/** Starts nginx + nchan from peers/nchan.conf with its own prefix folder; never touches the system service. */
export async function startNchan(): Promise<ServerHandle> {
  const missing = nchanMissing();
  if (missing) throw new Error(`nchan is not available: ${missing}`);
  const prefix = mkdtempSync(join(tmpdir(), "heartline-bench-nchan-"));
  const port = await freePort();
  const conf = readFileSync(join(ROOT, "bench/peers/nchan.conf"), "utf8")
    // As root the worker would switch to `nobody`, who cannot enter the private prefix folder.
    .replaceAll("{{USER_LINE}}", process.getuid?.() === 0 ? "user root root;" : "")
    .replaceAll("{{PREFIX}}", prefix)
    .replaceAll("{{MODULE}}", NCHAN_MODULE)
    .replaceAll("{{NGINX_CONNECTIONS}}", String(NGINX_CONNECTIONS))
    .replaceAll("{{PORT}}", String(port));
  writeFileSync(join(prefix, "nginx.conf"), conf);
  const [cmd, args] = pinned(0, NGINX, ["-p", prefix, "-c", join(prefix, "nginx.conf"), "-e", join(prefix, "error.log")]);
  const proc = track(spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit"] }), "SIGTERM");
  const deadline = Date.now() + 10000;
  while (!(await accepting(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      let log = "";
      try {
        log = readFileSync(join(prefix, "error.log"), "utf8").slice(-2000);
      } catch {
        /* no log */
      }
      await stopProcess(proc, false);
      rmSync(prefix, { recursive: true, force: true });
      throw new Error(`nginx did not start: ${log}`);
    }
    await sleep(50);
  }
  const master = proc.pid!;
  return {
    name: "nchan",
    endpoint: { server: "nchan", host: HOST, port },
    pids: () => [master, ...childrenOf(master)],
    // Always SIGTERM (nginx's fast shutdown): a killed master would leave its workers behind.
    stop: async () => {
      const workers = childrenOf(master);
      proc.kill("SIGTERM");
      const done = await Promise.race([exited(proc).then(() => true), sleep(5000).then(() => false)]);
      if (!done) {
        proc.kill("SIGKILL");
        for (const w of workers) {
          try {
            process.kill(w, "SIGKILL");
          } catch {
            /* already gone */
          }
        }
      }
      await exited(proc);
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}

/** Starts one server; `inspect` lets Node servers be garbage-collected on demand (nginx has nothing to collect). */
export function startServer(name: ServerName, opts: { inspect?: boolean; tls?: boolean } = {}): Promise<ServerHandle> {
  if (name === "heartline") return startHeartline(opts);
  if (name === "socketio") return startSocketIo(opts);
  return startNchan();
}
