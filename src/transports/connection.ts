/**
 * What every persistent connection (WebSocket, SSE) shares: its
 * subscriptions, heartbeat deadlines as plain fields, a byte budget, and one
 * idempotent `close(reason)` that every exit path goes through and that frees
 * everything the connection holds. Transports subclass it and map their
 * native events onto it, nothing more.
 */
import type { TokenHolder } from "../auth/auth.js";
import type { TokenClaims } from "../auth/tokens.js";
import type { HeartlineConfig, TransportName } from "../config.js";
import { CLOSE_CODES, type CloseReason } from "../close-codes.js";
import type { CoreContext } from "../context.js";
import type { Position } from "../cursor-layout.js";
import { HeartlineError, httpError } from "../errors.js";
import type { Outgoing, PresenceOut, Subscriber, Subscription } from "../hub/hub.js";
import { CLIENTS_SET, memberOf, type Member } from "../hub/presence.js";
import type { Session } from "../hooks/runner.js";
import type { Stats } from "../stats.js";
import { WriteBatch } from "./batch.js";
import { ByUser } from "./by-user.js";

/** Everything a transport needs from the server, passed as one object: the shared services and the connection registry. */
export interface ServerContext extends CoreContext {
  readonly registry: ConnectionRegistry;
}

const NO_SUBS: readonly Subscription[] = Object.freeze([]);
const SETTLED: Promise<void> = Promise.resolve();

export abstract class Connection implements Subscriber, TokenHolder {
  /** Numbers connections in log lines; unique within the server. */
  readonly id: number;
  abstract readonly kind: "ws" | "sse";
  /**
   * Subscriptions, in an array of exactly their number: most connections hold
   * one or two channels, where a scan is as quick as a Map and a Map's hash
   * table would cost every idle connection ~150 bytes more.
   */
  subs: readonly Subscription[] = NO_SUBS;
  lastSendAt: number;
  lastRecvAt: number;
  /** When the outstanding heartbeat was sent; 0 when none is outstanding. */
  pingSentAt = 0;
  closed = false;
  /** After a close that waits for the peer: when to cut the socket. */
  terminateAt = 0;
  /** The verified subscriber token the connection's frames are checked against; none when anonymous. */
  claims: TokenClaims | undefined = undefined;
  /** When the token expires, in wall-clock ms (read by the token sweep); 0 = no token. */
  tokenExp = 0;
  /** When to ask the client for a fresh token, in wall-clock ms (WebSocket); 0 = nothing to ask. */
  refreshAt = 0;
  /** What the application's hooks know of this client; undefined when no hook is configured. */
  session: Session | undefined = undefined;
  /** The connection's user (named by connect, or the token's `sub`), as admitted; undefined when anonymous. */
  user: string | undefined = undefined;
  /** The client id (`client=`, else one given by the server when presence or hooks need it). */
  client: string | undefined = undefined;

  constructor(
    readonly ctx: ServerContext,
    readonly ip: string,
  ) {
    this.id = ctx.registry.newId();
    this.lastSendAt = this.lastRecvAt = ctx.now;
  }

  /**
   * Subscribes to `channel`, replaying after `since` when given. The slot is
   * taken at once, so a burst of subscribe frames cannot pass the limit.
   */
  async subscribe(channel: string, since?: Position): Promise<void> {
    const old = this.subscription(channel);
    // Subscribing again keeps the member: its new subscription takes over within the grace.
    if (old) this.ctx.hub.unsubscribe(old, true);
    else if (this.subs.length >= this.ctx.config.maxChannelsPerConnection) {
      throw httpError("too_many_channels", `a connection may subscribe to at most ${this.ctx.config.maxChannelsPerConnection} channels`);
    }
    const sub = this.ctx.hub.subscribe(this, channel, since, this.member(channel));
    this.subs = old ? this.subs.map((s) => (s === old ? sub : s)) : this.subs.concat(sub);
    try {
      await sub.ready;
    } catch (err) {
      this.drop(sub);
      throw err;
    }
    // Settled: let the promise go rather than keep it for the connection's life.
    sub.ready = SETTLED;
  }

  /** The client as the event feed's connect and disconnect count it; undefined without the feed. */
  private feedMember(): Member | undefined {
    if (this.client === undefined || this.ctx.hub.occupancy === undefined) return undefined;
    return memberOf(this.client, this.user, undefined);
  }

  /** The connection's presence member on `channel`, when the channel tracks presence. */
  private member(channel: string): Member | undefined {
    if (this.client === undefined || !this.ctx.hub.presence.tracks(channel)) return undefined;
    return memberOf(this.client, this.user, this.session?.channelInfo?.get(channel) ?? this.session?.info);
  }

