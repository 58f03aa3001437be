/**
 * A raw HTTP exchange over node:net, for requests that fetch would refuse to
 * send (odd header bytes, unencoded query strings). Reads the status line and
 * headers, then the body by Content-Length; a streaming answer (101, SSE) is
 * returned as soon as its head has arrived, and the socket is cut.
 */
import { connect } from "node:net";

export interface RawAnswer {
  /** 0 when the server closed the connection without an answer. */
  status: number;
  head: string;
  body: string;
}

export function rawExchange(port: number, request: Buffer | string, whileWaiting?: () => void, timeoutMs = 5000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (a: RawAnswer | Error) => {
      if (done) return;
      done = true;
      clearInterval(poke);
      clearTimeout(timer);
      socket.destroy();
      if (a instanceof Error) reject(a);
      else resolve(a);
    };
    const poke = setInterval(() => whileWaiting?.(), 5);
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms to ${JSON.stringify(String(request).slice(0, 200))}`)), timeoutMs);
    const check = (closed: boolean) => {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) {
        if (closed) finish({ status: 0, head: buf.toString("latin1"), body: "" });
        return;
      }
      const head = buf.subarray(0, end).toString("latin1");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      const length = /\r\ncontent-length: *(\d+)/i.exec(head);
      const body = buf.subarray(end + 4);
      if (length) {
        if (body.length >= Number(length[1]) || closed) finish({ status, head, body: body.toString("utf8") });
      } else if (status === 101 || status === 200 || closed) {
        finish({ status, head, body: body.toString("utf8") });
      }
    };
    socket.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      check(false);
    });
    socket.on("close", () => check(true));
    socket.on("error", () => check(true));
    socket.write(request);
  });
}

/** The JSON error code of an answer, if it has one. */
export function errorCode(a: RawAnswer): string | undefined {
  try {
    return (JSON.parse(a.body) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}
