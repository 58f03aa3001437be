/**
 * The judgement of `heartline doctor`: who gave an answer (Heartline, nginx,
 * HAProxy, a cloud load balancer), a verdict per check from what the probes
 * measured, the fix for each kind of proxy, and the heartbeat interval that
 * keeps the path alive.
 */
import type { Answer, HoldResult, PollResult, SseResult, WsResult } from "./doctor-probes.js";

export type Status = "pass" | "warn" | "fail" | "skip";
export type CheckName = "websocket" | "sse" | "long-poll" | "idle";

export interface Check {
  name: CheckName;
  status: Status;
  /** One sentence: what was seen. */
  summary: string;
  /** Who answered or cut, when known. */
  by?: string;
  /** What follows from it (the idle check: the heartbeat that keeps the path alive). */
  note?: string;
  /** Measurements behind the verdict. */
  details: Record<string, unknown>;
  /** The fixes, by kind of proxy: "nginx", "HAProxy", "AWS ALB", … */
  fixes: Array<{ for: string; fix: string }>;
}

/** What the server reports on `/diag` (its headers). */
export interface ServerSettings {
  heartbeatInterval?: number;
  pollTimeout?: number;
}

/** Who answered: Heartline (a JSON error with `error.code`), or the proxy its headers or error page name. */
export function whoAnswered(a: Answer): { by: string; heartline?: { code: string; message: string } } {
  try {
    const e = (JSON.parse(a.body) as { error?: { code?: unknown; message?: unknown } }).error;
    if (e && typeof e.code === "string") {
      const via = pathNames(a.headers);
      return { by: via.length > 0 ? `Heartline (through ${via.join(", ")})` : "Heartline", heartline: { code: e.code, message: String(e.message ?? "") } };
    }
  } catch {
    // Not JSON: a proxy's page.
  }
  const names = pathNames(a.headers);
  const body = a.body;
  if (/<center>nginx/i.test(body) && !names.includes("nginx")) names.push("nginx");
  if (/request forbidden by administrative rules|no server is available to handle this request|the server didn't respond in time|an invalid response was received from the server|the resource could not be found\.\n<\/body>/i.test(body)) names.push("HAProxy");
  if (/cloudflare/i.test(body) && !names.includes("Cloudflare")) names.push("Cloudflare");
  if (/awselb/i.test(body) && !names.some((n) => n.startsWith("AWS"))) names.push("AWS load balancer");
  if (names.length > 0) return { by: names.join(", ") };
  return { by: "an unknown hop (no Server or Via header, no known error page)" };
}

/** Proxies named by an answer's headers (Server, Via, and a few vendors' own). */
export function pathNames(h: Record<string, string>): string[] {
  const out: string[] = [];
  const server = h["server"] ?? "";
  const add = (n: string) => out.includes(n) || out.push(n);
  if (/nginx|openresty/i.test(server)) add("nginx");
  if (/awselb|elb/i.test(server)) add("AWS load balancer");
  if (/cloudflare/i.test(server) || h["cf-ray"] !== undefined) add("Cloudflare");
  if (/google frontend|gfe/i.test(server) || /google/i.test(h["via"] ?? "")) add("Google Cloud load balancer");
  if (/envoy/i.test(server)) add("Envoy");
  if (/caddy/i.test(server)) add("Caddy");
  if (/apache/i.test(server)) add("Apache");
  if (/azure|microsoft/i.test(server)) add("Azure Application Gateway");
  if (server !== "" && out.length === 0) add(`Server: ${server}`);
  if (h["via"] !== undefined && !/google/i.test(h["via"])) add(`Via: ${h["via"]}`);
  return out;
}

const WS_FIXES = [
  { for: "nginx", fix: 'in the location of /ws: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; (with the README\'s map $http_upgrade $connection_upgrade)' },
  { for: "HAProxy", fix: "mode http forwards upgrades by itself: remove any http-request deny (or option httpclose) matching Upgrade / websocket; set timeout tunnel" },
  { for: "AWS ALB", fix: "ALBs pass WebSocket upgrades; a Classic ELB in TCP/HTTP mode does not: use an ALB, or a TCP listener" },
  { for: "Cloudflare", fix: "enable WebSockets (Network settings) for the zone" },
  { for: "GCP load balancer", fix: "upgrades pass; the backend service timeout (default 30 s) also ends each WebSocket: raise it (gcloud compute backend-services update --timeout)" },
];

const SSE_FIXES = [
  { for: "nginx", fix: "in the locations of /sse and /diag: proxy_buffering off; proxy_cache off; proxy_http_version 1.1; no proxy_ignore_headers X-Accel-Buffering; no gzip for text/event-stream (gzip_types)" },
  { for: "HAProxy", fix: "HAProxy streams responses: remove any compression filter applied to text/event-stream (compression type)" },
  { for: "load balancers / CDNs", fix: "turn off response buffering and compression for text/event-stream (Cloudflare: a Cache Rule bypassing cache for /sse; no Rocket Loader / minification)" },
];

function pollFixes(keepAlive: number | undefined): Array<{ for: string; fix: string }> {
  const lower = keepAlive === undefined ? "" : `, or run Heartline with --poll-timeout ${keepAlive}`;
  return [
    { for: "nginx", fix: `a proxy_read_timeout in the location of /poll longer than --poll-timeout (40s for the default 25 s)${lower}` },
    { for: "HAProxy", fix: `timeout server and timeout client longer than --poll-timeout${lower}` },
    { for: "load balancers", fix: `an idle timeout above --poll-timeout (AWS ALB: idle_timeout.timeout_seconds, 60 s; Cloudflare: 100 s; GCP: the backend service timeout, 30 s)${lower}` },
  ];
}

function idleFixes(keepAlive: number | undefined): Array<{ for: string; fix: string }> {
  const hb = keepAlive === undefined ? "" : ` — or keep them and run Heartline with --heartbeat-interval ${keepAlive} and --poll-timeout ${keepAlive}`;
  return [
    { for: "nginx", fix: `proxy_read_timeout 60s; proxy_send_timeout 60s; in the locations of /ws, /sse and /diag (longer than --heartbeat-interval), and a proxy_read_timeout longer than --poll-timeout in /poll${hb}` },
    { for: "HAProxy", fix: `timeout server 60s and timeout client 60s (streams and polls), timeout tunnel 60s (WebSockets)${hb}` },
    { for: "AWS ALB", fix: "raise the idle timeout (attribute idle_timeout.timeout_seconds, 60 s by default) above --heartbeat-interval and --poll-timeout" },
    { for: "Cloudflare", fix: "its proxy read timeout is 100 s (Enterprise plans can change it): keep --heartbeat-interval and --poll-timeout well below it" },
    { for: "GCP load balancer", fix: "the backend service timeout (30 s by default) bounds a response and each WebSocket: raise it (gcloud compute backend-services update --timeout=3600)" },
  ];
}

/** Puts the fixes for the proxies seen on the path first. */
function seenFirst(fixes: Array<{ for: string; fix: string }>, by: string | undefined): Array<{ for: string; fix: string }> {
  if (by === undefined) return fixes;
  const key = (f: { for: string }) => (by.toLowerCase().includes(f.for.split(" ")[0]!.toLowerCase()) ? 0 : 1);
  return [...fixes].sort((a, b) => key(a) - key(b));
}

export function judgeWebSocket(r: WsResult): Check {
  if (r.open) return { name: "websocket", status: "pass", summary: "the upgrade to /ws passed (101 Switching Protocols)", details: {}, fixes: [] };
  if (r.answer === undefined) {
    return { name: "websocket", status: "fail", summary: `the upgrade to /ws failed: ${r.error ?? "no answer"}`, details: {}, fixes: WS_FIXES };
  }
  const who = whoAnswered(r.answer);
  const details = { status: r.answer.status, server: r.answer.headers["server"], via: r.answer.headers["via"], error: who.heartline };
  if (who.heartline?.code === "bad_request" && /expects a WebSocket upgrade/.test(who.heartline.message)) {
    const hop = pathNames(r.answer.headers);
    const by = hop.length > 0 ? hop.join(", ") : "a proxy on the path";
    return {
      name: "websocket",
      status: "fail",
      by,
      summary: `refused: the request reached Heartline without its Upgrade header (${r.answer.status} bad_request): ${by} does not forward upgrades`,
      details,
      fixes: seenFirst(WS_FIXES, by),
    };
  }
  if (who.heartline !== undefined) {
    return { name: "websocket", status: "fail", by: who.by, summary: `refused by ${who.by}: ${r.answer.status} ${who.heartline.code}: ${who.heartline.message}`, details, fixes: [] };
  }
  return { name: "websocket", status: "fail", by: who.by, summary: `refused by ${who.by}: HTTP ${r.answer.status} instead of 101`, details, fixes: seenFirst(WS_FIXES, who.by) };
}

export function judgeSse(r: SseResult, count: number, interval: number): Check {
  const name = "sse" as const;
  if (r.answer !== undefined) return refusedDiag(name, r.answer);
  const expected = (count - 1) * interval;
  const spread = r.events.length >= 2 ? r.events.at(-1)! - r.events[0]! : 0;
  const by = r.headers === undefined ? undefined : pathNames(r.headers).join(", ") || undefined;
  const details = { count, interval, headersAt: r.headersAt, openAt: r.openAt, events: r.events, spread, expectedSpread: expected };
  if (r.events.length < count || !r.ended) {
    return { name, status: "fail", by, summary: `the event stream was cut after ${r.events.length} of ${count} events${r.error ? ` (${r.error})` : ""}`, details, fixes: seenFirst(SSE_FIXES, by) };
  }
  if (count >= 2 && spread < expected / 2) {
    return {
      name,
      status: "fail",
      by,
      summary: `buffered: ${count} events written ${interval} ms apart arrived within ${spread} ms, ${r.events.at(-1)} ms after the request${by ? ` (through ${by})` : ""}`,
      details,
      fixes: seenFirst(SSE_FIXES, by),
    };
  }
  return { name, status: "pass", summary: `unbuffered: first byte after ${r.openAt ?? r.headersAt} ms, ${count} events written ${interval} ms apart arrived over ${spread} ms`, details, fixes: [] };
}

export function judgePoll(r: PollResult, hold: number, keepAlive?: number): Check {
  const name = "long-poll" as const;
  const details = { hold, elapsed: r.elapsed, status: r.answer?.status, error: r.error };
  const s = (ms: number) => (ms / 1000).toFixed(1);
  if (r.answer !== undefined) {
    const who = whoAnswered(r.answer);
    const when = r.elapsed === undefined ? "" : ` after ${s(r.elapsed)} s`;
    const what = who.heartline ? `${who.heartline.code}: ${who.heartline.message}` : `HTTP ${r.answer.status}`;
    const cut = r.elapsed !== undefined && who.heartline === undefined;
    const code = who.heartline?.code;
    if (code === "unauthorized" || code === "forbidden" || code === "token_expired") {
      return { name, status: "fail", by: who.by, summary: `the poll was refused by Heartline: ${code}: ${who.heartline!.message} (give a token that may read the channel heartline-doctor with --token)`, details, fixes: [] };
    }
    return { name, status: "fail", by: who.by, summary: `a poll held ${hold} s was answered ${what}${when} by ${who.by}`, details: { ...details, error: who.heartline }, fixes: cut ? seenFirst(pollFixes(keepAlive), who.by) : [] };
  }
  if (r.error !== undefined) {
    return { name, status: "fail", summary: `a poll held ${hold} s was cut${r.elapsed === undefined ? "" : ` after ${s(r.elapsed)} s`}: ${r.error}`, details, fixes: pollFixes(keepAlive) };
  }
  if (r.elapsed! < hold * 1000 - 1500 && r.messages === 0) {
    return { name, status: "warn", summary: `a poll held ${hold} s was answered empty after ${s(r.elapsed!)} s, earlier than its hold`, details, fixes: [] };
  }
  return { name, status: "pass", summary: `a poll held ${hold} s was answered 200 after ${s(r.elapsed!)} s`, details, fixes: [] };
}

/** The heartbeat interval that keeps a path cutting silent connections at `cutMs` alive: half the cut, in whole seconds, at least 1. */
export function keepAliveFor(cutMs: number): number {
  return Math.max(1, Math.floor((cutMs / 1000) * 0.5));
}

/** How long a hold lived, from its first line to the cut (ms); undefined when it lived to its end. */
function cutAfter(r: HoldResult): number | undefined {
  if (r.cutAt === undefined || r.answer !== undefined) return undefined;
  return r.cutAt - (r.openAt ?? 0);
}

export function judgeIdle(http: HoldResult, ws: HoldResult, maxIdle: number, server: ServerSettings): { check: Check; keepAlive?: number } {
  const name = "idle" as const;
  if (http.answer !== undefined && ws.answer !== undefined) return { check: refusedDiag(name, http.answer) };
  const s = (ms: number) => (ms / 1000).toFixed(1);
  const httpCut = cutAfter(http);
  const wsCut = cutAfter(ws);
  const describe = (r: HoldResult, cut: number | undefined) =>
    r.answer !== undefined ? `not measured (HTTP ${r.answer.status})` : cut === undefined ? `no cut in ${maxIdle} s` : `cut after ${s(cut)} s`;
  const both = `HTTP stream: ${describe(http, httpCut)}; WebSocket: ${describe(ws, wsCut)}`;
  const by = [...new Set([...pathNames(http.headers ?? {}), ...pathNames(ws.headers ?? {})])].join(", ") || undefined;
  const details = { maxIdle, httpCutMs: httpCut, wsCutMs: wsCut, http: { openAt: http.openAt, endAt: http.endAt, cutAt: http.cutAt, error: http.error }, ws: { openAt: ws.openAt, endAt: ws.endAt, cutAt: ws.cutAt, error: ws.error } };
  const cuts = [httpCut, wsCut].filter((c): c is number => c !== undefined);
  if (cuts.length === 0) {
    return { check: { name, status: "pass", summary: `silent connections lived ${maxIdle} s uncut (${both})`, details, fixes: [] } };
  }
  const cut = Math.min(...cuts);
  const keepAlive = keepAliveFor(cut);
  const hb = server.heartbeatInterval;
  const poll = server.pollTimeout;
  let advice = `A heartbeat every ${keepAlive} s or less keeps this path alive`;
  if (keepAlive < 5) advice += " (that often costs every connection traffic: better raise the proxy's timeout)";
  if (hb !== undefined) advice += `; Heartline sends one after ${hb} s of silence (--heartbeat-interval)`;
  if (poll !== undefined && poll * 1000 >= cut) advice += `; --poll-timeout ${poll} s holds polls longer than the cut`;
  const ok = hb !== undefined && hb <= keepAlive && (poll === undefined || poll * 1000 < cut);
  return {
    keepAlive,
    check: {
      name,
      status: ok ? "warn" : "fail",
      by,
      summary: `a silent connection is cut after ${s(cut)} s${by ? ` (path: ${by})` : ""}: ${both}`,
      note: advice,
      details: { ...details, keepAlive, heartbeatInterval: hb, pollTimeout: poll },
      fixes: ok ? [] : seenFirst(idleFixes(keepAlive), by),
    },
  };
}

/** `/diag` was not served: who refused it, and what to change. */
export function refusedDiag(name: CheckName, a: Answer): Check {
  const who = whoAnswered(a);
  const off = who.heartline?.code === "not_found" && /--path-diagnostics/.test(who.heartline.message);
  const summary = off
    ? "not measured: the server runs with --path-diagnostics false (GET /diag is off)"
    : `not measured: GET /diag was answered HTTP ${a.status} by ${who.by}${who.heartline ? ` (${who.heartline.code})` : ""}`;
  const fixes = off
    ? [{ for: "Heartline", fix: "run it with --path-diagnostics true (the default) while diagnosing" }]
    : [
        { for: "nginx", fix: "forward /diag like /sse (the README's location = /diag)" },
        { for: "HAProxy", fix: "add /diag to the public_route acl" },
      ];
  return { name, status: "skip", by: who.by, summary, details: { status: a.status, error: who.heartline }, fixes };
}
