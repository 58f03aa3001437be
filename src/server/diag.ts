/**
 * `GET /diag`: what `heartline doctor` measures the path with (a proxy, a
 * load balancer, a NAT between clients and Heartline). Two modes:
 *
 * - `mode=silent&hold=<s>` (0–120): an HTTP stream that writes one line at
 *   once, then nothing at all (no heartbeat) until the hold ends, then a last
 *   line. As a WebSocket upgrade, the same with one text frame at each end.
 *   Whatever cuts it before the end is the path's idle timeout.
 * - `mode=events&count=<n>&interval=<ms>`: an event stream with the headers
 *   of `/sse` that writes `count` small events `interval` ms apart; a path
 *   that buffers delivers them together at the end.
 *
 * Every answer reports `--heartbeat-interval` and `--poll-timeout` in
 * headers. A hold counts as a connection (`--max-connections`,
 * `--max-connections-per-ip`: as `sse`, or `ws` for the upgrade) and as one
 * of at most {@link PER_IP} per address and {@link TOTAL} per process. No
 * timer per hold: the server's ticker calls {@link Diagnostics.sweep}.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { HeartlineError, httpError } from "../errors.js";
import { clientAddress } from "../http/client-address.js";
import { carrierOf, isH2 } from "../http/h2.js";
import { socketAdmitted, socketIdle } from "../http/socket-limits.js";
import type { ServerContext } from "../transports/connection.js";
import { openSseResponse } from "../transports/sse.js";
import { sseEvent } from "../wire.js";
import type { Admission } from "./admission.js";

/** Diagnostic holds one address may have open at once. */
export const PER_IP = 4;
/** Diagnostic holds per process. */
export const TOTAL = 32;
/** The longest `hold=`, in seconds. */
export const MAX_HOLD = 120;
export const MAX_COUNT = 20;
export const MIN_INTERVAL = 100;
export const MAX_INTERVAL = 5000;

const DECIMAL = /^\d{1,6}(\.\d{1,3})?$/;
const INTEGER = /^\d{1,6}$/;

/** One diagnostic hold: a silent stream or WebSocket, or an events stream. */
class Hold {
  done = false;
  sent = 0;
  nextAt: number;

  constructor(
    readonly ip: string,
    readonly kind: "sse" | "ws",
    /** When the hold ends (ms, the server's clock); for events, when the last is due. */
    readonly endAt: number,
    readonly count: number,
    readonly interval: number,
    readonly write: (text: string) => void,
    /** Writes the last line (or frame) and ends. */
    readonly finish: () => void,
  ) {
    this.nextAt = count > 0 ? endAt - (count - 1) * interval : 0;
  }
}

export class Diagnostics {
  private readonly holds = new Set<Hold>();
  private readonly perIp = new Map<string, number>();
  private wss: WebSocketServer | undefined;
  /** WebSocket handshakes admitted and not yet complete (they hold a slot). */
  private pending = 0;

  constructor(private readonly ctx: ServerContext) {}

  /** Open holds. */
  get open(): number {
    return this.holds.size;
  }

  /** `GET /diag` through node:http's response (or node:http2's compatibility response). */
  serve(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): void {
    const q = this.query(req);
    const mode = q.get("mode");
    if (mode !== "silent" && mode !== "events") throw httpError("bad_request", "mode must be silent or events");
    if (req.method === "HEAD") {
      // Nothing to hold for a HEAD: the headers, at once.
      res.writeHead(200, this.headers(cors, mode));
      res.end();
      return;
    }
    if (mode === "silent") {
      const hold = holdParam(q.get("hold"));
      const ip = this.admit(req, "sse", carrierOf(req));
      this.silentHttp(ip, req, res, cors, hold);
    } else if (mode === "events") {
      const count = intParam(q.get("count"), "count", 5, 1, MAX_COUNT);
      const interval = intParam(q.get("interval"), "interval", 500, MIN_INTERVAL, MAX_INTERVAL);
      const ip = this.admit(req, "sse", carrierOf(req));
      this.events(ip, req, res, cors, count, interval);
    }
  }

