/**
 * TLS for tests: self-signed certificates made by openssl in a temporary
 * directory, and HTTP/2 clients (node:http2) that read event streams and
 * JSON answers on one session.
 */
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from "node:http2";
import { join } from "node:path";
import { Recorded } from "./recorded.js";

export interface TestCert {
  certPath: string;
  keyPath: string;
  /** The certificate, PEM: the trust anchor (`ca`) of a client, being self-signed. */
  cert: Buffer;
  /** SHA-256 fingerprint as node:tls reports it (`AA:BB:…`). */
  fingerprint: string;
}

/** A self-signed P-256 certificate for localhost and 127.0.0.1, written as `<name>.crt` and `<name>.key` in `dir`. */
export function makeCert(dir: string, name: string): TestCert {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  execFileSync(
    "openssl",
    [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2",
      "-keyout", keyPath, "-out", certPath,
    ],
    { stdio: "ignore" },
  );
  const cert = readFileSync(certPath);
  return { certPath, keyPath, cert, fingerprint: new X509Certificate(cert).fingerprint256 };
}

/** An HTTP/2 session to `https://127.0.0.1:<port>` trusting `ca`; resolves once connected. */
export function h2Session(port: number, ca: Buffer | Buffer[]): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = connect(`https://127.0.0.1:${port}`, { ca });
    s.once("connect", () => {
      s.off("error", reject);
      s.on("error", () => {});
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** One event of a stream: its `event:` (undefined for a message), `id:` and data. */
export interface H2Event {
  event: string | undefined;
  id: string | undefined;
  data: string;
}

/** An event stream read on an HTTP/2 stream. */
export class H2Sse extends Recorded<H2Event> {
  status = 0;
  headers: Record<string, unknown> = {};
  ended = false;
  private buffer = "";

  constructor(readonly stream: ClientHttp2Stream) {
    super("an SSE event over HTTP/2");
    stream.setEncoding("utf8");
    stream.on("response", (h) => {
      this.status = Number(h[":status"]);
      this.headers = h;
    });
    stream.on("data", (d: string) => {
      this.buffer += d;
      let i: number;
      while ((i = this.buffer.indexOf("\n\n")) >= 0) {
        const block = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 2);
        const ev: H2Event = { event: undefined, id: undefined, data: "" };
        let hasData = false;
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) ev.event = line.slice(6).trim();
          else if (line.startsWith("id:")) ev.id = line.slice(3).trim();
          else if (line.startsWith("data:")) {
            ev.data += (hasData ? "\n" : "") + line.slice(5).trimStart();
            hasData = true;
          }
        }
        if (hasData) this.record(ev);
      }
    });
    stream.on("end", () => (this.ended = true));
    stream.on("close", () => (this.ended = true));
    stream.on("error", () => {});
  }

  /** The next message (an unnamed event) of `channel`, its data parsed. */
  async message(channel: string, timeoutMs = 5000): Promise<{ channel: string; data: unknown; offset: number }> {
    const ev = await this.next((e) => e.event === undefined && JSON.parse(e.data).channel === channel, timeoutMs);
    return JSON.parse(ev.data);
  }

  /** Waits for the first `event: position` (the stream is subscribed). */
  ready(timeoutMs = 5000): Promise<H2Event> {
    return this.next((e) => e.event === "position", timeoutMs);
  }
}

/** Opens `GET path` as an event stream on `session`. */
export function h2Sse(session: ClientHttp2Session, path: string, headers: OutgoingHttpHeaders = {}): H2Sse {
  return new H2Sse(session.request({ ":path": path, accept: "text/event-stream", ...headers }));
}

/** A request on `session` read to its end: status, headers and body (JSON parsed when it is JSON). */
export function h2Request(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: any }> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let head: Record<string, unknown> = {};
    let text = "";
    req.setEncoding("utf8");
    req.on("response", (h) => {
      status = Number(h[":status"]);
      head = h;
    });
    req.on("data", (d: string) => (text += d));
    req.on("end", () => {
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON
      }
      resolve({ status, headers: head, body: parsed });
    });
    req.on("error", reject);
    if (body !== undefined) req.end(body);
  });
}
