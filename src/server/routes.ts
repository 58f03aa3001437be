/**
 * The route table: every path Heartline serves, declared once with the
 * method it accepts, the transport it subscribes through, whether it is a
 * page (served only with `pages`) and its handlers. The request dispatch
 * (`FrontDoor.route`), `FrontDoor.handles` (which requests an attached
 * server passes to Heartline) and the upgrade listener all read it, so the
 * 405 answer, its `Allow` header and the 404 come from here too.
 */
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { fileURLToPath } from "node:url";
import type { TransportName } from "../config.js";
import { httpError, type HeartlineError } from "../errors.js";
import { sendJson } from "../http/respond.js";
import { handleBroadcast } from "../http/broadcast.js";
import { handleRpc } from "../http/rpc.js";
import type { Door } from "./door.js";
import { presenceRoute } from "./presence-api.js";
import { pollRequest, pollSocket, sseRequest, sseSocket, upgradeWs, wsWithoutUpgrade } from "./subscribe.js";

/** Serves a request through node:http's response; a throw is answered as a SPEC error. */
export type Handler = (d: Door, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>, path: string) => Promise<void> | void;

export interface Route {
  /** The path exactly as routePath reads it, or with `prefix` the start of the paths served. */
  readonly path: string;
  readonly prefix?: true;
  /** The one method served (`GET` includes `HEAD`); others get 405 with `Allow`. None: the handler answers every method. */
  readonly method?: "GET" | "POST";
  /** The transport the route subscribes through; its admission checks `--transports`. */
  readonly transport?: TransportName;
  /** A page: served by `listen()` and `attach(server, { pages: true })` only. */
  readonly page?: true;
  readonly serve: Handler;
  /** A `GET` taken out of node:http (StreamRequest on servers made by `listen()`), served on the bare socket. */
  readonly socket?: (d: Door, req: IncomingMessage, socket: Socket, head: Buffer) => void;
  /** A WebSocket upgrade. */
  readonly upgrade?: (d: Door, req: IncomingMessage, socket: Duplex, head: Buffer) => Promise<void>;
}

const HTML = "text/html; charset=utf-8";

export const ROUTES: readonly Route[] = [
  { path: "/ws", transport: "ws", serve: wsWithoutUpgrade, upgrade: upgradeWs },
  { path: "/sse", method: "GET", transport: "sse", serve: sseRequest, socket: sseSocket },
  { path: "/poll", method: "GET", transport: "poll", serve: pollRequest, socket: pollSocket },
  { path: "/api/publish", method: "POST", serve: publish },
  { path: "/api/rpc", method: "POST", serve: rpc },
  { path: "/api/broadcast", method: "POST", serve: broadcastRoute },
  { path: "/api/disconnect", method: "POST", serve: (d, req, res, cors) => d.api.handleDisconnect(req, res, cors) },
  { path: "/api/unsubscribe", method: "POST", serve: (d, req, res, cors) => d.api.handleUnsubscribe(req, res, cors) },
  { path: "/api/revoke", method: "POST", serve: (d, req, res, cors) => d.api.handleRevoke(req, res, cors) },
  { path: "/api/channels", method: "GET", serve: (d, req, res, cors) => d.api.handleChannels(req, res, cors) },
  { path: "/api/channels/", prefix: true, method: "GET", serve: (d, req, res, cors, path) => d.api.handleChannel(req, res, cors, path) },
  // GET reads, DELETE removes: the handler answers 405 for other methods.
  { path: "/api/history/", prefix: true, serve: (d, req, res, cors, path) => d.api.handleHistory(req, res, cors, path) },
  { path: "/api/presence/", prefix: true, method: "GET", serve: presenceRoute },
  { path: "/api/diagnostics", method: "POST", serve: (d, req, res, cors) => d.reports.handle(req, res, cors) },
  // Path diagnostics for `heartline doctor` (diag.ts): an HTTP stream, an event stream, or a silent WebSocket.
  { path: "/diag", method: "GET", serve: (d, req, res, cors) => d.diag.serve(req, res, cors), upgrade: async (d, req, socket, head) => d.diag.upgrade(d.admission, req, socket, head) },
  { path: "/healthz", method: "GET", serve: health },
  { path: "/readyz", method: "GET", serve: ready },
  { path: "/metrics", method: "GET", serve: metrics },
  // The browser client, built by `npm run build`; served in attach mode too.
  { path: "/heartline.js", method: "GET", serve: servePage },
  { path: "/", method: "GET", page: true, serve: servePage },
  { path: "/demo", method: "GET", page: true, serve: servePage },
  { path: "/dashboard", method: "GET", page: true, serve: servePage },
];

