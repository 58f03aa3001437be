/**
 * WebSocket transport (SPEC §3): JSON text frames over `ws`. Event handlers
 * are shared functions that reach their connection through a field of the
 * socket, so an open connection costs no closures.
 */
import type { IncomingMessage } from "node:http";
import type { Socket as NetSocket } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { feedDenied } from "../auth/permissions.js";
import type { TokenClaims } from "../auth/tokens.js";
import { CLOSE_CODES, type CloseReason } from "../close-codes.js";
import { HeartlineError, httpError } from "../errors.js";
import { assertChannelName } from "../hub/channel-name.js";
import { parseSince, positionIn, type Position } from "../hub/cursor.js";
import type { Outgoing, PresenceOut, Subscription } from "../hub/hub.js";
import { wsUnsubscribedFrame } from "../wire.js";
import { Connection, userOf, type ServerContext } from "./connection.js";
import { takeToken } from "./rate.js";
import { rateLimited, rpcFrame } from "./ws-rpc.js";
import type { Publisher } from "../http/publish.js";
import type { Session } from "../hooks/runner.js";
import { MAX_RPC_IN_FLIGHT } from "../hooks/types.js";

const CONN = Symbol("heartline.connection");
type Socket = WebSocket & { [CONN]?: WsConnection };

/**
 * The pre-framed fast path. Fan-out encodes a message's frame once
 * (`Outgoing.wsFrame`) and writes it to every subscriber's TCP socket, where
 * `ws.send` would frame it again for each. `ws` has no public call for a
 * ready frame, so this needs the socket `ws` writes to, which ws 8 keeps in
 * its undocumented `_socket`. The assumption is checked on every upgrade
 * rather than trusted: the field must hold the very socket the upgrade was
 * handed, and no extension (compression) may be in use, since ws then frames
 * (and may queue) differently. With compression off and no Blob sent, ws's
 * sender writes each frame to that socket synchronously, so frames written
 * beside it never interleave inside one of its own. When the check fails (a
 * future ws), the connection sends through `ws.send`, slower but the same
 * bytes on the wire. test/integration/ws-fast-path.test.ts proves both for
 * the pinned ws version.
 */
export function rawSocketOf(ws: WebSocket, upgraded: Duplex): NetSocket | null {
  const raw = (ws as { _socket?: unknown })._socket;
  if (raw !== upgraded || ws.extensions !== "") return null;
  const s = raw as Partial<NetSocket>;
  return typeof s.write === "function" && typeof s.cork === "function" && typeof s.uncork === "function" ? (raw as NetSocket) : null;
}

const PING_FRAME = Buffer.from('{"type":"ping"}');
const REFRESH_FRAME = Buffer.from('{"type":"refresh"}');
const TEXT = { binary: false } as const;

export class WsConnection extends Connection {
  readonly kind = "ws" as const;

  constructor(
    ctx: ServerContext,
    ip: string,
    readonly socket: Socket,
    private readonly publisher: Publisher,
    /** The TCP socket for pre-built frames (see {@link rawSocketOf}); null: everything goes through `ws.send`. */
    readonly raw: NetSocket | null = null,
  ) {
    super(ctx, ip);
    socket[CONN] = this;
    socket.on("message", onMessage);
    socket.on("pong", onPong);
    // Any frame counts as a sign of life, the client's own pings included.
    socket.on("ping", onPong);
    socket.on("close", onClose);
    socket.on("error", onError);
  }

  /** This connection's frames in the write batch (see batch.ts), and their bytes. */
  gatherFirst = -1;
  gatherLast = -1;
  gathered = 0;
  /** Admitted with the server's credential (the event feed's reader): subscribes to any channel. */
  asServer = false;
  /** RPCs sent to the rpc hook and not yet answered (at most {@link MAX_RPC_IN_FLIGHT}). */
  rpcInFlight = 0;
  /** The publish and RPC rate limits' buckets (see rate.ts). */
  publishTat = 0;
  rpcTat = 0;

  deliver(_sub: Subscription, out: Outgoing): void {
    if (this.closed || this.socket.readyState !== 1) return;
    // The frame is encoded once per message and shared by every subscriber;
    // with compression off, ws would only add the same header around it.
    if (this.writeShared(this.raw !== null ? out.wsFrame : out.ws)) this.ctx.stats.delivered.ws++;
  }

  presence(_sub: Subscription, out: PresenceOut): void {
    if (this.closed || this.socket.readyState !== 1) return;
    this.writeShared(this.raw !== null ? out.wsFrame : out.ws);
  }

