/**
 * The ways into a subscription, one handler each for the route table:
 * through node:http's response, on the bare socket of a request taken out of
 * node:http (StreamRequest), or as a WebSocket upgrade.
 */
import { ServerResponse, type IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { httpError } from "../errors.js";
import { assertChannelName } from "../hub/channel-name.js";
import { decodeCursorShared, type Position, type SharedCursor } from "../hub/cursor.js";
import { clientAddress } from "../http/client-address.js";
import { socketAdmitted, socketIdle } from "../http/socket-limits.js";
import { keepsAlive, watchPollSocket, type PollOutput } from "../transports/poll.js";
import { openSseResponse, openSseSocket, serveSse, type SseOutput } from "../transports/sse.js";
import type { Door } from "./door.js";

interface SubscribeParams {
  channels: string[];
  /** The cursor's positions (shared: read them, never change them). */
  cursor: ReadonlyMap<string, Position> | undefined;
  /** The same cursor with its text. */
  shared: SharedCursor | undefined;
}

/** `GET /sse` through node:http's response. */
export function sseRequest(d: Door, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
  return sse(d, req, parseUrl(req), () => openSseResponse(res, cors));
}

/** `GET /sse` taken out of node:http: the same checks as the request route, errors answered on the socket. */
export function sseSocket(d: Door, req: IncomingMessage, socket: Socket): void {
  socket.on("error", noop);
  const cors = d.corsHeaders(req);
  openSse(d, req, socket, cors).catch((err) => d.fail(socket, err, cors));
}

async function openSse(d: Door, req: IncomingMessage, socket: Socket, cors: Record<string, string>): Promise<void> {
  d.assertOrigin(req);
  return sse(d, req, parseUrl(req), () => openSseSocket(socket, cors));
}

/** `GET /sse`, whichever way it came: the checks, then the stream `open` starts. */
async function sse(d: Door, req: IncomingMessage, url: URL, open: () => SseOutput): Promise<void> {
  d.offered("sse");
  d.notDraining();
  const params = subscribeParams(d, url, true, headerCursor(req));
  const claims = await d.ctx.auth.authorizeSubscribe(req, url, params.channels);
  d.notDraining();
  const ip = clientAddress(req, d.ctx.config.trustProxy);
  d.ctx.registry.admit("sse", ip);
  socketAdmitted(req.socket);
  const out = open();
  // Through the response, a stream that ends leaves the connection open: idle again.
  if (out instanceof ServerResponse) out.once("finish", streamEnded);
  return serveSse(d.ctx, out, ip, params.channels, params.cursor, claims);
}

/** `GET /poll` through node:http's response. */
export function pollRequest(d: Door, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
  return longPoll(d, req, parseUrl(req), res, cors);
}

/**
 * `GET /poll` taken out of node:http: the same checks as the request route,
 * errors answered on the socket (which then closes); an answer leaves the
 * kept-alive connection to node:http again.
 */
export function pollSocket(d: Door, req: IncomingMessage, socket: Socket, head: Buffer): void {
  watchPollSocket(socket);
  const cors = d.corsHeaders(req);
  openPoll(d, req, socket, head, cors).catch((err) => d.fail(socket, err, cors));
}

async function openPoll(d: Door, req: IncomingMessage, socket: Socket, head: Buffer, cors: Record<string, string>): Promise<void> {
  const url = parseUrl(req);
  d.assertOrigin(req);
  return longPoll(d, req, url, socket, cors, keepsAlive(req), head);
}

/** `GET /poll`, whichever way it came: the checks, then the poll answered (or held) on `out`. */
async function longPoll(d: Door, req: IncomingMessage, url: URL, out: PollOutput, cors: Record<string, string>, keepAlive = false, head?: Buffer): Promise<void> {
  d.offered("poll");
  d.notDraining();
  const params = subscribeParams(d, url, true);
  const hold = pollHold(d, url);
  const auth = d.ctx.auth;
  const claims = auth.enabled ? await auth.authorizeSubscribe(req, url, params.channels) : undefined;
  // The client may have gone while its token was checked.
  if (out.destroyed) return;
  d.notDraining();
  return d.poll.serve(out, clientAddress(req, d.ctx.config.trustProxy), params.channels, params.shared, hold, cors, claims, keepAlive, head);
}

/** Checks an upgrade (origin, parameters, token, limits) before `ws` completes it; any throw is answered as HTTP. */
export async function upgradeWs(d: Door, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  d.offered("ws");
  d.notDraining();
  d.assertOrigin(req);
  const url = parseUrl(req);
  const params = subscribeParams(d, url, false);
  const claims = await d.ctx.auth.authorizeSubscribe(req, url, params.channels);
  if (socket.destroyed) return;
  d.notDraining();
  const ip = clientAddress(req, d.ctx.config.trustProxy);
  d.ctx.registry.admit("ws", ip);
  socketAdmitted(socket);
  d.ws.accept(req, socket, head, ip, { ...params, claims });
}

/** `/ws` as a plain request. */
export function wsWithoutUpgrade(d: Door): void {
  d.offered("ws");
  throw httpError("bad_request", "/ws expects a WebSocket upgrade");
}

/** `channel=` (repeated), `cursor=` (or `lastEventId=`, or the `Last-Event-ID` header) of a subscribe request. */
function subscribeParams(d: Door, url: URL, needChannel: boolean, headerCursorValue?: string): SubscribeParams {
  const channels = [...new Set(url.searchParams.getAll("channel"))];
  if (needChannel && channels.length === 0) throw httpError("bad_request", "give at least one channel= parameter");
  const max = d.ctx.config.maxChannelsPerConnection;
  if (channels.length > max) throw httpError("too_many_channels", `at most ${max} channels per connection (--max-channels-per-connection)`);
  for (const c of channels) assertChannelName(c);
  const raw = headerCursorValue ?? url.searchParams.get("lastEventId") ?? url.searchParams.get("cursor") ?? undefined;
  const shared = raw === undefined || raw === "" ? undefined : decodeCursorShared(raw);
  return { channels, cursor: shared?.positions, shared };
}

function pollHold(d: Door, url: URL): number {
  const t = url.searchParams.get("timeout");
  const max = d.ctx.config.pollTimeout;
  if (t === null) return max;
  const n = Number(t);
  if (t.trim() === "" || !Number.isFinite(n) || n < 0) throw httpError("bad_request", "timeout must be a number of seconds ≥ 0");
  return Math.min(n, max);
}

function noop(): void {}

function streamEnded(this: ServerResponse): void {
  socketIdle(this.req.socket);
}

function parseUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? "/", "http://heartline.invalid");
  } catch {
    throw httpError("bad_request", "the request URL is malformed");
  }
}

function headerCursor(req: IncomingMessage): string | undefined {
  const h = req.headers["last-event-id"];
  return typeof h === "string" && h !== "" ? h : undefined;
}
