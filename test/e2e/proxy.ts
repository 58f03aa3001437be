/**
 * A small HTTP reverse proxy for browser tests: it forwards plain requests
 * (SSE streams and long polls included) to a Heartline server and can refuse
 * or drop WebSocket upgrades, cut every open socket at once, and serve a
 * blank page on its own origin for pages that load the client from there.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import type { Duplex } from "node:stream";

/** What the proxy does with a WebSocket upgrade. */
export type UpgradeMode = "pass" | "refuse" | "drop";

export interface TestProxy {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** `pass` forwards upgrades, `refuse` answers 403, `drop` closes the socket without an answer. */
  upgrade: UpgradeMode;
  /** While true, every new connection is closed at once (an unreachable network). */
  offline: boolean;
  /** Request paths (without the query) whose requests are dropped without an answer, e.g. `/sse` to force polling. */
  readonly blocked: Set<string>;
  /** Counts of what went through. */
  readonly stats: { requests: number; upgrades: number; upgradesRefused: number; upgradesDropped: number; cuts: number; refusedOffline: number };
  /** Destroys every open socket on both sides; returns how many client sockets were cut. */
  cut(): number;
  close(): Promise<void>;
}

/** Served by the proxy itself on `GET /__blank`: an empty page on the proxy's origin. */
export const BLANK_PATH = "/__blank";
const BLANK_HTML =
  '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Heartline test page</title></head><body></body></html>';

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"]);

function endToEnd(headers: IncomingMessage["headers"]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

export async function startProxy(target: { host?: string; port: number }, options: { upgrade?: UpgradeMode } = {}): Promise<TestProxy> {
  const host = target.host ?? "127.0.0.1";
  const clientSockets = new Set<Socket | Duplex>();
  const upstreamSockets = new Set<Socket>();
  const stats = { requests: 0, upgrades: 0, upgradesRefused: 0, upgradesDropped: 0, cuts: 0, refusedOffline: 0 };

  const track = <T extends Socket | Duplex>(set: Set<T>, s: T): T => {
    set.add(s);
    s.once("close", () => set.delete(s));
    s.on("error", () => {});
    return s;
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    stats.requests++;
    if (proxy.blocked.has((req.url ?? "").split("?")[0]!)) {
      req.socket.destroy();
      return;
    }
    if (req.url === BLANK_PATH) {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" });
      res.end(BLANK_HTML);
      return;
    }
    const headers = endToEnd(req.headers);
    const upstream = request({ host, port: target.port, method: req.method, path: req.url, headers, agent: false }, (up) => {
      res.writeHead(up.statusCode ?? 502, endToEnd(up.headers));
      res.flushHeaders();
      up.pipe(res);
      up.on("error", () => res.destroy());
    });
    upstream.on("socket", (s) => track(upstreamSockets, s));
    upstream.on("error", () => {
      if (!res.headersSent) {
        res.writeHead(502, { "Content-Type": "text/plain" });
        res.end("upstream unreachable");
      } else res.destroy();
    });
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  });
  server.on("connection", (s: Socket) => {
    if (proxy.offline) {
      stats.refusedOffline++;
      s.destroy();
      return;
    }
    track(clientSockets, s);
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    stats.upgrades++;
    track(clientSockets, socket);
    if (proxy.upgrade === "refuse") {
      stats.upgradesRefused++;
      const body = "WebSocket upgrades are not allowed here\n";
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    if (proxy.upgrade === "drop") {
      stats.upgradesDropped++;
      socket.destroy();
      return;
    }
    const up = track(upstreamSockets, connect(target.port, host));
    up.once("connect", () => {
      let head0 = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) head0 += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(head0 + "\r\n");
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    const closeBoth = () => {
      up.destroy();
      socket.destroy();
    };
    up.once("close", closeBoth);
    socket.once("close", closeBoth);
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  const proxy: TestProxy = {
    url: `http://127.0.0.1:${port}`,
    port,
    upgrade: options.upgrade ?? "pass",
    offline: false,
    blocked: new Set(),
    stats,
    cut() {
      stats.cuts++;
      const n = clientSockets.size;
      for (const s of [...clientSockets]) s.destroy();
      for (const s of [...upstreamSockets]) s.destroy();
      return n;
    },
    close() {
      proxy.cut();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