  /** `GET /diag?mode=silent` as a WebSocket upgrade. */
  upgrade(admission: Admission, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const q = this.query(req);
    admission.assertOrigin(req);
    if (q.get("mode") !== "silent") throw httpError("bad_request", "a WebSocket on /diag takes mode=silent");
    const hold = holdParam(q.get("hold"));
    const ip = this.admit(req, "ws", socket);
    this.wss ??= new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false, maxPayload: 1024 });
    let upgraded = false;
    // A handshake that fails (the socket closes first) gives its slots back here; an upgraded one when its WebSocket closes.
    socket.once("close", () => upgraded || this.release(ip, "ws"));
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded = true;
      this.silentWs(ip, ws, hold);
    });
  }

  /** One step of every hold, called by the server's ticker: events due, holds over. While draining, every hold ends. */
  sweep(now: number): void {
    for (const h of this.holds) {
      if (h.done) continue;
      if (this.ctx.draining) {
        h.finish();
        continue;
      }
      while (h.sent < h.count && now >= h.nextAt) {
        h.sent++;
        h.nextAt += h.interval;
        h.write(sseEvent("diag", undefined, JSON.stringify({ n: h.sent, at: Date.now() })));
      }
      if (h.count > 0 ? h.sent >= h.count : now >= h.endAt) h.finish();
    }
  }

  private query(req: IncomingMessage): URLSearchParams {
    if (!this.ctx.config.pathDiagnostics) throw httpError("not_found", "path diagnostics are off on this server (--path-diagnostics false)");
    if (this.ctx.draining) throw httpError("shutting_down", "the server is draining", { "Retry-After": "1" });
    try {
      return new URL(req.url ?? "/", "http://heartline.invalid").searchParams;
    } catch {
      throw httpError("bad_request", "the request URL is malformed");
    }
  }

  /** Takes a diagnostic slot and a connection slot in one step (or throws the 429 / 503 refusing it); the client address. */
  private admit(req: IncomingMessage, kind: "sse" | "ws", socket: Duplex): string {
    const ip = clientAddress(req, this.ctx.config.trustProxy);
    const n = this.perIp.get(ip) ?? 0;
    if (n >= PER_IP || this.holds.size + this.pending >= TOTAL) {
      const which = n >= PER_IP ? `${PER_IP} per address` : `${TOTAL} per server`;
      throw new HeartlineError("too_many_diagnostics", `at most ${which} diagnostic holds at once; retry when one ends`, { headers: { "Retry-After": "5" } });
    }
    this.ctx.registry.admit(kind, ip);
    this.perIp.set(ip, n + 1);
    if (kind === "ws") this.pending++;
    socketAdmitted(socket);
    return ip;
  }

  private release(ip: string, kind: "sse" | "ws", h?: Hold): void {
    if (h !== undefined) {
      if (h.done) return;
      h.done = true;
      this.holds.delete(h);
    }
    if (kind === "ws" && h === undefined) this.pending--;
    this.ctx.registry.release(kind, ip);
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, n);
  }

  private headers(cors: Record<string, string>, mode: string): Record<string, string> {
    const c = this.ctx.config;
    return { ...cors, "X-Heartline-Diag": mode, "X-Heartline-Heartbeat-Interval": String(c.heartbeatInterval), "X-Heartline-Poll-Timeout": String(c.pollTimeout) };
  }

  private silentHttp(ip: string, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>, hold: number): void {
    res.writeHead(200, {
      ...this.headers(cors, "silent"),
      "Content-Type": "text/plain; charset=utf-8",
      "Cache-Control": "no-cache, no-transform",
      "X-Accel-Buffering": "no",
    });
    if (!isH2(res)) res.socket?.setNoDelay(true);
    res.write(`open hold=${hold}\n`);
    const started = this.ctx.clock.now();
    const end = () => res.writableEnded || res.end(`end held=${((this.ctx.clock.now() - started) / 1000).toFixed(3)}\n`);
    this.track(res, carrierOf(req), new Hold(ip, "sse", started + hold * 1000, 0, 0, noop, end));
  }

  private events(ip: string, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>, count: number, interval: number): void {
    // The response, or on HTTP/2 the request's stream (see openSseResponse).
    const out = openSseResponse(res, this.headers(cors, "events")) as unknown as Output;
    out.write(": open\n\n");
    const write = (text: string) => out.writableEnded || out.write(text);
    const h: Hold = new Hold(ip, "sse", this.ctx.clock.now() + count * interval, count, interval, write, () => {
      if (!out.writableEnded) out.end(sseEvent("end", undefined, JSON.stringify({ sent: h.sent })));
    });
    this.track(out, carrierOf(req), h);
  }

  /** Holds a response's slots until it finishes or closes. */
  private track(out: Output, carrier: Duplex, h: Hold): void {
    this.holds.add(h);
    out.once("close", () => this.release(h.ip, "sse", h));
    out.once("finish", () => {
      this.release(h.ip, "sse", h);
      // Kept alive (or the HTTP/2 session going on), the connection is an idle one again.
      if (!carrier.destroyed) socketIdle(carrier);
    });
  }

  private silentWs(ip: string, ws: WebSocket, hold: number): void {
    this.pending--;
    ws.on("error", noop);
    ws.send(JSON.stringify({ type: "diag", state: "open", hold }));
    const h = new Hold(ip, "ws", this.ctx.clock.now() + hold * 1000, 0, 0, noop, () => {
      if (ws.readyState !== ws.OPEN) return;
      ws.send(JSON.stringify({ type: "diag", state: "end" }));
      ws.close(1000);
    });
    this.holds.add(h);
    ws.once("close", () => this.release(ip, "ws", h));
  }
}

/** What a hold writes to: node:http's response, or an HTTP/2 stream. */
type Output = Pick<ServerResponse, "write" | "end" | "writableEnded"> & { once(event: "close" | "finish", fn: () => void): unknown };

function noop(): void {}

/** `hold=`: seconds from 0 to MAX_HOLD, plain decimal notation. */
function holdParam(v: string | null): number {
  const n = v === null ? NaN : Number(v);
  if (v === null || !DECIMAL.test(v) || n > MAX_HOLD) throw httpError("bad_request", `hold must be a number of seconds from 0 to ${MAX_HOLD}`);
  return n;
}

/** An integer parameter within [min, max]; `def` when absent. */
function intParam(v: string | null, name: string, def: number, min: number, max: number): number {
  if (v === null) return def;
  const n = Number(v);
  if (!INTEGER.test(v) || n < min || n > max) throw httpError("bad_request", `${name} must be an integer from ${min} to ${max}`);
  return n;
}
