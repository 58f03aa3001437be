/** Writing answers: JSON bodies, SPEC §4 errors, and errors on a raw socket before a WebSocket upgrade. */
import { STATUS_CODES, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { HeartlineError } from "../errors.js";
import { HEAD_END, headerLine, headerLines, statusLine } from "../wire.js";

export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), "Cache-Control": "no-store" });
  res.end(text);
}

/** Turns any thrown value into the SPEC §4 body. Unknown errors become 500 and are reported through `log`. */
export function toHeartlineError(err: unknown, log: (err: unknown) => void): HeartlineError {
  if (err instanceof HeartlineError) return err;
  log(err);
  return new HeartlineError("internal_error", "unexpected error; it was logged", { cause: err });
}

export function sendError(res: ServerResponse, err: HeartlineError, headers?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, err.status, err.toJSON(), { ...headers, ...err.headers });
}

/** Answers a request taken out of node:http (an upgrade, a bare-socket SSE stream) with an HTTP error and closes the socket. */
export function sendRawError(socket: Duplex, err: HeartlineError, headers?: Record<string, string>): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify(err.toJSON());
  let head: string;
  try {
    head =
      statusLine(err.status, STATUS_CODES[err.status] ?? "Error") +
      dateLine() +
      headerLine("Content-Type", "application/json") +
      headerLine("Content-Length", Buffer.byteLength(body)) +
      headerLine("Connection", "close") +
      headerLines({ ...headers, ...err.headers }) +
      HEAD_END;
  } catch {
    // A header value that would split the response: nothing can be said safely.
    socket.destroy();
    return;
  }
  socket.end(head + body);
}

/**
 * `Date: <IMF-fixdate>\r\n` for a response head written on a bare socket
 * (RFC 9110 §6.6.1: an origin server with a clock sends it). For heads
 * written once per request (an error, the start of a stream); answers written
 * often use a {@link DateLine}.
 */
export function dateLine(now = Date.now()): string {
  return headerLine("Date", new Date(Math.floor(now / 1000) * 1000).toUTCString());
}

/** {@link dateLine} formatted once a second, as node:http does for its own responses; one per owner, nothing shared. */
export class DateLine {
  private second = -1;
  private text = "";

  line(now = Date.now()): string {
    const second = Math.floor(now / 1000);
    if (second !== this.second) {
      this.second = second;
      this.text = dateLine(now);
    }
    return this.text;
  }
}

/**
 * The bytes of the last answer written on a bare socket, kept for the next
 * one with the same parts: the polls that one pass answers at one cursor
 * get the same body (one string), the same header object, the same date and
 * connection lines, and so the same bytes, encoded once rather than once per
 * poll. A part that differs makes the bytes anew.
 */
export class LastAnswer {
  private fixed = "";
  private date = "";
  private connection = "";
  private headers: Readonly<Record<string, string>> | undefined;
  private body = "";
  private bytes: Buffer | undefined;

  /** `fixed` (status line and constant header lines), `date` and `connection` (header lines), `Content-Length: length`, `headers`, then `body`. */
  bytesOf(fixed: string, date: string, connection: string, length: number, headers: Readonly<Record<string, string>>, body: string): Buffer {
    if (this.bytes !== undefined && this.body === body && this.headers === headers && this.date === date && this.connection === connection && this.fixed === fixed) {
      return this.bytes;
    }
    this.bytes = Buffer.from(fixed + date + connection + headerLine("Content-Length", length) + headerLines(headers) + HEAD_END + body);
    this.fixed = fixed;
    this.date = date;
    this.connection = connection;
    this.headers = headers;
    this.body = body;
    return this.bytes;
  }
}
