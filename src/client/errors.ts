/**
 * Errors the client surfaces: a stable `code` (the server's snake_case codes,
 * plus `timeout`, `disconnected` and `closed` of the client itself) and a
 * human message.
 */
export class HeartlineError extends Error {
  /**
   * @param code - stable snake_case code, e.g. `forbidden`, `bad_channel`, `timeout`.
   * @param message - a human sentence.
   * @param status - the HTTP status, when the error came from an HTTP answer.
   */
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "HeartlineError";
  }
}

/** @internal The connection went before an answer came. */
export const lostError = (): HeartlineError => new HeartlineError("disconnected", "the connection was lost");
/** @internal The client is closed. */
export const closedError = (): HeartlineError => new HeartlineError("closed", "the client is closed");
/** @internal `getToken()` threw or rejected. */
export const tokenError = (err: unknown): HeartlineError => new HeartlineError("token_error", "getToken() failed: " + String(err));
