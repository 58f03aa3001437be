/**
 * A bound on sockets that are not subscriber connections: sockets still
 * sending their headers, publishes and other requests in progress, and idle
 * kept-alive connections. Subscriber connections (WebSocket, SSE, held polls)
 * are bounded by `--max-connections` and `--max-connections-per-ip`; every
 * other socket of a server made by `listen()` counts here, per peer address
 * (`--max-pending-connections-per-ip`) and in total
 * (`--max-pending-connections`). A new socket past either limit is closed at
 * once, before node:http reads a byte from it.
 *
 * A socket counts as pending from its accept until it is admitted as a
 * subscriber connection ({@link socketAdmitted}), and again once its stream
 * ends and it goes back to idle keep-alive ({@link socketIdle}); it stops
 * counting when it closes.
 *
 * A socket whose poll was answered ({@link socketAnswered}) is a poller's
 * between two polls: its next poll follows within a round trip. It rests
 * there, counted apart from the pending ones, so that answering a thousand
 * held polls at once does not fill the pending limit and shut out new
 * sockets until they poll again. Resting sockets are bounded like the
 * subscriber connections they stand for (`--max-connections`, and
 * `--max-connections-per-ip` per address); past that a socket counts as
 * pending. A resting socket stays so until its next poll is held, its
 * request fails, or it closes (the keep-alive timeout closes an idle one).
 *
 * Nothing is kept per socket but three fields on it and a shared 'close'
 * listener; the counts live in two Maps.
 *
 * With TLS the TCP socket is counted (at accept, before the handshake); the
 * TLS socket over it stands for it ({@link countAs}). An HTTP/2 session
 * carries many requests, each on a stream: its socket counts as a
 * subscriber's while at least one of its streams holds a subscriber (an SSE
 * stream, a held poll) and as pending otherwise ({@link countSession}); a
 * stream that closes gives its part back.
 */
import type { Duplex } from "node:stream";
import type { Socket } from "node:net";
import { normalizeAddress } from "./client-address.js";

const PEER = Symbol("heartline.peer");
const LIMITS = Symbol("heartline.socketLimits");
const STATE = Symbol("heartline.socketState");
const PENDING = 1;
const ADMITTED = 2;
const CLOSED = 3;
const RESTING = 4;
type CountedSocket = Socket & { [PEER]?: string; [LIMITS]?: SocketLimits; [STATE]?: number };
/** On a TLS socket or an HTTP/2 session: the counted socket it stands for. */
const COUNTED = Symbol("heartline.counted");
/** On an HTTP/2 session: its streams that hold a subscriber. */
const SUBSCRIBERS = Symbol("heartline.subscribers");
/** On an HTTP/2 stream: it holds a subscriber. */
const HOLDS = Symbol("heartline.holds");
type Stand = object & { [COUNTED]?: CountedSocket };
type Session = Stand & { [SUBSCRIBERS]?: number };
type Stream = Duplex & { session?: Session | null; [HOLDS]?: Session };

export interface SocketLimitOptions {
  /** Pending sockets in total; 0 = no limit. */
  maxPending: number;
  /** Pending sockets per peer address; 0 = no limit. */
  maxPendingPerIp: number;
  /** Resting sockets (a poller's between polls) in total; 0 = no limit. */
  maxResting: number;
  /** Resting sockets per peer address; 0 = no limit. */
  maxRestingPerIp: number;
  /** Counts a refused socket. */
  onRefused: (perAddress: boolean) => void;
}

export class SocketLimits {
  /** Pending sockets per peer address. */
  private readonly pending = new Map<string, number>();
  private pendingTotal = 0;
  /** Resting sockets per peer address. */
  private readonly resting = new Map<string, number>();
  private restingTotal = 0;
  private openTotal = 0;

  constructor(private readonly options: SocketLimitOptions) {}

  /**
   * A socket was accepted ('connection'). Counts it as pending, or closes it
   * at once when that would pass a limit. A socket already counted (one handed
   * back to node:http after a poll) is left alone.
   */
  accept(socket: Socket): void {
    const s = socket as CountedSocket;
    if (s[LIMITS] !== undefined) return;
    const peer = normalizeAddress(socket.remoteAddress ?? "") ?? "unknown";
    const o = this.options;
    if (o.maxPending > 0 && this.pendingTotal >= o.maxPending) {
      o.onRefused(false);
      socket.destroy();
      return;
    }
    if (o.maxPendingPerIp > 0 && (this.pending.get(peer) ?? 0) >= o.maxPendingPerIp) {
      o.onRefused(true);
      socket.destroy();
      return;
    }
    s[PEER] = peer;
    s[LIMITS] = this;
    s[STATE] = PENDING;
    // Set now, though only a held stream uses it: every socket gets this module's fields in one order (see shapeSocket in transports/bare.ts).
    (s as Stream)[HOLDS] = undefined;
    this.openTotal++;
    this.add(peer, 1);
    socket.once("close", onClose);
  }

  private add(peer: string, n: number): void {
    this.pendingTotal += n;
    bump(this.pending, peer, n);
  }