  /**
   * Writes what many connections share: a whole frame on the fast path
   * (gathered in the write batch until it flushes), else the payload through
   * ws. False when over the send budget (the connection is then closed).
   */
  private writeShared(bytes: Buffer): boolean {
    if (this.overBudget(bytes.length)) {
      this.close("slow_consumer");
      return false;
    }
    if (this.raw !== null) {
      this.gathered += bytes.length;
      this.ctx.registry.batch.gather(this, bytes);
    } else this.socket.send(bytes, TEXT);
    this.lastSendAt = this.ctx.now;
    return true;
  }

  /** The batch's flush: this connection's frames, joined. Nothing after a close frame (ours, or the peer's answered by ws). */
  writeGathered(bytes: Buffer): void {
    this.gathered = 0;
    if (!this.closed && this.socket.readyState === 1) this.raw!.write(bytes);
  }

  /** Writes the frames gathered for this connection now: what is written next must come after them. */
  private writeGatheredNow(): void {
    const bytes = this.ctx.registry.batch.take(this);
    if (bytes === undefined) return;
    this.gathered = 0;
    this.raw!.write(bytes);
  }

  reset(sub: Subscription, epoch: string, offset: number): void {
    this.sendJson({ type: "reset", channel: sub.channel, epoch, offset });
  }

  subscribed(sub: Subscription, epoch: string, latest: number, recovered: boolean): void {
    this.sendJson({ type: "subscribed", channel: sub.channel, epoch, offset: latest, recovered });
  }

  sendPing(): void {
    if (this.closed) return;
    this.socket.ping();
    this.write(PING_FRAME);
    this.ctx.stats.heartbeats.ws++;
  }

  bufferedBytes(): number {
    return this.socket.bufferedAmount + this.gathered;
  }

  protected sendUnsubscribed(channel: string): void {
    this.write(Buffer.from(wsUnsubscribedFrame(channel)));
  }

  override requestRefresh(): void {
    this.write(REFRESH_FRAME);
  }

  /**
   * A `refresh` frame: a valid token for the same subject (or any subject, on
   * a connection that had none) replaces the current one and moves its
   * deadlines; subscriptions the new claims no longer allow are dropped, each
   * with an error frame `forbidden`. Anything wrong leaves the old token, and
   * its deadline, in place.
   */
  async refresh(token: string): Promise<TokenClaims> {
    const auth = this.ctx.auth;
    const claims = await auth.verify(token);
    if (this.claims && claims.sub !== this.claims.sub) {
      throw httpError("forbidden", "the new token is for another subject (sub) than the connection's token");
    }
    if (this.closed) return claims;
    auth.bind(this, claims);
    this.sessionDeadline();
    // With hooks, channels were allowed by more than the token: the new token narrows nothing.
    if (this.session !== undefined) return claims;
    for (const { channel } of this.subs) {
      const denied = auth.subscribeDenied(claims, channel);
      if (denied) {
        this.unsubscribe(channel);
        this.sendError(denied, { channel });
      }
    }
    return claims;
  }

  /** Sends an error frame; `extra` may carry the `channel` or `id` it is about. */
  sendError(err: HeartlineError, extra?: Record<string, unknown>): void {
    this.sendJson({ type: "error", code: err.code, message: err.message, ...extra });
  }

  sendJson(frame: object): void {
    this.write(Buffer.from(JSON.stringify(frame)));
  }

  /** Sends one text frame, within the send budget. */
  write(bytes: Buffer): void {
    if (this.closed) return;
    if (this.overBudget(bytes.length)) {
      this.close("slow_consumer");
      return;
    }
    this.writeGatheredNow();
    this.socket.send(bytes, TEXT);
    this.lastSendAt = this.ctx.now;
  }

  protected end(reason: CloseReason, code: number): void {
    const s = this.socket;
    if (s.readyState === s.OPEN || s.readyState === s.CONNECTING) {
      // What was delivered goes before the close frame; a slow consumer's is dropped.
      if (reason !== "slow_consumer" && s.readyState === s.OPEN) this.writeGatheredNow();
      s.close(code, CLOSE_CODES[reason].reason);
      // The peer may never read our close frame (it is slow, or gone): cut it soon.
      this.terminateAt = this.ctx.now + (reason === "slow_consumer" ? 1000 : 5000);
      this.ctx.registry.closing.add(this);
    }
  }

