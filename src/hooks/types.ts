/**
 * The application's part (SPEC §8): the five hooks, their contexts and
 * answers. The library form is an object of async functions; the HTTP form
 * (http.ts) turns `--proxy-*-url` options into the same object, so the
 * server calls one kind of hook whichever form the application chose.
 */

/** How the request reached Heartline: `http` is `POST /api/rpc` or a client's `POST /api/publish`. */
export type HookTransport = "ws" | "sse" | "poll" | "http";

/** What every hook is told about the client. */
export interface HookContext {
  readonly transport: HookTransport;
  /** The client address (the last trusted hop behind a proxy). */
  readonly ip: string;
  /** The request headers named by `--proxy-headers` that the client sent, lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  /** The cookies of the `cookie` header (when it is among `--proxy-headers`). */
  readonly cookies: Readonly<Record<string, string>>;
  /** The query parameters of the request that opened the connection (first value of each). */
  readonly query: Readonly<Record<string, string>>;
  /** The connection's user, once known (from `connect` or a token's `sub`); "" is anonymous. */
  readonly user: string | undefined;
  /** What `connect` answered as `info`, once known. */
  readonly info: unknown;
  /** This connection's id (WebSocket and SSE); undefined for a poll or a plain request. */
  readonly client: string | undefined;
  /** Aborted when `--proxy-timeout` has passed and the client has been answered 503. */
  readonly signal?: AbortSignal;
}

export interface SubscribeContext extends HookContext {
  readonly channel: string;
}

export interface PublishContext extends HookContext {
  readonly channel: string;
  /** The data the client sent (any JSON value). */
  readonly data: unknown;
}

export interface RpcContext extends HookContext {
  /** The method name, already checked against {@link RPC_METHOD_RE}. */
  readonly method: string;
  readonly params: unknown;
}

export interface DisconnectContext extends HookContext {
  /** Why the connection closed: a close reason of SPEC §3 (`going_away` when the client left). */
  readonly reason: string;
}

/** `connect` admits the client and names its user. */
export interface ConnectResult {
  /** The user; "" for an anonymous client the application lets in. */
  user: string;
  /** Kept with the connection and given to later hooks (and to presence). */
  info?: unknown;
  /** Channels the connection is subscribed to at once, allowed without asking `subscribe`. */
  channels?: string[];
  /** Unix seconds after which the connection is closed (`token_expired`), as a token's `exp`. */
  expireAt?: number;
}

/** `subscribe` allows with nothing or with `info`; it refuses by throwing a HookError. */
export interface SubscribeResult {
  info?: unknown;
}

/** `publish` allows as sent (nothing, or `{}`), or with `data` replaced. */
export interface PublishDecision {
  data?: unknown;
}

type Answer<T> = T | Promise<T>;

/**
 * The hooks of the library form, each optional. Refuse by throwing
 * `new HookError(status, code, message)`; anything else thrown, a hook that
 * does not settle within `--proxy-timeout`, or an answer of the wrong shape
 * fails closed as `503 hook_unavailable`.
 */
export interface Hooks {
  connect?: (ctx: HookContext) => Answer<ConnectResult>;
  subscribe?: (ctx: SubscribeContext) => Answer<SubscribeResult | void>;
  publish?: (ctx: PublishContext) => Answer<PublishDecision | void>;
  /** Answers with the method's result: any JSON value (undefined is sent as null). */
  rpc?: (ctx: RpcContext) => Answer<unknown>;
  /** Told when a WebSocket or SSE connection has closed; what it answers is ignored. */
  disconnect?: (ctx: DisconnectContext) => Answer<void>;
}

export type HookName = keyof Hooks;
export const HOOK_NAMES: readonly HookName[] = ["connect", "subscribe", "publish", "rpc", "disconnect"];

/** RPC method names: letters, digits and `_ . : / -`, 1 to 100 characters. */
export const RPC_METHOD_RE = /^[A-Za-z0-9_.:/-]{1,100}$/;

/** RPCs one WebSocket may have waiting for their answer; more are refused with `too_many_requests`. */
export const MAX_RPC_IN_FLIGHT = 32;

/** The longest `user` a hook may name. */
export const MAX_USER_LENGTH = 256;