const EXACT = new Map(ROUTES.filter((r) => r.prefix !== true).map((r) => [r.path, r]));
const PREFIXED = ROUTES.filter((r) => r.prefix === true);

/** The route serving `path` (a routePath), pages only when `pages`. */
export function findRoute(path: string, pages: boolean): Route | undefined {
  let r = EXACT.get(path);
  if (r === undefined) {
    for (const p of PREFIXED) {
      if (path.startsWith(p.path)) {
        r = p;
        break;
      }
    }
  }
  return r !== undefined && (pages || r.page !== true) ? r : undefined;
}

/** Refuses a method the route does not serve: 405 with `Allow`. */
export function assertMethod(route: Route, method: string): void {
  const m = route.method;
  if (m === undefined || method === m || (m === "GET" && method === "HEAD")) return;
  throw httpError("method_not_allowed", `this endpoint accepts ${m}`, { Allow: m });
}

export function noRoute(method: string, path: string): HeartlineError {
  return httpError("not_found", `no route for ${method} ${path.slice(0, 100)}`);
}

function health(_d: Door, _req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): void {
  sendJson(res, 200, { status: "ok" }, cors);
}

function ready(d: Door, _req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): void {
  if (d.ctx.draining) throw httpError("shutting_down", "the server is draining");
  if (!d.ctx.hub.brokerReady()) {
    const down = d.ctx.hub.brokerUnavailable();
    throw httpError("broker_unavailable", down.length > 0 ? `not reachable: ${down.join(", ")}` : "the broker is not reachable");
  }
  sendJson(res, 200, { status: "ready" }, cors);
}

async function metrics(d: Door, _req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
  const text = await d.metrics.metrics();
  res.writeHead(200, { ...cors, "Content-Type": d.metrics.contentType });
  res.end(text);
}

async function publish(d: Door, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
  if (d.ctx.draining) throw httpError("shutting_down", "the server is draining; publish to another node");
  // Counted until answered (or gone): drain lets it finish.
  d.publishRequests.add(req);
  res.once("close", () => d.publishRequests.delete(req));
  answerAfterDeliveries(d, res, await d.publisher.handleHttp(req), cors);
}

/**
 * The answer to a publish: after the writes to its subscribers when they go
 * at the end of this turn, so that the subscribers have the message first
 * (node:http's answer costs a cold server a few hundred microseconds); at
 * once when nothing is due this turn.
 */
function answerAfterDeliveries(d: Door, res: ServerResponse, body: unknown, cors: Record<string, string>): void {
  const send = (): void => {
    try {
      sendJson(res, 200, body, cors);
    } catch (err) {
      // Run from the flush, where a throw would escape every handler: end the request instead.
      d.ctx.log.error({ err }, "could not answer a publish");
      res.destroy();
    }
  };
  const afterPolls = (): void => {
    if (!d.poll.wakes.afterPass(send)) send();
  };
  if (!d.ctx.registry.batch.afterThisTurn(afterPolls)) afterPolls();
}

/** `POST /api/broadcast` (the server's credential), counted until answered like a publish. */
async function broadcastRoute(d: Door, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
  if (d.ctx.draining) throw httpError("shutting_down", "the server is draining; publish to another node");
  d.publishRequests.add(req);
  res.once("close", () => d.publishRequests.delete(req));
  answerAfterDeliveries(d, res, await handleBroadcast(d.publisher, req, d.ctx.config.maxMessageBytes), cors);
}

/** `POST /api/rpc`: answered like a publish, counted until answered so drain lets it finish. */
async function rpc(d: Door, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
  d.publishRequests.add(req);
  res.once("close", () => d.publishRequests.delete(req));
  const json = await handleRpc(d.ctx, req);
  const body = `{"result":${json}}`;
  res.writeHead(200, { ...cors, "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}

const WEB_DIR = fileURLToPath(new URL("../../web/", import.meta.url));
const PAGE_FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "demo.html", type: HTML },
  "/demo": { file: "demo.html", type: HTML },
  "/dashboard": { file: "dashboard.html", type: HTML },
  "/heartline.js": { file: "build/heartline.js", type: "text/javascript; charset=utf-8" },
};

async function servePage(_d: Door, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>, path: string): Promise<void> {
  const page = PAGE_FILES[path]!;
  let body: Buffer;
  try {
    body = await readFile(WEB_DIR + page.file);
  } catch {
    throw httpError("not_found", path === "/heartline.js" ? "/heartline.js is not built; run npm run build" : `${path} is not built`);
  }
  // cors: a module script from another origin is fetched in CORS mode.
  res.writeHead(200, { ...cors, "Content-Type": page.type, "Content-Length": body.length, "Cache-Control": "no-cache" });
  res.end(req.method === "HEAD" ? undefined : body);
}
