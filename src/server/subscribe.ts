/**
 * The ways into a subscription, one handler each for the route table: admit
 * the request (admission.ts), then hand the subscribe request to its
 * transport. Through node:http's response, or on the bare socket of a
 * request taken out of node:http (StreamRequest), or as a WebSocket upgrade.
 */
import { ServerResponse, type IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { httpError } from "../errors.js";
import { socketIdle } from "../http/socket-limits.js";
import { keepsAlive, watchBareSocket } from "../transports/bare.js";
import { userOf } from "../transports/connection.js";
import type { Poller } from "../transports/poll.js";
import { openSseResponse, openSseSocket, serveSse } from "../transports/sse.js";
import type { SubscribeRequest } from "./admission.js";
import { offerPollRepeat } from "./poll-repeat.js";
import type { Door } from "./door.js";

/** `GET /sse` through node:http's response. */
export async function sseRequest(d: Door, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
  const s = (await d.admission.admit("sse", req, res))!;
  const out = openSseResponse(res, cors);
  // Through node:http's response, a stream that ends leaves the connection open: idle again.
  // (An HTTP/2 stream written directly gives its part back when it closes: see socket-limits.ts.)
  if (out === res) res.once("finish", streamEnded);
  return serveSse(d.ctx, out, s.ip, s.channels, s.cursor, s.claims, s.session, s.client);
}

/** `GET /sse` taken out of node:http: the same admission, errors answered on the socket. */
export function sseSocket(d: Door, req: IncomingMessage, socket: Socket): void {
  socket.on("error", noop);
  const cors = d.admission.corsHeaders(req);
  openSse(d, req, socket, cors).catch((err) => d.fail(socket, err, cors));
}

async function openSse(d: Door, req: IncomingMessage, socket: Socket, cors: Record<string, string>): Promise<void> {
  const s = (await d.admission.admit("sse", req, socket))!;
  return serveSse(d.ctx, openSseSocket(socket, cors), s.ip, s.channels, s.cursor, s.claims, s.session, s.client);
}

/** `GET /poll` through node:http's response. */
export async function pollRequest(d: Door, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
  const s = await d.admission.admit("poll", req, res);
  if (s === undefined) return;
  return d.poll.serve(res, s.ip, s.channels, s.shared, s.hold, cors, s.claims, false, undefined, poller(s));
}

/**
 * `GET /poll` taken out of node:http: the same admission, errors answered on
 * the socket (which then closes); an answer leaves the kept-alive connection
 * to node:http again.
 */
export function pollSocket(d: Door, req: IncomingMessage, socket: Socket, head: Buffer): void {
  watchBareSocket(socket);
  const cors = d.admission.corsHeaders(req);
  openPoll(d, req, socket, head, cors).catch((err) => d.fail(socket, err, cors));
}

async function openPoll(d: Door, req: IncomingMessage, socket: Socket, head: Buffer, cors: Record<string, string>): Promise<void> {
  const s = await d.admission.admit("poll", req, socket);
  if (s === undefined) return;
  const keepAlive = keepsAlive(req);
  const who = poller(s);
  // The client's next poll on this connection may be this one with a new cursor (see poll-repeat.ts).
  offerPollRepeat(d, req, socket, s, cors, who, keepAlive);
  return d.poll.serve(socket, s.ip, s.channels, s.shared, s.hold, cors, s.claims, keepAlive, head, who);
}

/** `/ws` as a WebSocket upgrade: admitted before `ws` completes the handshake; a throw is answered as HTTP. */
export async function upgradeWs(d: Door, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const s = await d.admission.admit("ws", req, socket);
  if (s === undefined) return;
  d.ws.accept(req, socket, head, s.ip, s);
}

/** `/ws` as a plain request. */
export function wsWithoutUpgrade(d: Door): void {
  d.admission.offered("ws");
  throw httpError("bad_request", "/ws expects a WebSocket upgrade");
}

/** Who polls: its client id (only a poll that names one, `client=`, is a presence member), user and session (the server API finds a user's held polls by them). */
function poller(s: SubscribeRequest): Poller {
  return { client: s.client, user: userOf(s.claims, s.session), session: s.session };
}

function noop(): void {}

function streamEnded(this: ServerResponse): void {
  socketIdle(this.req.socket);
}
