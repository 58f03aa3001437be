/**
 * HTTP/1.1 on a bare socket. On servers Heartline creates, `GET /sse` and
 * `GET /poll` are taken out of node:http like an upgrade (StreamRequest), so
 * an idle stream or a held poll keeps no parser, request or response. This
 * module holds what that takes, apart from what is said on the socket:
 * recognising such requests, the keep-alive decision, the response head
 * (formatted by wire.ts), holding a socket while a poll waits, and, on a
 * kept-alive connection, reading the next request when it is another poll
 * or handing the socket back to node:http for any other.
 *
 * A transport writes through an {@link HttpOutput}, node:http's response or
 * the bare socket, without caring which: both are writable streams with the
 * same calls (write, cork, uncork, end, destroy, writableLength) for a
 * stream, and {@link BareHttp.answer} sends a one-shot answer on either.
 */
import { IncomingMessage, maxHeaderSize, type ServerResponse, type Server } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { carrierOf, isResponse } from "../http/h2.js";
import { readPlainGet } from "../http/request-head.js";
import { routePath } from "../http/request-path.js";
import { DateLine, dateLine, LastAnswer } from "../http/respond.js";
import { HEAD_END, headerLine, headerLines, statusLine } from "../wire.js";

/** Where a response goes: node:http's response, or the bare socket of a request taken out of node:http. */
export type HttpOutput = ServerResponse | Socket;

/** What carries an output: its socket, or the HTTP/2 stream of a response on one (see h2.ts). */
export function socketOf(out: HttpOutput): Duplex | null {
  return isResponse(out) ? carrierOf(out.req) : out;
}

/**
 * Whether a request announces a body (`Content-Length` other than 0, or
 * `Transfer-Encoding`). node:http would read it as part of the request; taken
 * out like an upgrade, it would be parsed as the next request, so such a poll
 * stays with node:http.
 */
export function announcesBody(req: IncomingMessage): boolean {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 14 && name.toLowerCase() === "content-length" && raw[i + 1]!.trim() !== "0") return true;
    if (name.length === 17 && name.toLowerCase() === "transfer-encoding") return true;
  }
  return false;
}

/**
 * Whether a response is still outstanding on the request's connection (an
 * earlier request of a pipeline, not yet answered): node:http assigns the
 * connection to the response at the head of its queue until it finishes. A
 * request taken out of node:http then would be answered before it, so it
 * stays on node:http's response path, which answers in order.
 */
function answering(req: IncomingMessage): boolean {
  const s = req.socket as (IncomingMessage["socket"] & { _httpMessage?: unknown }) | null;
  return s != null && s._httpMessage != null;
}

const UPGRADE = Symbol("heartline.upgrade");

/**
 * The request class of servers Heartline creates. node:http hands a request
 * whose `upgrade` is true to the server's `upgrade` listeners and lets go of
 * it, its parser and its response, as it does for a WebSocket handshake; this
 * class reports `GET /sse` and `GET /poll` as such requests, so the stream,
 * or the poll, is served on the bare socket (a poll that announces a body
 * stays with node:http, which reads it, and so does a request pipelined
 * behind one not yet answered). node:http assigns `method`
 * before it reads `upgrade`; a version that stopped reading it would simply
 * serve them as plain requests, through the response.
 */
export class StreamRequest extends IncomingMessage {
  private [UPGRADE]: boolean | null = null;

  get upgrade(): boolean {
    if (this[UPGRADE] === true) return true;
    if (this.method !== "GET") return false;
    const path = routePath(this.url);
    if (path === "/sse") return !answering(this);
    return path === "/poll" && !announcesBody(this) && !answering(this);
  }

  set upgrade(value: boolean | null) {
    this[UPGRADE] = value;
  }
}

/**
 * Whether the client keeps the connection open after the answer (RFC 9112
 * §9.3): HTTP/1.1 unless it sends `Connection: close`, HTTP/1.0 only with
 * `Connection: keep-alive`. Read from the raw header list, like the Origin.
 */
export function keepsAlive(req: IncomingMessage): boolean {
  const raw = req.rawHeaders;
  let value = "";
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 10 && name.toLowerCase() === "connection") value += "," + raw[i + 1]!.toLowerCase();
  }
  if (req.httpVersionMajor !== 1) return false;
  if (value === "") return req.httpVersionMinor >= 1;
  const tokens = value.split(",").map((t) => t.trim());
  if (tokens.includes("close")) return false;
  return req.httpVersionMinor >= 1 || tokens.includes("keep-alive");
}

/** What waits on a bare socket (a held poll): the bytes its client sends meanwhile, and what to do when the client goes. */
export interface Held {
  rest: Buffer | undefined;
  abandon(): void;
}

