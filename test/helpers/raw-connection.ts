/** A raw HTTP/1.1 connection to a test server, for exchanges fetch cannot show (several requests on one connection, odd bytes). */
import assert from "node:assert/strict";
import net from "node:net";
import { waitFor } from "./server.js";

/** A raw HTTP/1.1 connection: sends text, reads answers one by one (by Content-Length). */
export class RawConnection {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  private buffered = "";

  constructor(port: number) {
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.setEncoding("latin1");
    this.socket.on("data", (d: string) => (this.buffered += d));
    this.socket.on("error", () => {});
    this.closed = new Promise<void>((r) => this.socket.once("close", () => r()));
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** Bytes received and not yet taken as an answer. */
  get unread(): string {
    return this.buffered;
  }

  /** The next complete answer: status, head, headers (lower-cased names) and body. */
  async next(ms = 5000): Promise<RawAnswer> {
    let answer: RawAnswer | undefined;
    await waitFor(() => (answer = this.take()) !== undefined, ms, "an answer");
    return answer!;
  }

  /** The first complete answer among the bytes received, taken off them; undefined while there is none. */
  take(): RawAnswer | undefined {
    const end = this.buffered.indexOf("\r\n\r\n");
    if (end < 0) return undefined;
    const head = this.buffered.slice(0, end);
    const headers = new Map<string, string>();
    for (const line of head.split("\r\n").slice(1)) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    const length = Number(headers.get("content-length") ?? "0");
    if (this.buffered.length < end + 4 + length) return undefined;
    const body = this.buffered.slice(end + 4, end + 4 + length);
    this.buffered = this.buffered.slice(end + 4 + length);
    return { status: Number(head.split(" ")[1]), head, headers, body };
  }
}

/** An answer read off a {@link RawConnection}. */
export interface RawAnswer {
  status: number;
  head: string;
  /** Lower-cased names. */
  headers: Map<string, string>;
  body: string;
}

/** A `GET /poll` request with `query`, and `extra` header lines (each ending in CRLF). */
export const pollRequest = (query: string, extra = "") => `GET /poll?${query} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

/** A connection whose first poll (timeout=0) has been answered: the next request is the one under test. */
export async function afterAPoll(port: number): Promise<RawConnection> {
  const c = new RawConnection(port);
  c.send(pollRequest("channel=public:warm&timeout=0"));
  assert.equal((await c.next()).status, 200);
  return c;
}

/** Status and error code of the answer to `request` ("closed": the connection closed without one). */
export async function answerTo(c: RawConnection, request: string | string[]): Promise<string> {
  const parts = typeof request === "string" ? [request] : request;
  for (let i = 0; i < parts.length; i++) {
    // Pieces of one request arrive as separate reads.
    if (i > 0) await new Promise((r) => setTimeout(r, 20));
    c.send(parts[i]!);
  }
  let closed = false;
  void c.closed.then(() => (closed = true));
  let answer: RawAnswer | undefined;
  await waitFor(() => (answer = c.take()) !== undefined || closed, 5000, "an answer or the end of the connection");
  if (answer === undefined) return c.unread === "" ? "closed" : `unparsed ${JSON.stringify(c.unread.slice(0, 40))}`;
  let code = "";
  try {
    code = (JSON.parse(answer.body) as { error?: { code?: string } }).error?.code ?? "";
  } catch {
    // Not JSON (node:http's own 400 has no body).
  }
  return `${answer.status} ${code}`.trim();
}
