/**
 * WebSocket close codes, as data shared by server and client. `reconnect`
 * tells a client whether to come back (with backoff, resuming from its
 * cursor) or to give up and surface the error. Codes 4500–4999 are left to
 * applications and are never sent by Heartline.
 */
export const CLOSE_CODES = {
  normal: { code: 1000, reconnect: false, reason: "normal closure" },
  going_away: { code: 1001, reconnect: true, reason: "going away" },
  message_too_big: { code: 1009, reconnect: false, reason: "frame too large" },
  internal_error: { code: 1011, reconnect: true, reason: "internal error" },
  service_restart: { code: 1012, reconnect: true, reason: "server restarting" },
  heartbeat_timeout: { code: 4000, reconnect: true, reason: "heartbeat timeout" },
  token_expired: { code: 4001, reconnect: true, reason: "token expired" },
  token_revoked: { code: 4001, reconnect: true, reason: "token revoked" },
  disconnected_reconnect: { code: 4002, reconnect: true, reason: "disconnected by the server; reconnect" },
  slow_consumer: { code: 4008, reconnect: true, reason: "slow consumer" },
  bad_request: { code: 4400, reconnect: false, reason: "bad request" },
  unauthorized: { code: 4401, reconnect: true, reason: "unauthorized" },
  forbidden: { code: 4403, reconnect: false, reason: "forbidden" },
  disconnected: { code: 4403, reconnect: false, reason: "disconnected by the server" },
} as const;

export type CloseReason = keyof typeof CLOSE_CODES;

/**
 * The codes after which a client gives up, by code, with their names: the
 * entries of {@link CLOSE_CODES} whose `reconnect` is false (a test keeps the
 * two in step; a code two reasons share is named by the first, e.g. 4403
 * `forbidden` for `disconnected` too). Kept apart so the browser client carries these few bytes
 * rather than the whole table.
 */
export const FINAL_CLOSE_CODES: Readonly<Record<number, CloseReason>> = {
  1000: "normal",
  1009: "message_too_big",
  4400: "bad_request",
  4403: "forbidden",
};

/** Whether a client should reconnect after the server closed with `code`. */
export function shouldReconnect(code: number): boolean {
  // 1006 (abnormal, no close frame) and unknown transport-level codes: reconnect.
  // Application codes 4500–4999: the application decides; default to final.
  return !(code in FINAL_CLOSE_CODES || (code >= 4500 && code <= 4999));
}
