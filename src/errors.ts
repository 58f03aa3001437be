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
  forbidden: { status: 403, summary: "The credential does not allow this channel or action." },
  origin_not_allowed: { status: 403, summary: "The Origin header is not in --allowed-origins." },
  not_found: { status: 404, summary: "No such endpoint." },
  request_timeout: { status: 408, summary: "The request headers or body did not arrive in time." },
  transport_disabled: { status: 404, summary: "The transport is not in --transports." },
  method_not_allowed: { status: 405, summary: "The endpoint does not accept this HTTP method." },
  message_too_large: { status: 413, summary: "The published data exceeds --max-message-bytes, or the body is too large." },
  unsupported_media_type: { status: 415, summary: "POST /api/publish needs Content-Type: application/json (or application/*+json)." },
  headers_too_large: { status: 431, summary: "The request headers are larger than the server accepts (16 KiB)." },
  too_many_connections_per_ip: { status: 429, summary: "This address holds --max-connections-per-ip connections already." },
  internal_error: { status: 500, summary: "An unexpected error; it was logged." },
  too_many_connections: { status: 503, summary: "The process holds --max-connections connections already; retry later." },
  broker_unavailable: { status: 503, summary: "The broker cannot store messages right now; nothing was published." },
  channel_limit: { status: 503, summary: "The server holds --max-channels channels already; a new channel is refused, existing ones keep working. Retry later." },
  shutting_down: { status: 503, summary: "The server is draining; reconnect to another node." },
  not_available: { status: 501, summary: "The feature is not available in this build." },
} as const;

/** A stable, snake_case error code from {@link ERROR_CODES}. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Base error of Heartline: a stable code, an HTTP status and a human sentence. */
export class HeartlineError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra response headers (e.g. `Retry-After`). */
  readonly headers: Record<string, string> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; headers?: Record<string, string> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "HeartlineError";
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.headers = options?.headers;
  }

  /** The JSON body of SPEC §4. */
  toJSON(): { error: { code: ErrorCode; message: string } } {
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
