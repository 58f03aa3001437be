/**
 * The one registry of Heartline's error codes. Every rejected HTTP request
 * answers `{"error":{"code","message"}}` with the status listed here, and every
 * WebSocket `error` frame uses one of these codes. Codes are stable public API:
 * add new ones, never rename.
 */
export const ERROR_CODES = {
  bad_json: { status: 400, summary: "The body or frame is not valid JSON." },
  bad_request: { status: 400, summary: "A parameter or field is missing or has the wrong shape." },
  bad_channel: { status: 400, summary: "A channel name breaks the naming rules." },
  bad_cursor: { status: 400, summary: "A cursor or resume position is malformed." },
  too_many_channels: { status: 400, summary: "More channels than --max-channels-per-connection." },
  unsupported_frame: { status: 400, summary: "A binary WebSocket frame; Heartline speaks JSON text frames." },
  unauthorized: { status: 401, summary: "The credential (API key or token) is missing or invalid." },
  token_expired: { status: 401, summary: "The token's exp has passed." },
  token_revoked: { status: 401, summary: "The token was issued (iat) before a revocation of its user (POST /api/revoke); get a new one." },
  forbidden: { status: 403, summary: "The credential does not allow this channel or action." },
  disconnected: { status: 403, summary: "The server disconnected this user (POST /api/disconnect); a held long poll is answered with it." },
  origin_not_allowed: { status: 403, summary: "The Origin header is not in --allowed-origins." },
  not_found: { status: 404, summary: "No such endpoint." },
  request_timeout: { status: 408, summary: "The request headers or body did not arrive in time." },
  transport_disabled: { status: 404, summary: "The transport is not in --transports." },
  method_not_allowed: { status: 405, summary: "The endpoint does not accept this HTTP method." },
  message_too_large: { status: 413, summary: "The published data exceeds --max-message-bytes, or the body is too large." },
  unsupported_media_type: { status: 415, summary: "POST /api/publish and POST /api/rpc need Content-Type: application/json (or application/*+json)." },
  headers_too_large: { status: 431, summary: "The request headers are larger than the server accepts (16 KiB)." },
  too_many_connections_per_ip: { status: 429, summary: "This address holds --max-connections-per-ip connections already." },
  internal_error: { status: 500, summary: "An unexpected error; it was logged." },
  too_many_connections: { status: 503, summary: "The process holds --max-connections connections already; retry later." },
  broker_unavailable: { status: 503, summary: "The broker cannot store messages right now; nothing was published." },
  channel_limit: { status: 503, summary: "The server holds --max-channels channels already; a new channel is refused, existing ones keep working. Retry later." },
  shutting_down: { status: 503, summary: "The server is draining; reconnect to another node." },
  not_available: { status: 501, summary: "The feature is not available in this build." },
  hook_unavailable: { status: 503, summary: "The application's hook failed (timeout, refused connection, non-2xx, an answer that is not the documented JSON, or a throw); nothing was let through." },
  rpc_not_configured: { status: 404, summary: "RPC needs an rpc hook (library) or --proxy-rpc-url." },
  rate_limited: { status: 429, summary: "More client publishes or RPCs per second than --client-publish-rate / --client-rpc-rate allow on this connection." },
  too_many_requests: { status: 429, summary: "More RPCs in flight on this WebSocket than the per-connection cap (32); wait for answers." },
  too_many_diagnostics: { status: 429, summary: "More diagnostic holds (GET /diag) than 4 per address or 32 per process; retry when one ends." },
} as const;

/** A stable, snake_case error code from {@link ERROR_CODES}. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Base error of Heartline: a stable code, an HTTP status and a human sentence. */
export class HeartlineError extends Error {
  /** A code of {@link ERROR_CODES}; an application's own code only on a `HookError`. */
  readonly code: ErrorCode | (string & {});
  readonly status: number;
  /** Extra response headers (e.g. `Retry-After`). */
  readonly headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; headers?: Record<string, string>; status?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "HeartlineError";
    this.code = code;
    // A code answered with another status than its usual one (SPEC §11: too_many_connections per user is a 429).
    this.status = options?.status ?? ERROR_CODES[code].status;
    this.headers = options?.headers;
  }

  /** The JSON body of SPEC §4. */
  toJSON(): { error: { code: string; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/** Shorthand for throwing a registry error. */
export function httpError(code: ErrorCode, message: string, headers?: Record<string, string>): HeartlineError {
  return new HeartlineError(code, message, headers ? { headers } : undefined);
}

/** A broker could not do what was asked (store, read); maps to 503 broker_unavailable. */
export class BrokerUnavailableError extends HeartlineError {
  constructor(message = "The broker is unavailable; the message was not published.", cause?: unknown) {
    super("broker_unavailable", message, { cause, headers: { "Retry-After": "1" } });
    this.name = "BrokerUnavailableError";
  }
}

/** What a `HookError` may carry: a 4xx/5xx status, a snake_case code, a sentence. */
export const HOOK_CODE_RE = /^[a-z][a-z0-9_]{0,63}$/;
const HOOK_MESSAGE_MAX = 1000;

/**
 * An application's refusal, thrown by a hook (library form) or answered as
 * `{"error": {status, code, message}}` by a hook backend (HTTP form). The
 * client gets exactly this status, code and message. A status outside
 * 400–599 or a code that is not snake_case is the application's mistake:
 * the constructor throws a TypeError, which the client sees as
 * `503 hook_unavailable`.
 */
export class HookError extends HeartlineError {
  constructor(status: number, code: string, message: string) {
    if (!Number.isInteger(status) || status < 400 || status > 599) throw new TypeError(`HookError status must be an integer from 400 to 599, got ${String(status)}`);
    if (typeof code !== "string" || !HOOK_CODE_RE.test(code)) throw new TypeError("HookError code must be snake_case: a-z, 0-9 and _, at most 64 characters");
    super("forbidden", typeof message === "string" ? message.slice(0, HOOK_MESSAGE_MAX) : "");
    this.name = "HookError";
    (this as { code: string }).code = code;
    (this as { status: number }).status = status;
  }
}
