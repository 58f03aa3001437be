/** A raw HTTP/1.1 connection to a test server, for exchanges fetch cannot show (several requests on one connection, odd bytes). */
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
  async next(ms = 5000): Promise<{ status: number; head: string; headers: Map<string, string>; body: string }> {
    let answer: { status: number; head: string; headers: Map<string, string>; body: string } | undefined;
    await waitFor(
      () => {
        const end = this.buffered.indexOf("\r\n\r\n");
        if (end < 0) return false;
        const head = this.buffered.slice(0, end);
        const headers = new Map<string, string>();
        for (const line of head.split("\r\n").slice(1)) {
          const colon = line.indexOf(":");
          headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
        }
        const length = Number(headers.get("content-length") ?? "0");
        if (this.buffered.length < end + 4 + length) return false;
        const body = this.buffered.slice(end + 4, end + 4 + length);
        this.buffered = this.buffered.slice(end + 4 + length);
        answer = { status: Number(head.split(" ")[1]), head, headers, body };
        return true;
      },
      ms,
      "an answer",
    );
    return answer!;
  }
}

/** A `GET /poll` request with `query`, and `extra` header lines (each ending in CRLF). */
export const pollRequest = (query: string, extra = "") => `GET /poll?${query} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