/**
 * The state kept on a bare socket: what is held on it, a mark once handed
 * back with an idle limit, and whether the handlers are on it already.
 */
const HELD = Symbol("heartline.held");
const KEPT = Symbol("heartline.kept");
const WATCHED = Symbol("heartline.watched");
/** On a socket: the server whose next request it waits for (see awaitNext). */
const WAITING = Symbol("heartline.waiting");
/** On a server: its sockets that wait for a next request. */
const WAITERS = Symbol("heartline.waiters");
/** On a socket: the poll its client may repeat with another cursor (see {@link Repeatable}). */
const REPEAT = Symbol("heartline.repeat");
type BareSocket = Socket & {
  [WAITING]?: Server;
  [REPEAT]?: Repeatable;
  [HELD]?: Held;
  [KEPT]?: boolean;
  [WATCHED]?: boolean;
  server?: Server;
  _handle?: { _consumed?: boolean } | null;
};

/**
 * Gives an accepted socket every field this module may put on it, in one
 * order, before any is used: sockets then share one hidden class whatever
 * they have been through (a poll, a stream, an upgrade), and the property
 * accesses on them, ours and node's own, stay fast rather than megamorphic.
 */
export function shapeSocket(socket: Socket): void {
  const s = socket as BareSocket;
  // A socket handed back to node:http after a poll comes here again, shaped and watched already.
  if (s[WATCHED] !== undefined) return;
  s[WATCHED] = false;
  s[KEPT] = false;
  s[HELD] = undefined;
  s[WAITING] = undefined;
  s[REPEAT] = undefined;
}

/**
 * Bytes a client may send while its poll is held on the bare socket (the
 * start of its next, pipelined, request). They are kept for node:http; past
 * this the socket is no longer read until the answer, which leaves the rest
 * to TCP's flow control.
 */
const HELD_BYTES_LIMIT = 16 * 1024;

/** Errors on a bare socket are answered by its 'close'; without a listener they would throw. */
function ignoreSocketError(): void {}

/**
 * Puts the handlers on a socket taken out of node:http for a poll, once per
 * connection: they stay for the polls that follow on it, and do nothing while
 * nothing is held or awaited. The `data` handler too: the socket is paused
 * while a poll is served and resumed to hold it or to read the next request
 * (adding and removing a listener for each poll cost more than the poll's
 * own work on the socket). While node:http has the socket between two polls,
 * its parser reads it, and the handler ignores what it may still see.
 */
export function watchBareSocket(socket: Socket): void {
  const s = socket as BareSocket;
  if (s[WATCHED] === true) return;
  s[WATCHED] = true;
  socket.on("error", ignoreSocketError);
  socket.on("end", onHeldEnd);
  socket.on("close", onHeldClose);
  socket.on("timeout", onBareTimeout);
  socket.on("data", onBareData);
  // As node:http left it: nothing is read until the poll is held or answered.
  socket.pause();
}

/**
 * Holds `h` on its bare socket: a client that leaves (end or close, see
 * watchBareSocket) abandons it at once, and what it sends meanwhile is kept
 * for node:http, not parsed.
 */
export function holdOn(socket: Socket, h: Held): void {
  (socket as BareSocket)[HELD] = h;
  socket.resume();
}

/** What a watched socket reads: kept while a poll is held, a next request when one is awaited, else not Heartline's. */
function onBareData(this: BareSocket, chunk: Buffer): void {
  const h = this[HELD];
  if (h !== undefined) {
    h.rest = h.rest === undefined ? chunk : Buffer.concat([h.rest, chunk]);
    if (h.rest.length >= HELD_BYTES_LIMIT) this.pause();
    return;
  }
  const server = this[WAITING];
  if (server !== undefined) nextRequest(this, server, chunk);
}

/** node:http servers allow half-open sockets: a client that ends its side during the hold is gone. */
function onHeldEnd(this: BareSocket): void {
  // An idle connection whose client is done, closed as node:http closes one.
  if (closeIdle(this)) return;
  const h = this[HELD];
  if (!h) return;
  h.abandon();
  this.destroy();
}

function onHeldClose(this: BareSocket): void {
  if (this[WAITING] !== undefined) stopWaiting(this, this[WAITING]);
  this[HELD]?.abandon();
}

/**
 * Waits on an answered, kept-alive socket for the client's next request, and
 * reads it here when it is another poll (a plain GET of `/poll`, see
 * http/request-head.ts): the poll then goes to the server's `upgrade`
 * listener as node:http would have sent it there, without a parser, request
 * and response being set up on the socket for it and let go again. Any other
 * request, or one this reader does not accept, goes back to node:http with
 * its bytes ({@link toNodeHttp}). `rest`: the bytes the client sent after the
 * answered request. The socket idles with node:http's idle limit (see
 * {@link idleLimit}); the server's drain closes it ({@link closeServer}).
 */