  terminate(): void {
    this.ctx.registry.closing.delete(this);
    this.socket.terminate();
  }

  /** One client frame. Every malformed frame gets an error frame; none closes the connection. */
  handleFrame(data: RawData, isBinary: boolean): void {
    this.lastRecvAt = this.ctx.now;
    this.pingSentAt = 0;
    if (isBinary) {
      this.sendError(httpError("unsupported_frame", "binary frames are not supported; send JSON text frames"));
      return;
    }
    let frame: unknown;
    try {
      frame = JSON.parse(data.toString());
    } catch {
      this.sendError(httpError("bad_json", "the frame is not valid JSON"));
      return;
    }
    if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
      this.sendError(httpError("bad_request", 'a frame must be a JSON object with a "type"'));
      return;
    }
    const f = frame as Record<string, unknown>;
    const id = typeof f.id === "string" || typeof f.id === "number" ? { id: f.id } : undefined;
    try {
      switch (f.type) {
        case "subscribe": {
          const channel = assertChannelName(f.channel);
          const since = parseSince(f.since);
          if (this.asServer) {
            // Admitted with the server's credential (the event feed's reader): any channel.
            this.subscribe(channel, since).catch((err) => this.failed(err, { channel, ...id }));
            return;
          }
          const feed = this.ctx.config.eventsChannel;
          const feedRefusal = channel === feed ? feedDenied(this.claims, feed, this.ctx.auth.now()) : undefined;
          if (feedRefusal) {
            this.failed(feedRefusal, { channel, ...id });
            return;
          }
          if (this.session !== undefined) {
            this.subscribeAsked(this.session, channel, since, id);
            return;
          }
          const denied = this.ctx.auth.subscribeDenied(this.claims, channel);
          if (denied) {
            this.failed(denied, { channel, ...id });
            return;
          }
          this.subscribe(channel, since).catch((err) => this.failed(err, { channel, ...id }));
          return;
        }
        case "unsubscribe": {
          const channel = assertChannelName(f.channel);
          this.unsubscribe(channel);
          this.sendJson({ type: "unsubscribed", channel, ...id });
          return;
        }
        case "publish": {
          const channel = assertChannelName(f.channel);
          const tat = takeToken(this.publishTat, this.ctx.clock.now(), this.ctx.config.clientPublishRate);
          if (tat < 0) throw rateLimited("publishes", this.ctx.config.clientPublishRate, "--client-publish-rate");
          this.publishTat = tat;
          this.publisher
            .publishFromClient(channel, f.data, "data" in f, this.claims, this.session)
            .then((r) => this.sendJson({ type: "published", channel, epoch: r.epoch, offset: r.offset, ...id }))
            .catch((err) => this.failed(err, { channel, ...id }));
          return;
        }
        case "rpc":
          rpcFrame(this, f);
          return;
        case "pong":
          return;
        case "refresh": {
          if (typeof f.token !== "string" || f.token === "") throw httpError("bad_request", 'a refresh frame needs a "token" string');
          this.refresh(f.token).then(
            (claims) => this.sendJson({ type: "refreshed", exp: claims.expMs / 1000, ...id }),
            (err) => this.failed(err, id),
          );
          return;
        }
        default:
          // Never stringify what the client sent: a deeply nested value would overflow the stack.
          throw httpError("bad_request", `unknown frame type ${typeof f.type === "string" ? JSON.stringify(f.type.slice(0, 40)) : typeof f.type}`);
      }
    } catch (err) {
      this.failed(err, id);
    }
  }

  /** A subscribe frame on a connection with hooks: the channel may need the subscribe hook's answer first. */
  private subscribeAsked(s: Session, channel: string, since: Position | undefined, id: { id: string | number } | undefined): void {
    let asked: Promise<void> | undefined;
    try {
      asked = this.ctx.hooks.checkChannel(s, this.claims, channel);
    } catch (err) {
      this.failed(err, { channel, ...id });
      return;
    }
    if (asked === undefined) {
      this.subscribe(channel, since).catch((err) => this.failed(err, { channel, ...id }));
      return;
    }
    asked.then(() => (this.closed ? undefined : this.subscribe(channel, since))).catch((err) => this.failed(err, { channel, ...id }));
  }

  private failed(err: unknown, extra?: Record<string, unknown>): void {
    if (err instanceof HeartlineError) {
      if (err.code === "broker_unavailable") this.ctx.stats.brokerErrors++;
      this.sendError(err, extra);
      return;
    }
    if (err instanceof RangeError) {
      // A stack overflow on what the client sent (a value nested too deeply): the client's error, logged without a stack.
      this.ctx.logs.write("ws_frame_too_deep", "warn", { conn: this.id, ip: this.ip }, "a WebSocket frame was nested too deeply");
      this.sendError(httpError("bad_request", "the frame is nested too deeply"), extra);
      return;
    }
    this.ctx.logs.write("ws_frame_error", "error", { err, conn: this.id }, "unexpected error on a WebSocket frame");
    this.sendError(httpError("internal_error", "unexpected error; it was logged"), extra);
  }
}

