/**
 * The one interface between the client's state machine and its transports.
 * A transport maps its native events (socket frames, stream events, poll
 * answers) onto a {@link TransportSink} and nothing more: positions,
 * deduplication, fallback and reconnection all live in the client.
 */
import type { EventSourceConstructor, FetchFunction, Message, Position, PresenceFrame, ResetInfo, TransportName, WebSocketConstructor } from "./types.js";

/** What the client gives a transport when it opens one. */
export interface TransportContext {
  /** Base HTTP(S) URL of the server, without a trailing slash. */
  base: string;
  /** The token from `getToken()`, sent as the `token` query parameter. */
  token: string | undefined;
  /** The client's id, sent as the `client` query parameter (presence: the same member across reconnects). */
  client: string;
  /** The subscribed channels and the position of each, when known. Read at every (re)open. */
  channels(): Array<[string, Position | undefined]>;
  /** The cursor to resume SSE and polling from: the latest one received, or one built from positions. */
  cursor(): string | undefined;
  /** Seconds a long poll may be held (kept under the client's heartbeat watchdog). */
  hold: number;
  WebSocket: WebSocketConstructor | undefined;
  EventSource: EventSourceConstructor | undefined;
  fetch: FetchFunction;
}

/** A server frame that answers a client frame, or an error about a channel. */
export interface ReplyFrame {
  type: string;
  id?: string | number;
  channel?: string;
  code?: string;
  message?: string;
  epoch?: string;
  offset?: number;
  /** `rpc`: the method's result. */
  result?: unknown;
  /** `rpc`: the method failed. */
  error?: { code?: unknown; message?: unknown };
}

/** How a transport ended. */
export interface CloseInfo {
  /** WebSocket close code; SSE's `event: disconnect` and a poll's `403 disconnected` are reported as the matching one (4002 or 4403). */
  code?: number;
  /** HTTP status of a refused request. */
  status?: number;
  /** Error code from an HTTP error body. */
  error?: string;
  /** Milliseconds the server asked to wait (`Retry-After`). */
  retryAfter?: number;
}

/** Callbacks a transport reports to. The client ignores calls from a transport it has replaced. */
export interface TransportSink {
  /** The transport works: frames or events flow (see each transport for what counts). Only the first call counts. */
  open(): void;
  /** Anything arrived: feeds the heartbeat watchdog. */
  alive(): void;
  /** A message; `cursor` is the position after it when the transport speaks cursors. */
  message(m: Message, cursor?: string): void;
  /** WebSocket: a subscription is set up at `offset` (the channel's latest) of `epoch`. */
  subscribed(channel: string, epoch: string, offset: number, recovered: boolean): void;
  /** Loss announced; `cursor` as for {@link TransportSink.message}. */
  reset(r: ResetInfo, cursor?: string): void;
  /** The position after everything reported so far (SSE id-only events, poll answers). */
  cursor(cursor: string): void;
  /** Presence: a snapshot of a channel's members, or a join or leave. */
  roster(f: PresenceFrame): void;
  /** The server removed the subscription to `channel` (`unsubscribed` without an id). */
  ended(channel: string): void;
  /** Acknowledgements and error frames. */
  reply(frame: ReplyFrame): void;
  /** The transport is gone (or could not open); it must not call the sink again. */
  closed(info: CloseInfo): void;
}

/** One open (or opening) transport. */
export interface ClientTransport {
  readonly name: TransportName;
  /** A channel was added; `since` is its position, when known. */
  subscribe(channel: string, since: Position | undefined): void;
  /** A channel was removed. */
  unsubscribe(channel: string): void;
  /** Sends a frame (WebSocket only); false when it cannot be sent now. */
  send?(frame: object): boolean;
  /** Closes the transport and frees what it holds; no sink call follows. Safe twice. */
  close(): void;
}

/** Opens a transport; it reports to `sink`. */
export type TransportFactory = (ctx: TransportContext, sink: TransportSink) => ClientTransport;

/** Builds `base + path + "?" + query` with repeated parameters; undefined values are left out. */
export function endpoint(base: string, path: string, params: Array<[string, string | undefined]>): string {
  return base + path + "?" + new URLSearchParams(params.filter((p): p is [string, string] => p[1] !== undefined));
}

/** Milliseconds of a `Retry-After` header given in seconds. */
export function retryAfterMs(res: Response): number | undefined {
  const s = Number(res.headers.get("retry-after"));
  return s > 0 ? s * 1000 : undefined;
}