function awaitNext(socket: BareSocket, server: Server, rest: Buffer | undefined): void {
  if (socket[HELD] !== undefined) socket[HELD] = undefined;
  idleLimit(socket, server);
  if (rest !== undefined) {
    nextRequest(socket, server, rest);
    return;
  }
  socket[WAITING] = server;
  waitingOn(server).add(socket);
  socket.resume();
}

function stopWaiting(socket: BareSocket, server: Server): void {
  socket[WAITING] = undefined;
  waitingOn(server).delete(socket);
}

/**
 * A poll that its connection may send again with another cursor: the same
 * request line but for the cursor's value, the same header fields, byte for
 * byte. Such a poll was admitted already, and nothing admission reads has
 * changed, so the repeat is served with the first one's admission (see
 * server/poll-repeat.ts) without being parsed or admitted again.
 */
export interface Repeatable {
  /** The cursor of `bytes` when they start with a repeat of this poll (its head's length in {@link length}); else undefined. */
  match(bytes: Buffer): string | undefined;
  /** The length of the head {@link match} matched last. */
  readonly length: number;
  /** Serves the repeat with `cursor`; `rest`: the bytes after its head. */
  serve(socket: Socket, cursor: string, rest: Buffer): void;
}

/** What a socket's client may repeat next (undefined: nothing). */
export function offerRepeat(socket: Socket, r: Repeatable | undefined): void {
  const s = socket as BareSocket;
  if (s[REPEAT] !== r) s[REPEAT] = r;
}

/** The client's next request on a socket that waits for one: a poll is taken here, anything else goes to node:http. */
function nextRequest(socket: BareSocket, server: Server, bytes: Buffer): void {
  if (socket[WAITING] !== undefined) stopWaiting(socket, server);
  const repeat = socket[REPEAT];
  if (repeat !== undefined && server.listening) {
    const cursor = repeat.match(bytes);
    if (cursor !== undefined) {
      asUpgraded(socket);
      repeat.serve(socket, cursor, repeat.length < bytes.length ? bytes.subarray(repeat.length) : EMPTY);
      return;
    }
  }
  const head = server.listening ? readPlainGet(bytes, (server as { maxHeaderSize?: number }).maxHeaderSize ?? maxHeaderSize) : undefined;
  if (head === undefined || routePath(head.target) !== "/poll") {
    toNodeHttp(socket, server, bytes);
    return;
  }
  asUpgraded(socket);
  const req = new StreamRequest(socket);
  req.method = "GET";
  req.url = head.target;
  req.httpVersionMajor = 1;
  req.httpVersionMinor = head.minor;
  req.httpVersion = head.minor === 1 ? "1.1" : "1.0";
  req.rawHeaders = head.raw;
  const headers = {};
  const add = (req as unknown as { _addHeaderLine(name: string, value: string, into: object): void })._addHeaderLine;
  for (let i = 0; i < head.raw.length; i += 2) add.call(req, head.raw[i]!, head.raw[i + 1]!, headers);
  req.headers = headers;
  req.upgrade = true;
  server.emit("upgrade", req, socket, head.length < bytes.length ? bytes.subarray(head.length) : EMPTY);
}

const EMPTY = Buffer.alloc(0);

/** Leaves `socket` as node:http leaves one it hands to an upgrade listener: neither paused nor flowing. */
function asUpgraded(socket: Socket): void {
  socket.pause();
  (socket as { readableFlowing: boolean | null }).readableFlowing = null;
}

/** The sockets of `server` waiting for a next request (see awaitNext). */
function waitingOn(server: Server): Set<Socket> {
  const s = server as Server & { [WAITERS]?: Set<Socket> };
  return (s[WAITERS] ??= new Set());
}

/** Closes `socket` if it waits for a next request (idle, nothing to answer); whether it did. */
function closeIdle(socket: BareSocket): boolean {
  const server = socket[WAITING];
  if (server === undefined) return false;
  stopWaiting(socket, server);
  socket.destroy();
  return true;
}

/**
 * Stops `server` listening (`server.close()`, which closes node:http's idle
 * connections) and closes its sockets that wait for a next request after a
 * poll, which node:http does not know of.
 */
export function closeServer(server: Server): void {
  server.close();
  for (const socket of waitingOn(server)) closeIdle(socket as BareSocket);
}

/** A socket idles for the next request: its 'timeout' (set by idleLimit) closes it quietly. */
function onBareTimeout(this: BareSocket): void {
  closeIdle(this);
}

/**
 * Gives an answered socket back to its server, as a new connection
 * (`server.emit("connection")`, the documented way to hand node:http a
 * socket): `bytes`, already read, are put back in front, and node:http
 * parses them as the connection's next request.
 */
