/**
 * `heartline doctor <url>`: measures the path between where it runs and a
 * Heartline server (proxies, load balancers, NATs) and says what on it breaks
 * real-time connections: (a) a WebSocket upgrade to `/ws` refused, and by
 * whom; (b) event streams buffered; (c) long polls cut before their hold;
 * (d) silent connections cut after some idle time, and the heartbeat that
 * would keep them alive. Prints a verdict per check and the fix for nginx,
 * HAProxy and common load balancers; `--json` for machines. Exit code 0 when
 * every check passes, 1 when one finds a defect or the server is not
 * reached, 2 on a usage error.
 */
import { probeInfo, probePoll, probeSilentHttp, probeSilentWs, probeSse, probeWebSocket } from "./doctor-probes.js";
import { judgeIdle, judgePoll, judgeSse, judgeWebSocket, pathNames, refusedDiag, type Check, type ServerSettings } from "./doctor-verdict.js";

export interface DoctorOptions {
  /** Longest silence measured, in seconds (also the longest poll hold). */
  maxIdle: string | number;
  json?: boolean;
  /** A subscriber token for `/ws` and `/poll`, when the server requires one. */
  token?: string;
}

export interface DoctorReport {
  url: string;
  ok: boolean;
  server: ServerSettings;
  /** Proxies named by the answers' headers. */
  path: string[];
  checks: Check[];
  advice: { heartbeatInterval?: number; pollTimeout?: number };
}

/** SSE probe: events and their spacing. */
const SSE_COUNT = 5;
const SSE_INTERVAL = 500;
const DEFAULT_POLL_TIMEOUT = 25;

export class UsageError extends Error {}

/** Checks the arguments; throws a UsageError saying what is wrong. */
export function parseDoctorArgs(url: string, opts: DoctorOptions): { base: URL; maxIdle: number } {
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw new UsageError(`not a URL: ${JSON.stringify(url)} (expected http://host:port or https://host)`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") throw new UsageError(`the URL must be http:// or https://, got ${base.protocol}`);
  base.search = "";
  base.hash = "";
  const maxIdle = Number(opts.maxIdle);
  if (typeof opts.maxIdle === "string" && opts.maxIdle.trim() === "") throw new UsageError("--max-idle must be a number of seconds from 1 to 120");
  if (!Number.isFinite(maxIdle) || maxIdle < 1 || maxIdle > 120) throw new UsageError(`--max-idle must be a number of seconds from 1 to 120, got ${JSON.stringify(opts.maxIdle)}`);
  return { base, maxIdle };
}

/** Runs every check against `base`; undefined with `unreachable` set when the server is not reached at all. */
export async function diagnose(base: URL, maxIdle: number, token?: string): Promise<DoctorReport | { unreachable: string }> {
  const info = await probeInfo(base, 15_000);
  if (!info.reached) return { unreachable: info.error };
  const served = info.answer.status === 200 && info.answer.headers["x-heartline-diag"] !== undefined;
  const server: ServerSettings = {};
  if (served) {
    const hb = Number(info.answer.headers["x-heartline-heartbeat-interval"]);
    const pt = Number(info.answer.headers["x-heartline-poll-timeout"]);
    if (Number.isFinite(hb)) server.heartbeatInterval = hb;
    if (Number.isFinite(pt)) server.pollTimeout = pt;
  }
  const pollHold = Math.min(maxIdle, server.pollTimeout ?? DEFAULT_POLL_TIMEOUT);
  const [ws, sse, poll, http, wsHold] = await Promise.all([
    probeWebSocket(base, token, 15_000),
    served ? probeSse(base, SSE_COUNT, SSE_INTERVAL, 30_000) : undefined,
    probePoll(base, pollHold, token),
    served ? probeSilentHttp(base, maxIdle) : undefined,
    served ? probeSilentWs(base, maxIdle) : undefined,
  ]);
  const checks: Check[] = [judgeWebSocket(ws)];
  checks.push(sse ? judgeSse(sse, SSE_COUNT, SSE_INTERVAL) : refusedDiag("sse", info.answer));
  const advice: DoctorReport["advice"] = {};
  const idle = http && wsHold ? judgeIdle(http, wsHold, maxIdle, server) : undefined;
  if (idle?.keepAlive !== undefined) {
    advice.heartbeatInterval = idle.keepAlive;
    advice.pollTimeout = idle.keepAlive;
  }
  checks.push(judgePoll(poll, pollHold, idle?.keepAlive));
  checks.push(idle?.check ?? refusedDiag("idle", info.answer));
  const path = pathNames(info.answer.headers);
  return { url: base.href, ok: checks.every((c) => c.status === "pass" || c.status === "warn"), server, path, checks, advice };
}

const MARK: Record<Check["status"], string> = { pass: "[pass]", warn: "[warn]", fail: "[FAIL]", skip: "[skip]" };

/** The human-readable report. */
export function formatReport(r: DoctorReport): string {
  const lines: string[] = [];
  const s = r.server;
  const settings = s.heartbeatInterval === undefined ? "settings unknown" : `--heartbeat-interval ${s.heartbeatInterval} s, --poll-timeout ${s.pollTimeout} s`;
  lines.push(`heartline doctor ${r.url}`);
  lines.push(`server: ${settings}; path: ${r.path.length > 0 ? r.path.join(", ") : "no proxy named by the answers' headers"}`);
  lines.push("");
  for (const c of r.checks) {
    lines.push(`${MARK[c.status]} ${c.name.padEnd(10)} ${c.summary}`);
    if (c.note !== undefined) lines.push(`       ${c.note}`);
    for (const f of c.fixes) lines.push(`       fix (${f.for}): ${f.fix}`);
  }
  lines.push("");
  const bad = r.checks.filter((c) => c.status === "fail" || c.status === "skip");
  if (r.advice.heartbeatInterval !== undefined) lines.push(`advice: --heartbeat-interval ${r.advice.heartbeatInterval} and --poll-timeout ${r.advice.pollTimeout} keep this path alive, or raise the proxy's timeout`);
  lines.push(bad.length === 0 ? "verdict: the path carries WebSocket, SSE and long polling" : `verdict: ${bad.length} problem${bad.length > 1 ? "s" : ""} found (${bad.map((c) => c.name).join(", ")})`);
  return lines.join("\n") + "\n";
}

/** The command: prints the report; the exit code. */
export async function doctorCommand(url: string, opts: DoctorOptions): Promise<number> {
  let args: { base: URL; maxIdle: number };
  try {
    args = parseDoctorArgs(url, opts);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`heartline doctor: ${err.message}\n`);
    return 2;
  }
  const r = await diagnose(args.base, args.maxIdle, opts.token);
  if ("unreachable" in r) {
    if (opts.json) process.stdout.write(JSON.stringify({ url: args.base.href, ok: false, unreachable: r.unreachable }) + "\n");
    process.stderr.write(`heartline doctor: cannot reach ${args.base.href}: ${r.unreachable}\n`);
    return 1;
  }
  process.stdout.write(opts.json ? JSON.stringify(r, null, 2) + "\n" : formatReport(r));
  return r.ok ? 0 : 1;
}
