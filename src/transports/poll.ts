/**
 * Long polling (SPEC §3). Stateless: the cursor carries every position, so a
 * poll needs no session on the server and any node can answer it. A waiting
 * poll is a small object woken by the hub; its deadline is checked by the
 * shared ticker, not by a timer of its own. It keeps the decoded cursor that
 * every request with the same cursor text shares (see decodeCursorShared).
 *
 * A poll asks the hub for what follows its cursor (Hub.readAfter), which
 * applies the reset rule. When the hub reads at once (the memory broker),
 * polls are read and answered in the turn they are woken, and the polls of
 * one pass that wait at the same cursor on the same channels share one
 * answer body.
 *
 * A poll is answered either through node:http's response (servers Heartline
 * is attached to) or, on servers Heartline creates, on the bare socket: the
 * request is taken out of node:http like an upgrade (see StreamRequest in
 * sse.ts), so a held poll keeps no parser, request or response; once
 * answered, the socket is handed back to its server for the next request of
 * the kept-alive connection.
 */
import { ServerResponse, type IncomingMessage, type Server } from "node:http";
import type { Socket } from "node:net";
import type { TokenClaims } from "../auth/tokens.js";
import { routePath } from "../http/request-path.js";
import { socketAdmitted, socketIdle } from "../http/socket-limits.js";
import { DateLine } from "../http/respond.js";
import { encodeCursor, positionIn, type Position, type SharedCursor } from "../hub/cursor.js";
import type { ChannelsRead, CursorPositions, Waiter } from "../hub/hub.js";
import { HEAD_END, headerLine, headerLines, pollAnswerJson, statusLine } from "../wire.js";
import type { ServerContext } from "./connection.js";

/** Most messages in one answer; the client polls again at once for the rest. */
export const POLL_BATCH_LIMIT = 1000;

/** An answer ready to send: its body, the body's length in bytes, and how many messages it carries. */
export interface PollAnswer {
  readonly body: string;
  readonly bytes: number;
  readonly messages: number;
}

/** `{"messages":[…],"cursor":"…","resets":[…]}`; the messages are already JSON. */
export function encodeAnswer(c: ChannelsRead): PollAnswer {
  const body = pollAnswerJson(c.messages, encodeCursor(c.positions), c.resets);
  return { body, bytes: Buffer.byteLength(body), messages: c.messages.length };
}

/**
 * Whether a held poll has something to answer: messages, a reset, or a
 * channel the cursor did not name that has just been given a position
 * (answered at once, so the client holds it before anything is published there).
 */
function hasNews(c: ChannelsRead, channels: readonly string[], cursor: CursorPositions): boolean {
  if (c.messages.length > 0 || c.resets.length > 0) return true;
  let named = 0;
  for (const ch of channels) if (positionIn(cursor, ch) !== undefined) named++;
  return c.positions.length > named;
}

function send(res: ServerResponse, a: PollAnswer, headers: Record<string, string>): void {
  // A flat header list with the length: node:http neither chunks the body nor
  // builds a header object, and writes the head and the body in one piece.
  const head: Array<string | number> = ["Content-Type", "application/json", "Cache-Control", "no-store", "Content-Length", a.bytes];
  for (const name in headers) head.push(name, headers[name]!);
  res.writeHead(200, head);
  res.end(a.body);
}