function toNodeHttp(socket: BareSocket, server: Server, bytes: Buffer | undefined): void {
  socket.pause();
  if (bytes !== undefined) socket.unshift(bytes);
  // As node:http leaves an upgraded socket: neither paused nor flowing, so
  // that its 'data' listener starts the flow (and the bytes put back first).
  (socket as { readableFlowing: boolean | null }).readableFlowing = null;
  // node:http lets its parser read the socket's handle directly only if
  // nothing did before; the parser of the request did and has let go of it
  // (unconsume) when the request left node:http.
  const handle = socket._handle;
  if (handle && handle._consumed) handle._consumed = false;
  server.emit("connection", socket);
}

/**
 * An idle kept-alive connection is closed as node:http closes its own
 * (keepAliveTimeout plus its one-second margin), and quietly before its
 * headersTimeout, which runs from a handed-back socket too (the new parser
 * waits for a request) and would answer 408. The next request clears the
 * limit.
 */
function idleLimit(socket: BareSocket, server: Server): void {
  let limit = server.keepAliveTimeout > 0 ? server.keepAliveTimeout + 1000 : 0;
  if (server.headersTimeout > 0) limit = limit === 0 ? server.headersTimeout * 0.6 : Math.min(limit, server.headersTimeout * 0.6);
  // Set once per connection: reads and writes restart it (and re-arm it once it has fired).
  if (limit > 0 && (socket[KEPT] !== true || socket.timeout !== limit)) {
    socket.setTimeout(limit);
    socket[KEPT] = true;
  }
}

/**
 * Called for each request and each upgrade but a poll on a listen() server:
 * a connection handed back after a poll still carries the idle limit set
 * then, which node:http would otherwise leave running during the request. (A
 * poll leaves it: it would fire at most once, to no listener, and the answer
 * sets it again.)
 */
export function clearKeepAliveLimit(socket: Socket, server: Server): void {
  const s = socket as BareSocket;
  if (s[KEPT] === true) {
    s[KEPT] = false;
    socket.setTimeout(server.timeout || 0);
  }
}

const JSON_HEAD = statusLine(200, "OK") + headerLines({ "Content-Type": "application/json", "Cache-Control": "no-store" });
const CLOSE_LINE = headerLine("Connection", "close");

/** One-shot answers on either output; the bare-socket header lines are formatted when they change. One per owner. */
export class BareHttp {
  readonly date = new DateLine();
  /** The last answer written on a bare socket: the polls of one pass at one cursor are written from its bytes. */
  private readonly last = new LastAnswer();
  private keepAliveLine = "";
  private keepAliveMs = -1;

  /** `Connection: keep-alive` and the server's idle limit, as node:http announces them. */
  private keepAlive(server: Server): string {
    if (server.keepAliveTimeout !== this.keepAliveMs) {
      const ms = (this.keepAliveMs = server.keepAliveTimeout);
      this.keepAliveLine = headerLine("Connection", "keep-alive") + (ms > 0 ? headerLine("Keep-Alive", "timeout=" + Math.floor(ms / 1000)) : "");
    }
    return this.keepAliveLine;
  }

  /**
   * Answers 200 with a JSON `body` of `bytes` bytes. Through node:http's
   * response: a flat header list with the length, so node:http neither
   * chunks the body nor builds a header object, and writes the head and the
   * body in one piece. On the bare socket: status line, headers and body in
   * one write; then the connection goes back to node:http (`rest`: the bytes
   * the client sent after the request), or ends when it is not kept alive.
   */
  answerJson(out: HttpOutput, body: string, bytes: number, headers: Record<string, string>, keepAlive: boolean, rest: Buffer | undefined): void {
    if (isResponse(out)) {
      const head: Array<string | number> = ["Content-Type", "application/json", "Cache-Control", "no-store", "Content-Length", bytes];
      for (const name in headers) head.push(name, headers[name]!);
      out.writeHead(200, head);
      out.end(body);
      return;
    }
    const socket = out as BareSocket;
    if (socket.destroyed || !socket.writable) {
      socket.destroy();
      return;
    }
    const server = socket.server;
    keepAlive &&= server !== undefined && server.listening;
    socket.write(this.last.bytesOf(JSON_HEAD, this.date.line(), keepAlive ? this.keepAlive(server!) : CLOSE_LINE, bytes, headers, body));
    if (keepAlive) awaitNext(socket, server!, rest);
    else socket.destroySoon();
  }
}

/** The head of a response on the bare socket: `fixed` (status line and constant header lines), the date, `headers`. */
export function bareHead(fixed: string, headers: Record<string, string>): string {
  return fixed + dateLine() + headerLines(headers) + HEAD_END;
}
