/**
 * The Heartline client, for browsers and Node ≥ 20:
 *
 * ```ts
 * import { Heartline } from "heartline/client";
 * const hl = new Heartline("http://localhost:8080");
 * hl.subscribe("chat:lobby", (m) => console.log(m.offset, m.data));
 * ```
 *
 * On Node 20, which has no global `WebSocket` or `EventSource`, pass the
 * `ws` package's `WebSocket` and the `eventsource` package's `EventSource`
 * as options (or leave those transports out).
 */
export { Heartline } from "./heartline.js";
export type { HeartlineEvents, HeartlineOptions, RpcOptions } from "./options.js";
export { Subscription, type SubscriptionEvents } from "./subscription.js";
export { HeartlineError } from "./errors.js";
export type { Cut, CutCause, DiagnosticsSnapshot, Fallback, FallbackReason } from "./diagnostics.js";
export { Backoff, type BackoffOptions } from "./backoff.js";
export { realClock, type ClientClock, type TimerHandle } from "./clock.js";
export { Emitter, type Listener } from "./emitter.js";
export type { ClientTransport, CloseInfo, ReplyFrame, TransportContext, TransportFactory, TransportSink } from "./transport.js";
export type {
  ClientState,
  EventSourceConstructor,
  EventSourceLike,
  FetchFunction,
  Message,
  Position,
  PresenceMember,
  PublishResult,
  ResetInfo,
  SocketEvent,
  StreamEvent,
  TransportName,
  WebSocketConstructor,
  WebSocketLike,
} from "./types.js";