/** `GET /poll…`: on servers Heartline creates, the requests served on the bare socket. */
export function isPollRequest(method: string | undefined, url: string | undefined): boolean {
  return method === "GET" && routePath(url) === "/poll";
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
 * The state a poll on the bare socket keeps on it: its poll while held, a
 * mark once handed back with an idle limit, and whether the poll handlers
 * are on it already.
 */
const POLL = Symbol("heartline.poll");
const KEPT = Symbol("heartline.kept");
const WATCHED = Symbol("heartline.watched");
type PollSocket = Socket & {
  [POLL]?: PendingPoll;
  [KEPT]?: boolean;
  [WATCHED]?: boolean;
  server?: Server;
  _handle?: { _consumed?: boolean } | null;
};
/** Where an answer goes: node:http's response, or the bare socket. */
export type PollOutput = ServerResponse | Socket;

/** The connection of a poll's output. */
function socketOf(out: PollOutput): Socket | null {
  return out instanceof ServerResponse ? out.req.socket : out;
}

/**
 * Bytes a client may send while its poll is held on the bare socket (the
 * start of its next, pipelined, request). They are kept for node:http; past
 * this the socket is no longer read until the answer, which leaves the rest
 * to TCP's flow control.
 */
const HELD_BYTES_LIMIT = 16 * 1024;

const RAW_HEAD = statusLine(200, "OK") + headerLines({ "Content-Type": "application/json", "Cache-Control": "no-store" });
const CLOSE_LINE = headerLine("Connection", "close");
/** Header lines of bare-socket answers, formatted when they change; one per PollTransport. */
class BareHeads {
  readonly date = new DateLine();
  private keepAliveLine = "";
  private keepAliveMs = -1;

  /** `Connection: keep-alive` and the server's idle limit, as node:http announces them. */
  keepAlive(server: Server): string {
    if (server.keepAliveTimeout !== this.keepAliveMs) {
      const ms = (this.keepAliveMs = server.keepAliveTimeout);
      this.keepAliveLine = headerLine("Connection", "keep-alive") + (ms > 0 ? headerLine("Keep-Alive", "timeout=" + Math.floor(ms / 1000)) : "");
    }
    return this.keepAliveLine;
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

/** Errors on a bare poll socket are answered by its 'close'; without a listener they would throw. */
function ignoreSocketError(): void {}

/**
 * Puts the poll handlers on a socket taken out of node:http for a poll, once
 * per connection: they stay for the polls that follow on it, and do nothing
 * while no poll is held.
 */
export function watchPollSocket(socket: Socket): void {
  const s = socket as PollSocket;
  if (s[WATCHED] === true) return;
  s[WATCHED] = true;
  socket.on("error", ignoreSocketError);
  socket.on("end", onHeldEnd);
  socket.on("close", onHeldClose);
}

/**
 * Answers a poll on the bare socket: status line, headers and body in one
 * write. Then the connection goes back to node:http (`rest`: the bytes the
 * client sent after the poll's request), or ends when it is not kept alive.
 */
function sendBare(heads: BareHeads, socket: PollSocket, a: PollAnswer, headers: Record<string, string>, keepAlive: boolean, rest: Buffer | undefined): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const server = socket.server;
  keepAlive &&= server !== undefined && server.listening;
  const head = RAW_HEAD + heads.date.line() + (keepAlive ? heads.keepAlive(server!) : CLOSE_LINE) + headerLine("Content-Length", a.bytes) + headerLines(headers) + HEAD_END;
  socket.write(head + a.body);
  if (keepAlive) handBack(socket, server!, rest);
  else socket.destroySoon();
}

/**
 * Gives an answered poll's socket back to its server, as a new connection
 * (`server.emit("connection")`, the documented way to hand node:http a
 * socket): the bytes already read after the poll's request are put back in
 * front, and node:http parses them as the connection's next request.
 */
function handBack(socket: PollSocket, server: Server, rest: Buffer | undefined): void {
  socket.pause();
  socket.removeListener("data", onHeldData);
  if (socket[POLL] !== undefined) socket[POLL] = undefined;
  if (rest !== undefined) socket.unshift(rest);
  // As node:http leaves an upgraded socket: neither paused nor flowing, so
  // that its 'data' listener starts the flow (and the bytes put back first).
  (socket as { readableFlowing: boolean | null }).readableFlowing = null;
  // node:http lets its parser read the socket's handle directly only if
  // nothing did before; the parser of the poll's request did and has let go
  // of it (unconsume) when the request left node:http.
  const handle = socket._handle;
  if (handle && handle._consumed) handle._consumed = false;
  server.emit("connection", socket);
  // An idle kept-alive connection is closed as node:http closes its own
  // (keepAliveTimeout plus its one-second margin), and quietly before its
  // headersTimeout, which runs from here too (the new parser waits for a
  // request) and would answer 408. The next request clears the limit.
  let limit = server.keepAliveTimeout > 0 ? server.keepAliveTimeout + 1000 : 0;
  if (server.headersTimeout > 0) limit = limit === 0 ? server.headersTimeout * 0.6 : Math.min(limit, server.headersTimeout * 0.6);
  if (limit > 0) {
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
  const s = socket as PollSocket;
  if (s[KEPT] === true) {
    s[KEPT] = false;
    socket.setTimeout(server.timeout || 0);
  }
}

function onHeldData(this: PollSocket, chunk: Buffer): void {
  const p = this[POLL];
  if (!p) return;
  p.rest = p.rest === undefined ? chunk : Buffer.concat([p.rest, chunk]);
  if (p.rest.length >= HELD_BYTES_LIMIT) this.pause();
}

/** node:http servers allow half-open sockets: a client that ends its side during the hold is gone. */
function onHeldEnd(this: PollSocket): void {
  const p = this[POLL];
  if (!p) return;
  p.abandon();
  this.destroy();
}

function onHeldClose(this: PollSocket): void {
  this[POLL]?.abandon();
}

/** Held polls reach their state through a field of the response or socket: shared handlers, no closure each. */
type PollResponse = ServerResponse & { [POLL]?: PendingPoll };

function onPollClose(this: PollResponse): void {
  this[POLL]?.abandon();
}

/** The key of a (cursor, channels) pair; channel names hold no space. */
function answerKey(cursor: string, channels: readonly string[]): string {
  return channels.length === 1 ? cursor + " " + channels[0] : cursor + " " + channels.join(" ");
}

/** Turns a burst may hold woken polls back; each is one pass of the event loop, microseconds when idle. */
const MAX_DEFERRED_TURNS = 4;

/**
 * Woken polls are read at the end of the turn, not at once: the messages of a
 * burst (several publishes handled in one turn) then leave in one answer
 * instead of one answer each, and the client's next poll has the rest. One
 * queue per PollTransport.
 */
class WakeQueue {
  private readonly woken: PendingPoll[] = [];
  private scheduled = false;
  /** `hub.published` when the queue last looked; while it moves, a burst is still arriving. */
  private seenPublished = -1;
  private deferred = 0;

  constructor(private readonly hub: ServerContext["hub"]) {}

  add(p: PendingPoll): void {
    this.woken.push(p);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  }

  /** Bound once: rescheduling allocates no closure. */
  private readonly run = (): void => {
    const published = this.woken.length > 0 ? this.hub.published : this.seenPublished;
    if (published !== this.seenPublished && this.deferred < MAX_DEFERRED_TURNS) {
      // Messages were stored since the last look: the rest of the burst may be
      // in the sockets already. Look again after one more pass of the loop, so
      // it leaves in the same answers.
      this.seenPublished = published;
      this.deferred++;
      setImmediate(this.run);
      return;
    }
    this.deferred = 0;
    this.scheduled = false;
    const list = this.woken.splice(0, this.woken.length);
    // Answers of this pass by (cursor, channels): nothing is published while it
    // runs, so polls at the same cursor get the same answer.
    let shared: Map<string, PollAnswer | null> | undefined;
    for (let i = 0; i < list.length; i++) {
      const p = list[i]!;
      p.queued = false;
      if (p.done) continue;
      if (this.hub.readsNow) p.checkNow((shared ??= new Map()));
      else void p.check();
    }
  };
}

class PendingPoll implements Waiter {
  done = false;
  /** Waiting in the end-of-turn wake queue. */
  queued = false;
  private collecting = false;
  private dirty = false;
  /** On the bare socket: the bytes the client sent after the poll's request, for node:http once answered. */
  rest: Buffer | undefined;

  constructor(
    readonly transport: PollTransport,
    readonly out: PollOutput,
    readonly ip: string,
    readonly channels: readonly string[],
    /** The cursor, shared with the other requests that sent the same one. */
    readonly cursor: SharedCursor,
    readonly deadline: number,
    readonly headers: Record<string, string>,
    /** The poll's token expiry in wall-clock ms (0 = none): nothing is delivered on an expired token. */
    readonly tokenExp: number,
    /** On the bare socket: whether the connection stays open after the answer. */
    readonly keepAlive: boolean,
  ) {}

  wake(): void {
    if (this.done) return;
    if (this.collecting) {
      this.dirty = true;
      return;
    }
    if (this.queued) return;
    this.queued = true;
    this.transport.wakes.add(this);
  }

  private tokenExpired(): boolean {
    return this.tokenExp !== 0 && this.transport.ctx.auth.now() >= this.tokenExp;
  }

  /**
   * When the hub reads at once: reads and answers now if anything is there.
   * `shared` holds the answers already worked out in this turn, by (cursor, channels).
   */
  checkNow(shared: Map<string, PollAnswer | null>): void {
    try {
      const key = answerKey(this.cursor.text, this.channels);
      let a = shared.get(key);
      if (a === undefined) {
        const cursor = this.cursor.positions;
        const c = this.transport.ctx.hub.readAfterNow(this.channels, cursor, POLL_BATCH_LIMIT);
        a = hasNews(c, this.channels, cursor) ? encodeAnswer(c) : null;
        shared.set(key, a);
      }
      if (this.tokenExpired()) {
        // Woken after the token expired (before the sweep): answer without news;
        // the next poll is refused and the client resumes with a new token.
        this.finish();
        return;
      }
      if (a) this.answer(a);
    } catch (err) {
      this.fail(err);
    }
  }

  /** Reads again; answers if anything is there. Re-reads when woken meanwhile. */
  async check(): Promise<void> {
    this.collecting = true;
    try {
      do {
        this.dirty = false;
        const cursor = this.cursor.positions;
        const c = await this.transport.ctx.hub.readAfter(this.channels, cursor, POLL_BATCH_LIMIT);
        if (this.done) return;
        if (this.tokenExpired()) {
          this.finish();
          return;
        }
        if (hasNews(c, this.channels, cursor)) {
          this.answer(encodeAnswer(c));
          return;
        }
      } while (this.dirty);
    } catch (err) {
      this.fail(err);
    } finally {
      this.collecting = false;
    }
  }

  /** Answers with `a`. */
  answer(a: PollAnswer): void {
    if (this.done) return;
    this.transport.release(this);
    this.transport.ctx.stats.delivered.poll += a.messages;
    this.transport.write(this.out, a, this.headers, this.keepAlive, this.rest);
  }

  /** Answers with nothing new: the positions the cursor holds for the poll's channels. */
  finish(): void {
    if (this.done) return;
    this.transport.release(this);
    const cursor = this.cursor.positions;
    const positions: Array<[string, Position]> = [];
    for (const ch of this.channels) {
      const p = positionIn(cursor, ch);
      if (p) positions.push([ch, p]);
    }
    this.transport.write(this.out, encodeAnswer({ messages: [], resets: [], positions }), this.headers, this.keepAlive, this.rest);
  }

  /** The client went away: free the slot, write nothing. */
  abandon(): void {
    if (!this.done) this.transport.release(this);
  }

  private fail(err: unknown): void {
    if (this.done) return;
    this.transport.release(this);
    this.transport.onError(this.out, err);
    socketIdle(socketOf(this.out));
  }
}

/**
 * Holds a poll on its bare socket: a client that leaves (end or close, see
 * watchPollSocket) frees the slot at once, and what it sends meanwhile is
 * kept for node:http, not parsed.
 */
function hold(socket: PollSocket, p: PendingPoll): void {
  socket[POLL] = p;
  socket.on("data", onHeldData);
}

export class PollTransport {
  /** Polls holding a slot, for the deadline sweep and for draining. */
  readonly waiting = new Set<PendingPoll>();
  /** Polls woken in this turn, answered at its end. */
  readonly wakes: WakeQueue;
  private readonly heads = new BareHeads();

  constructor(
    readonly ctx: ServerContext,
    readonly onError: (out: PollOutput, err: unknown) => void,
  ) {
    this.wakes = new WakeQueue(ctx.hub);
  }

  /** Writes an answer through the response, or on the bare socket (see sendBare). */
  write(out: PollOutput, a: PollAnswer, headers: Record<string, string>, keepAlive: boolean, rest: Buffer | undefined): void {
    if (out instanceof ServerResponse) send(out, a, headers);
    else sendBare(this.heads, out, a, headers, keepAlive && !this.ctx.draining, rest);
    // Answered: a held poll's connection is no longer a subscriber's (a poll whose client left never gets here).
    socketIdle(socketOf(out));
  }

  /**
   * Serves `GET /poll`. Without a cursor: the current position at once. With
   * one: at once when something follows it, else held until a message comes
   * or `holdSeconds` pass. `out` is node:http's response or, for a request
   * taken out of node:http, its socket; then `keepAlive` says whether the
   * connection goes back to node:http after the answer, and `head` holds the
   * bytes read after the request.
   */
  async serve(
    out: PollOutput,
    ip: string,
    channels: readonly string[],
    shared: SharedCursor | undefined,
    holdSeconds: number,
    headers: Record<string, string>,
    claims?: TokenClaims,
    keepAlive = false,
    head?: Buffer,
  ): Promise<void> {
    // A poll never waits past its token's expiry.
    if (claims) holdSeconds = Math.min(holdSeconds, this.ctx.auth.holdLimit(claims));
    const hub = this.ctx.hub;
    const cursor = shared?.positions;
    const rest = head !== undefined && head.length > 0 ? head : undefined;
    if (!shared || holdSeconds <= 0) {
      const c = hub.readsNow ? hub.readAfterNow(channels, cursor, POLL_BATCH_LIMIT) : await hub.readAfter(channels, cursor, POLL_BATCH_LIMIT);
      const a = encodeAnswer(c);
      this.ctx.stats.delivered.poll += a.messages;
      this.write(out, a, headers, keepAlive, rest);
      return;
    }
    // Take the slot and register before the first read, so a message stored
    // between the read and the wait still wakes this poll.
    this.ctx.registry.admit("poll", ip);
    socketAdmitted(socketOf(out));
    const p = new PendingPoll(this, out, ip, channels, shared, Math.ceil(this.ctx.clock.now() + holdSeconds * 1000), headers, claims?.expMs ?? 0, keepAlive);
    p.rest = rest;
    this.waiting.add(p);
    this.ctx.hub.addWaiter(channels, p);
    const bare = !(out instanceof ServerResponse);
    if (!bare) {
      (out as PollResponse)[POLL] = p;
      out.on("close", onPollClose);
    }
    if (this.ctx.draining) {
      p.finish();
      return;
    }
    if (hub.readsNow) {
      p.checkNow(this.answers());
      if (bare && !p.done) hold(out, p);
    } else {
      if (bare) hold(out, p);
      await p.check();
    }
    if (!p.done) this.ctx.stats.pollWaits++;
  }

  /**
   * Answers worked out in this turn, shared by the polls that arrive in it at
   * the same cursor (after a burst, every client polls again with the same
   * one). Forgotten at the end of the turn and whenever a message is stored.
   */
  private answers(): Map<string, PollAnswer | null> {
    const published = this.ctx.hub.published;
    if (!this.turnAnswers || this.turnPublished !== published) {
      this.turnAnswers = new Map();
      this.turnPublished = published;
      setImmediate(() => (this.turnAnswers = undefined));
    }
    return this.turnAnswers;
  }

  private turnAnswers: Map<string, PollAnswer | null> | undefined;
  private turnPublished = 0;

  release(p: PendingPoll): void {
    p.done = true;
    this.waiting.delete(p);
    this.ctx.hub.removeWaiter(p.channels, p);
    this.ctx.registry.release("poll", p.ip);
  }

  /** Answers every poll whose hold has run out. */
  sweep(now: number): void {
    this.turnAnswers = undefined;
    for (const p of this.waiting) if (now >= p.deadline) p.finish();
  }

  /** Answers every waiting poll now (shutdown). */
  drain(): void {
    for (const p of this.waiting) p.finish();
  }
}