  /**
   * Takes the admitted client's token, session and client id: a connect
   * hook's `expireAt` closes the connection like a token's `exp`, whichever
   * is first.
   */
  admitted(claims: TokenClaims | undefined, session: Session | undefined, client: string | undefined): void {
    this.ctx.auth.bind(this, claims);
    this.user = userOf(claims, session);
    this.client = client;
    // The event feed's connect: held before any subscription starts, so it comes before the client's joins.
    const m = this.feedMember();
    if (m) this.ctx.hub.presence.enter(CLIENTS_SET, m).catch(() => {});
    if (session === undefined) return;
    this.session = session;
    this.sessionDeadline();
  }

  /** Applies the session's `expireAt` after the token's deadlines were set. */
  protected sessionDeadline(): void {
    const exp = this.session?.expireAt ?? 0;
    if (exp !== 0 && (this.tokenExp === 0 || exp < this.tokenExp)) this.tokenExp = exp;
  }

  unsubscribe(channel: string): boolean {
    const sub = this.subscription(channel);
    if (!sub) return false;
    this.drop(sub);
    this.ctx.hub.unsubscribe(sub);
    return true;
  }

  /** The server removes the subscription to `channel` (POST /api/unsubscribe) and tells the client; false when there was none. */
  removeSubscription(channel: string): boolean {
    if (this.closed || !this.unsubscribe(channel)) return false;
    this.sendUnsubscribed(channel);
    return true;
  }


  /** The subscription to `channel`, if any. */
  subscription(channel: string): Subscription | undefined {
    const subs = this.subs;
    for (let i = 0; i < subs.length; i++) if (subs[i]!.channel === channel) return subs[i];
    return undefined;
  }

  private drop(sub: Subscription): void {
    if (this.subs.includes(sub)) this.subs = this.subs.length === 1 ? NO_SUBS : this.subs.filter((s) => s !== sub);
  }

  /**
   * The one way out. Frees subscriptions, the registry slot and counters, then
   * lets the transport end its socket. Safe to call any number of times.
   */
  close(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    const subs = this.subs;
    this.subs = NO_SUBS;
    // A connection that ended keeps its presence for the grace (a reconnect changes nothing); one removed by the server does not.
    const graceful = reason !== "forbidden";
    for (let i = 0; i < subs.length; i++) this.ctx.hub.unsubscribe(subs[i]!, graceful);
    const m = this.feedMember();
    if (m) this.ctx.hub.presence.exit(CLIENTS_SET, m.key, graceful, 0, reason);
    this.ctx.registry.release(this.kind, this.ip, this, this.user);
    if (this.session !== undefined) this.ctx.hooks.disconnected(this.session, reason);
    if (reason === "slow_consumer") this.ctx.stats.slowConsumerDrops[this.kind]++;
    if (reason === "heartbeat_timeout") this.ctx.stats.heartbeatTimeouts++;
    try {
      this.end(reason, CLOSE_CODES[reason].code);
    } catch (err) {
      this.ctx.log.warn({ err, conn: this.id }, "error while ending a connection");
    }
  }

  /** Whether `bytes` more would exceed the send budget. */
  protected overBudget(bytes: number): boolean {
    return this.bufferedBytes() + bytes > this.ctx.config.sendBufferBytes;
  }

  /** Transport: end the socket for `reason`. */
  protected abstract end(reason: CloseReason, code: number): void;
  /** Transport: bytes queued and not yet written to the kernel. */
  abstract bufferedBytes(): number;
  /** Transport: send one heartbeat. */
  abstract sendPing(): void;
  /** Transport: cut the socket at once (after a close that the peer did not finish). */
  abstract terminate(): void;
  /** Transport: tell the client the server removed its subscription to `channel`. */
  protected abstract sendUnsubscribed(channel: string): void;
  /** Transport: ask the client for a fresh token before `tokenExp`. Only a WebSocket can be asked. */
  requestRefresh(): void {}

  abstract deliver(sub: Subscription, out: Outgoing): void;
  abstract reset(sub: Subscription, epoch: string, offset: number): void;
  abstract subscribed(sub: Subscription, epoch: string, latest: number, recovered: boolean): void;
  abstract presence(sub: Subscription, out: PresenceOut): void;
}

/**
 * Counts open subscriber connections (WS, SSE and waiting polls) per process
 * and per client address, refuses past the limits, and holds the persistent
 * connections for the heartbeat sweep.
 */
