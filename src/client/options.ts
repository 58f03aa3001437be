/**
 * The client's options and events. Durations are in seconds, like the
 * server's options.
 */
import type { ClientClock } from "./clock.js";
import type { HeartlineError } from "./errors.js";
import type { ClientState, EventSourceConstructor, FetchFunction, PresenceFrame, TransportName, WebSocketConstructor } from "./types.js";

/** Options of the `Heartline` client. Durations are in seconds, like the server's options. */
export interface HeartlineOptions {
  /** Transports to use, in order of preference. Default `["ws", "sse", "poll"]`. */
  transports?: TransportName[];
  /** Gives a token for the server (sent as `token=`); called before every connection attempt and HTTP publish, and when the server asks a WebSocket for a fresh one (sent in a `refresh` frame). */
  getToken?: () => string | Promise<string>;
  /** WebSocket constructor; default `globalThis.WebSocket` (pass the `ws` package's on Node 20). */
  WebSocket?: WebSocketConstructor;
  /** EventSource constructor; default `globalThis.EventSource` (pass the `eventsource` package's on Node). */
  EventSource?: EventSourceConstructor;
  /** `fetch`; default `globalThis.fetch`. */
  fetch?: FetchFunction;
  /** Timers and time; tests pass a manual clock. */
  clock?: ClientClock;
  /** The server's `--heartbeat-interval`. Default 25. */
  heartbeatInterval?: number;
  /** How long past the heartbeat interval a silent connection is kept before it is replaced. Default 10. */
  heartbeatGrace?: number;
  /** How long a transport has to prove it works (first frame, first stream event, first poll answer). Default 5. */
  openTimeout?: number;
  /** Bound of the first reconnection wait. Default 0.25. */
  backoffBase?: number;
  /** Largest reconnection wait. Default 30. */
  backoffMax?: number;
  /** A connection up this long resets the backoff. Default 10. */
  stableAfter?: number;
  /** On a fallback transport, first retry of the better ones after this (doubling while they fail, up to 16×). Default 60. */
  upgradeAfter?: number;
  /** How long a publish over WebSocket waits for its acknowledgement. Default 10. */
  publishTimeout?: number;
  /** How long `rpc()` waits for an answer, unless the call says otherwise. Default 10. */
  rpcTimeout?: number;
  /**
   * This client's id, sent as `client=` on every transport: the server counts
   * one presence member per id, and a reconnect with the same id within its
   * `--presence-grace` is no leave and join. Default: a random id per
   * instance, kept across reconnects and transports. Give one (1–64 of
   * `A-Z a-z 0-9 - . _ ~`) to keep it across page loads, e.g. from
   * `sessionStorage`. Read it back as `hl.clientId`.
   */
  clientId?: string;
  /**
   * Send the server, after each connection opens, the transports and reasons
   * of the fallbacks and cut connections seen since the last report
   * (`POST /api/diagnostics`; no time, address or id), for its dashboard.
   * Default false. `hl.diagnostics()` has them either way.
   */
  report?: boolean;
  /** Source of randomness for the backoff jitter; default `Math.random`. */
  random?: () => number;
  /**
   * Browser bundle (`/heartline.js`): share one server connection between the
   * tabs of an origin, held by a SharedWorker or, where there is none, by a
   * leader tab elected with a Web Lock (reached over a BroadcastChannel).
   * Default true there; a client
   * whose options hold functions other than `getToken` (injected constructors,
   * clock, random) connects on its own, as does every client of
   * `heartline/client` itself. `getToken` is called in the tabs.
   */
  shared?: boolean;
}

/** Options of one `rpc()` call. */
export interface RpcOptions {
  /** Milliseconds to wait for the answer (default: the client's `rpcTimeout`). */
  timeout?: number;
}

/** Events of {@link Heartline}. */
export interface HeartlineEvents {
  /** The connection state changed. */
  state: { from: ClientState; to: ClientState };
  /** The client now uses this transport (after connecting, or after switching to a better one). */
  transport: TransportName;
  /** Something failed that no promise reports: a refused subscription, a final close, a failing `getToken`. */
  error: HeartlineError;
  /** @internal A `subscribed` frame or a cursor came: positions may have become known. */
  pos: undefined;
  /** @internal A presence event came (relayed to the tabs of a shared connection). */
  pres: PresenceFrame;
}

/** Options given in seconds, and their defaults. */
export const SECONDS = {
  heartbeatInterval: 25,
  heartbeatGrace: 10,
  openTimeout: 5,
  backoffBase: 0.25,
  backoffMax: 30,
  stableAfter: 10,
  upgradeAfter: 60,
  publishTimeout: 10,
  rpcTimeout: 10,
};
export type Seconds = keyof typeof SECONDS;