function onMessage(this: Socket, data: RawData, isBinary: boolean): void {
  this[CONN]?.handleFrame(data, isBinary);
}
function onPong(this: Socket): void {
  const c = this[CONN];
  if (c) {
    c.lastRecvAt = c.ctx.now;
    c.pingSentAt = 0;
  }
}
function onClose(this: Socket): void {
  const c = this[CONN];
  if (!c) return;
  c.ctx.registry.closing.delete(c);
  c.close("going_away");
}
function onError(this: Socket, err: Error & { code?: string }): void {
  // ws emits 'close' after 'error'; the reason is logged at debug level only
  // because a client sending garbage is not the server's problem.
  const c = this[CONN];
  c?.ctx.logs.write("ws_protocol_error", "debug", { conn: c.id, code: err.code, reason: err.message }, "WebSocket protocol error");
}

/** Parameters of `GET /ws`, validated before the upgrade. */
export interface WsRequest {
  channels: string[];
  cursor: ReadonlyMap<string, Position> | undefined;
  /** The verified token of the upgrade request, if any; the channels above are already allowed by it. */
  claims?: TokenClaims | undefined;
  /** What the application's hooks know of the client, when hooks are configured. */
  session?: Session | undefined;
  /** The client id, when given or needed (presence, hooks, the event feed). */
  client?: string | undefined;
  /** Admitted with the server's credential (the event feed's reader). */
  asServer?: boolean;
}

/**
 * Most frames one client message may be split into. Browsers and common
 * clients send a message in one frame; 128 still lets a client split the
 * largest publish into 512-byte pieces, and bounds what fragments cost.
 */
export const WS_MAX_FRAGMENTS = 128;

/** Accepts upgrades on `/ws` after the server has validated and admitted them. */
export class WebSocketTransport {
  readonly wss: WebSocketServer;
  /** Whether a connection had to go without the fast path (said once in the log). */
  private fallbackLogged = false;

  constructor(
    private readonly ctx: ServerContext,
    private readonly publisher: Publisher,
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      // A frame carries one publish at most: data plus the envelope.
      maxPayload: ctx.config.maxMessageBytes + 4096,
      // Each fragment of a message costs a Buffer until the message ends;
      // more than this many closes the connection (1008).
      maxFragments: WS_MAX_FRAGMENTS,
    });
  }

  /** Completes the upgrade; the registry slot for `ip` is already taken. */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, ip: string, params: WsRequest): void {
    let upgraded = false;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded = true;
      const raw = this.rawSocket(ws, socket);
      if (raw === null && !this.fallbackLogged) {
        this.fallbackLogged = true;
        this.ctx.log.warn("ws does not hold the upgraded socket where the pre-framed fast path expects it; WebSocket messages go through ws.send");
      }
      const conn = new WsConnection(this.ctx, ip, ws, this.publisher, raw);
      conn.admitted(params.claims, params.session, params.client);
      conn.asServer = params.asServer === true;
      this.ctx.registry.track(conn);
      if (this.ctx.draining) {
        conn.close("service_restart");
        return;
      }
      for (const channel of params.channels) {
        conn.subscribe(channel, positionIn(params.cursor, channel)).catch((err) => {
          if (err instanceof HeartlineError) conn.sendError(err, { channel });
          else this.ctx.logs.write("subscribe_error", "error", { err }, "subscribe failed");
        });
      }
    });
    // ws answers a malformed handshake itself (400) without calling back, synchronously.
    if (!upgraded) this.ctx.registry.release("ws", ip, undefined, userOf(params.claims, params.session));
  }

  /** The fast path's check for one upgraded connection ({@link rawSocketOf}); a method, so a test can refuse it. */
  rawSocket(ws: WebSocket, upgraded: Duplex): NetSocket | null {
    return rawSocketOf(ws, upgraded);
  }
}