export class ConnectionRegistry {
  total = 0;
  /** Connections ever admitted (for settle-gc.ts). */
  admitted = 0;
  readonly byTransport: Record<TransportName, number> = { ws: 0, sse: 0, poll: 0 };
  private readonly perIp = new Map<string, number>();
  /** Connections per user, kept only with --max-connections-per-user. */
  private readonly perUser = new Map<string, number>();
  /** Persistent connections, swept by the heartbeat ticker. */
  readonly live = new Set<Connection>();
  /** Persistent connections, and held polls, of each named user (the server API finds a user's without a scan). */
  private readonly users = new ByUser<Connection>();
  readonly polls = new ByUser<HeldPoll>();
  /** Connections closed politely whose socket must be cut if the peer lingers. */
  readonly closing = new Set<Connection>();
  /** Write batching for the connections of this server (see batch.ts). */
  readonly batch: WriteBatch;
  private lastId = 0;

  constructor(
    private readonly config: HeartlineConfig,
    private readonly stats: Stats,
  ) {
    this.batch = new WriteBatch(config.writeDelayMs);
  }

  /**
   * Takes a slot for a new connection from `ip` (and, with
   * `--max-connections-per-user`, of a named `user`), or throws 503 / 429.
   */
  admit(kind: TransportName, ip: string, user?: string): void {
    const n = this.assertRoom(ip);
    const perUser = this.config.maxConnectionsPerUser;
    if (perUser > 0 && user) {
      const u = this.perUser.get(user) ?? 0;
      if (u >= perUser) {
        this.stats.rejected.too_many_connections++;
        throw new HeartlineError("too_many_connections", `this user holds its maximum of ${perUser} connections (--max-connections-per-user)`, {
          status: 429,
          headers: { "Retry-After": "5" },
        });
      }
      this.perUser.set(user, u + 1);
    }
    this.perIp.set(ip, n + 1);
    this.total++;
    this.admitted++;
    this.byTransport[kind]++;
  }

  /** Throws the 503 / 429 that {@link admit} would, without taking a slot; else the connections `ip` holds. */
  assertRoom(ip: string): number {
    if (this.total >= this.config.maxConnections) {
      this.stats.rejected.too_many_connections++;
      throw httpError("too_many_connections", `the server holds its maximum of ${this.config.maxConnections} connections; retry later`, {
        "Retry-After": "5",
      });
    }
    const limit = this.config.maxConnectionsPerIp;
    const n = this.perIp.get(ip) ?? 0;
    if (limit > 0 && n >= limit) {
      this.stats.rejected.too_many_connections_per_ip++;
      throw httpError("too_many_connections_per_ip", `this address holds its maximum of ${limit} connections`, { "Retry-After": "5" });
    }
    return n;
  }

  /** A number for a new connection's log lines. */
  newId(): number {
    return ++this.lastId;
  }

  /** Registers a persistent connection that was admitted. */
  track(conn: Connection): void {
    this.live.add(conn);
    this.users.add(conn.user, conn);
  }

  /** The persistent connections of `user`, as a copy (closing them changes the registry). */
  connectionsOf(user: string): Connection[] {
    return this.users.of(user);
  }

  /** Gives back the slot taken by {@link admit} (with the same `user`); for connections, exactly once from `close`. */
  release(kind: TransportName, ip: string, conn?: Connection, user?: string): void {
    if (conn) {
      this.live.delete(conn);
      this.users.delete(user, conn);
    }
    if (this.config.maxConnectionsPerUser > 0 && user) {
      const u = (this.perUser.get(user) ?? 1) - 1;
      if (u <= 0) this.perUser.delete(user);
      else this.perUser.set(user, u);
    }
    this.total--;
    this.byTransport[kind]--;
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.perIp.delete(ip);
    else this.perIp.set(ip, n);
  }

  /** Distinct client addresses holding connections. */
  get addresses(): number {
    return this.perIp.size;
  }
}

/** A held long poll as the server API sees it (its disconnect and revoke answer it with an error). */
export interface HeldPoll {
  readonly user: string | undefined;
  readonly client: string | undefined;
  readonly claims: TokenClaims | undefined;
  /** Answers with an error and frees the poll's slot. */
  fail(err: unknown): void;
}

/** The user a client is admitted as: the one connect named, else its token's `sub`; undefined when anonymous. */
export function userOf(claims: TokenClaims | undefined, session: Session | undefined): string | undefined {
  const u = session?.user ?? claims?.sub;
  return u === "" ? undefined : u;
}
