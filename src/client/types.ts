/**
 * Shapes shared by the client's modules: what the server sends, positions,
 * and the few platform constructors the client can be given.
 */

/** The transports, best first. */
export type TransportName = "ws" | "sse" | "poll";

/** A message as every transport delivers it. */
export interface Message<T = unknown> {
  channel: string;
  /** Position in the channel: +1 per message within an epoch. */
  offset: number;
  /** What the publisher sent (any JSON value). */
  data: T;
}

/** A position in one channel: the last offset the client has, inside an epoch. */
export interface Position {
  epoch: string;
  offset: number;
}

/** Loss announced by the server: the channel now stands at `offset` of `epoch`. */
export interface ResetInfo {
  channel: string;
  epoch: string;
  offset: number;
}

/** One member of a presence channel: a client (one per `Heartline` instance) of a user. */
export interface PresenceMember {
  /** The client id (`clientId` of that client). */
  client: string;
  /** The user the server knows the connection as; null when anonymous. */
  user: string | null;
  /** What the application gave (connect or subscribe hook); null when nothing. */
  info: unknown;
}

/** @internal A presence event as the server sends it: a snapshot (`presence`) or a change. */
export interface PresenceFrame {
  type: "presence" | "join" | "leave";
  channel: string;
  /** `presence`: every member. */
  members?: PresenceMember[];
  client?: string;
  user?: string | null;
  info?: unknown;
}

/** Where a published message was stored. */
export interface PublishResult {
  channel: string;
  epoch: string;
  offset: number;
}

/** The client's connection states. */
export type ClientState = "connecting" | "connected" | "disconnected" | "closed";

/** An event handed to a WebSocket listener (only the fields the client reads). */
export interface SocketEvent {
  /** The event type. */
  readonly type: string;
  /** `message`: the frame (text frames are strings). */
  data?: unknown;
  /** `close`: the close code. */
  code?: number;
  /** `close`: the close reason. */
  reason?: string;
}

/** The part of the WHATWG `WebSocket` the client uses; the `ws` package fits it too. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open" | "message" | "close" | "error", listener: (event: SocketEvent) => void): void;
}

/** A `WebSocket` constructor: the browser's, Node ≥ 22's global, or the `ws` package's. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** An event handed to an `EventSource` listener (only the fields the client reads). */
export interface StreamEvent {
  /** The event type. */
  readonly type: string;
  /** The event's data; absent on connection errors. */
  data?: unknown;
  /** The last `id:` the stream announced: a cursor. */
  lastEventId?: string;
}

/** The part of the WHATWG `EventSource` the client uses; the `eventsource` package fits it too. */
export interface EventSourceLike {
  readonly readyState: number;
  close(): void;
  addEventListener(type: string, listener: (event: StreamEvent) => void): void;
}

/** An `EventSource` constructor: the browser's or the `eventsource` package's. */
export type EventSourceConstructor = new (url: string) => EventSourceLike;

/** The `fetch` the client calls (the platform's by default). */
export type FetchFunction = (input: string, init?: RequestInit) => Promise<Response>;