  private rest(peer: string, n: number): void {
    this.restingTotal += n;
    bump(this.resting, peer, n);
  }

  /** Whether one more socket of `peer` may rest. */
  private mayRest(peer: string): boolean {
    const o = this.options;
    return (o.maxResting === 0 || this.restingTotal < o.maxResting) && (o.maxRestingPerIp === 0 || (this.resting.get(peer) ?? 0) < o.maxRestingPerIp);
  }

  /** Moves a counted socket from its state to `to` (a socket past the resting limits counts as pending instead), adjusting the counts. */
  move(s: CountedSocket, to: number): void {
    const from = s[STATE]!;
    if (from === to || from === CLOSED) return;
    const peer = s[PEER]!;
    if (to === RESTING && !this.mayRest(peer)) {
      if (from === PENDING) return;
      to = PENDING;
    }
    s[STATE] = to;
    if (to === CLOSED) this.openTotal--;
    if (from === PENDING) this.add(peer, -1);
    else if (from === RESTING) this.rest(peer, -1);
    if (to === PENDING) this.add(peer, 1);
    else if (to === RESTING) this.rest(peer, 1);
  }

  /** Open sockets counted, the pending and resting ones among them, and the peer addresses holding pending ones. */
  get counts(): SocketCounts {
    return { open: this.openTotal, pending: this.pendingTotal, resting: this.restingTotal, addresses: this.pending.size };
  }
}

export interface SocketCounts {
  open: number;
  pending: number;
  resting: number;
  addresses: number;
}

function bump(counts: Map<string, number>, peer: string, n: number): void {
  const v = (counts.get(peer) ?? 0) + n;
  if (v <= 0) counts.delete(peer);
  else counts.set(peer, v);
}

function onClose(this: CountedSocket): void {
  this[LIMITS]?.move(this, CLOSED);
}

/** `outer` (a TLS socket over a counted TCP socket) counts as that socket. */
export function countAs(outer: object, counted: Socket | undefined): void {
  if (counted !== undefined && (counted as CountedSocket)[LIMITS] !== undefined) (outer as Stand)[COUNTED] = counted;
}

/** An HTTP/2 session over `socket` (a TLS socket, or the session's stand-in for it): its streams count through it. */
export function countSession(session: object, socket: object | undefined): void {
  const counted = (socket as Stand | undefined)?.[COUNTED];
  if (counted === undefined) return;
  const s = session as Session;
  s[COUNTED] = counted;
  s[SUBSCRIBERS] = 0;
}

function counted(x: object): CountedSocket | undefined {
  const s = x as CountedSocket & Stand;
  return s[LIMITS] !== undefined ? s : s[COUNTED];
}

/** The session of an HTTP/2 stream whose session is counted. */
function countedSession(x: object): Session | undefined {
  const session = (x as Stream).session;
  return session != null && session[SUBSCRIBERS] !== undefined ? session : undefined;
}

/**
 * The socket (or HTTP/2 stream) now carries a subscriber connection (bounded
 * by the connection limits): it no longer counts as pending.
 */
export function socketAdmitted(socket: Duplex | null | undefined): void {
  if (socket == null) return;
  const session = countedSession(socket);
  if (session !== undefined) {
    const stream = socket as Stream;
    if (stream[HOLDS] !== undefined) return;
    stream[HOLDS] = session;
    stream.once("close", streamClosed);
    if (session[SUBSCRIBERS]!++ === 0) move(session[COUNTED]!, ADMITTED);
    return;
  }
  const s = counted(socket);
  if (s !== undefined) move(s, ADMITTED);
}

/**
 * The subscriber connection on the socket is over and the socket stays open
 * (keep-alive; or the HTTP/2 stream's session goes on): it counts as pending again.
 */
export function socketIdle(socket: Duplex | null | undefined): void {
  if (socket == null) return;
  const stream = socket as Stream;
  const session = stream[HOLDS];
  if (session !== undefined) {
    stream[HOLDS] = undefined;
    stream.off("close", streamClosed);
    if (--session[SUBSCRIBERS]! === 0) move(session[COUNTED]!, PENDING);
    return;
  }
  if (countedSession(socket) !== undefined) return;
  const s = counted(socket);
  if (s !== undefined) move(s, PENDING);
}

/**
 * A poll on the socket was answered and the connection stays open: it rests
 * as its poller's until the next poll (see the top of this file). An HTTP/2
 * stream gives its part back as {@link socketIdle} says: the session's socket
 * counts as a whole.
 */
export function socketAnswered(socket: Duplex | null | undefined): void {
  if (socket == null) return;
  if ((socket as Stream)[HOLDS] !== undefined || countedSession(socket) !== undefined) {
    socketIdle(socket);
    return;
  }
  const s = counted(socket);
  if (s !== undefined) move(s, RESTING);
}

function streamClosed(this: Stream): void {
  socketIdle(this);
}

function move(s: CountedSocket, to: number): void {
  s[LIMITS]?.move(s, to);
}
