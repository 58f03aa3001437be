/**
 * Subscribers of every server and transport under test, as lean as a load
 * generator needs: each resolves `open` once the server has it subscribed
 * (so a message published afterwards must reach it), then counts the
 * payload markers it receives into the shared `counters`.
 *
 * | server    | ws                                  | sse                          | poll                                   |
 * |-----------|-------------------------------------|------------------------------|----------------------------------------|
 * | heartline | /ws?channel=, ready on `subscribed` | /sse?channel=, ready on `event: position` | /poll?channel= for a cursor, then held polls |
 * | socketio  | engine.io v4 over ws, ready on `ready` | —                         | —                                      |
 * | nchan     | /ws/<id>, ready on the primer       | /sse/<id>, ready on the primer | /lp/<id> with If-Modified-Since/If-None-Match |
 *
 * `sse-h2` (Heartline over HTTPS): one HTTP/2 session per subscriber, as
 * many separate browsers would open, with one `/sse?channel=` stream on it.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import type { Endpoint, Transport } from "./servers.js";

/** What every subscriber of this process adds to. */
export const counters = {
  /** Payload markers received. */
  received: 0,
  /** Connections the server ended while they should have stayed open. */
  dropped: 0,
  /** Failed requests after the subscriber was open. */
  errors: 0,
  /** Heartbeats seen (Heartline ping frames/events, engine.io pings). */
  heartbeats: 0,
  /** Set by a closed loop: called once `received` reaches `target`. */
  waiter: undefined as { target: number; done: () => void } | undefined,
  /**
   * Set by the latency scenario: publish → receive samples (ms); a message
   * with a negative time is a warm-up one, not sampled. `samples` is timed at
   * the first read of the event-loop turn that got it (when the generator
   * began on the batch of sockets the kernel handed over together); `handled`
   * when the generator reached that very socket, which adds the generator's
   * own work on the other subscribers of the batch before it.
   */
  latency: undefined as { samples: number[]; handled: number[] } | undefined,
  /**
   * Set by the steady stream: told of every delivery with the subscriber's
   * own count before it (`seen`, the ordinal of its previous message) and
   * how many markers arrived, so the generator knows how many messages have
   * reached every subscriber.
   */
  perSubscriber: undefined as ((seen: number, n: number) => void) | undefined,
};

/** What one subscriber has received: the steady stream counts per subscriber. */
export interface Tally {
  seen: number;
}

export interface Subscriber extends Tally {
  close(): void;
}

const MARK = Buffer.from('{"t":');
const COMMA = 0x2c;

/** The time of the first read in this turn of the event loop (0: none yet). */
let turnStart = 0;
const endTurn = (): void => {
  turnStart = 0;
};

/** Counts payload markers in `buf` received by `owner` (and times them in the latency scenario). */
function scan(buf: Buffer, owner: Tally): void {
  let i = buf.indexOf(MARK);
  if (i < 0) return;
  let n = 0;
  const lat = counters.latency;
  const now = lat ? performance.now() : 0;
  if (lat && turnStart === 0) {
    // Every socket read in this turn came from one poll of the kernel, which had it before this moment.
    turnStart = now;
    setImmediate(endTurn);
  }
  while (i >= 0) {
    n++;
    if (lat) {
      const end = buf.indexOf(COMMA, i + 5);
      const t = Number(buf.toString("latin1", i + 5, end));
      if (t >= 0) {
        lat.samples.push(turnStart - t);
        lat.handled.push(now - t);
      }
    }
    i = buf.indexOf(MARK, i + 5);
  }
  counters.received += n;
  counters.perSubscriber?.(owner.seen, n);
  owner.seen += n;
  const w = counters.waiter;
  if (w && counters.received >= w.target) {
    counters.waiter = undefined;
    w.done();
  }
}

const OPEN_TIMEOUT_MS = 30000;

/** Shared socket pool for polls: keep-alive, one socket per waiting poll. */
const pollAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 100000, scheduling: "lifo" });

function withTimeout<T>(p: Promise<T>, what: string, onTimeout: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => {
      onTimeout();
      reject(new Error(`${what}: not subscribed within ${OPEN_TIMEOUT_MS} ms`));
    }, OPEN_TIMEOUT_MS);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

// ---------------------------------------------------------------- WebSocket

const S = 0x73; // 's' of {"type":"subscribed"
const P = 0x70; // 'p' of {"type":"ping"}

class WsSubscriber implements Subscriber, Tally {
  seen = 0;
  ws: WebSocket;
  ready = false;
  closing = false;
  constructor(
    readonly server: Endpoint["server"],
    url: string,
    localAddress: string | undefined,
    private readonly onReady: () => void,
    private readonly onFail: (e: Error) => void,
  ) {
    this.ws = new WebSocket(url, { localAddress, perMessageDeflate: false, handshakeTimeout: OPEN_TIMEOUT_MS });
    this.ws.on("message", (data: Buffer) => this.frame(data));
    this.ws.on("error", (e) => {
      if (!this.ready) this.onFail(e);
    });
    this.ws.on("close", (code) => {
      if (!this.ready) this.onFail(new Error(`closed ${code} before subscribing`));
      else if (!this.closing) counters.dropped++;
    });
  }

  private setReady(): void {
    if (this.ready) return;
    this.ready = true;
    this.onReady();
  }

  private frame(data: Buffer): void {
    switch (this.server) {
      case "heartline":
        // {"type":"message"… / {"type":"subscribed"… / {"type":"ping"}: the type's first letter is byte 9.
        if (data[9] === P && data.length === 15) counters.heartbeats++;
        else if (!this.ready && data[9] === S) this.setReady();
        else scan(data, this);
        return;
      case "socketio": {
        // engine.io v4 packets: "0{…}" open, "2" ping, "4…" socket.io packets ("40" connect, "42[…]" event).
        const c0 = data[0];
        if (c0 === 0x32 && data.length === 1) {
          counters.heartbeats++;
          this.ws.send("3");
        } else if (c0 === 0x30) this.ws.send("40");
        else if (c0 === 0x34 && data[1] === 0x32) {
          if (!this.ready && data.length === 11 && data.toString() === '42["ready"]') this.setReady();
          else scan(data, this);
        }
        return;
      }
      case "nchan":
        // Every text frame is a message; the first is the primer.
        if (!this.ready) this.setReady();
        else scan(data, this);
        return;
    }
  }

  close(): void {
    this.closing = true;
    this.ws.terminate();
  }
}

function wsUrl(ep: Endpoint, channel: string): string {
  const base = `ws://${ep.host}:${ep.port}`;
  const c = encodeURIComponent(channel);
  if (ep.server === "heartline") return `${base}/ws?channel=${c}`;
  if (ep.server === "socketio") return `${base}/socket.io/?EIO=4&transport=websocket&room=${c}`;
  return `${base}/ws/${c}`;
}

// ---------------------------------------------------------------- Server-Sent Events

/** Reads an event stream's bytes, over whichever connection carries them: whole events only, the first one that says it is subscribed. */
abstract class SseReader implements Subscriber, Tally {
  seen = 0;
  ready = false;
  closing = false;
  private carry: Buffer | undefined;
  constructor(
    readonly server: Endpoint["server"],
    protected readonly onReady: () => void,
    protected readonly onFail: (e: Error) => void,
  ) {}

  abstract close(): void;

  protected ended(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.ready) counters.dropped++;
    else this.onFail(new Error("SSE stream ended before subscribing"));
  }

  protected chunk(chunk: Buffer): void {
    let buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    // Only whole events are read; the rest waits for the next chunk.
    const end = buf.lastIndexOf("\n\n");
    if (end < 0) {
      this.carry = buf;
      return;
    }
    this.carry = end + 2 < buf.length ? Buffer.from(buf.subarray(end + 2)) : undefined;
    buf = buf.subarray(0, end + 2);
    if (!this.ready) {
      const heard = buf.includes(this.server === "heartline" ? "event: position" : "data:");
      if (!heard) return;
      this.ready = true;
      this.onReady();
      // nchan's first event is the primer, without a marker; Heartline's position event has none either.
    }
    if (this.server === "heartline" && buf.includes("event: ping")) counters.heartbeats++;
    scan(buf, this);
  }
}

class SseSubscriber extends SseReader {
  req: http.ClientRequest;
  constructor(
    server: Endpoint["server"],
    ep: Endpoint,
    path: string,
    localAddress: string | undefined,
    onReady: () => void,
    onFail: (e: Error) => void,
  ) {
    super(server, onReady, onFail);
    this.req = http.get({ host: ep.host, port: ep.port, path, localAddress, agent: false, headers: { Accept: "text/event-stream" } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        this.onFail(new Error(`SSE answered HTTP ${res.statusCode}`));
        return;
      }
      res.on("data", (chunk: Buffer) => this.chunk(chunk));
      res.on("close", () => this.ended());
    });
    this.req.on("error", (e) => {
      if (!this.ready) this.onFail(e);
      else this.ended();
    });
  }

  close(): void {
    this.closing = true;
    this.req.destroy();
  }
}

// ---------------------------------------------------------------- long polling

class PollSubscriber implements Subscriber, Tally {
  seen = 0;
  ready = false;
  closing = false;
  req: http.ClientRequest | undefined;
  /** Heartline: the cursor. */
  private cursor = "";
  /** nchan: the position headers of the last answer. */
  private lastModified = "";
  private etag = "";
  constructor(
    private readonly ep: Endpoint,
    private readonly channel: string,
    private readonly localAddress: string | undefined,
    private readonly onReady: () => void,
    private readonly onFail: (e: Error) => void,
  ) {
    this.poll();
  }

  private path(): string {
    const c = encodeURIComponent(this.channel);
    if (this.ep.server === "heartline") return `/poll?channel=${c}` + (this.cursor ? `&cursor=${this.cursor}` : "");
    return `/lp/${c}`;
  }

  private poll(): void {
    if (this.closing) return;
    const headers: Record<string, string> = {};
    if (this.ep.server === "nchan" && this.lastModified) {
      headers["If-Modified-Since"] = this.lastModified;
      headers["If-None-Match"] = this.etag;
    }
    const req = http.get(
      { host: this.ep.host, port: this.ep.port, path: this.path(), localAddress: this.localAddress, agent: pollAgent, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => this.answered(res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
      },
    );
    req.on("error", (e) => {
      if (this.closing) return;
      if (!this.ready) {
        this.onFail(e);
        return;
      }
      counters.errors++;
      setTimeout(() => this.poll(), 100);
    });
    this.req = req;
  }

  private answered(res: http.IncomingMessage, body: Buffer): void {
    if (this.closing) return;
    const status = res.statusCode ?? 0;
    if (this.ep.server === "heartline") {
      if (status !== 200) {
        if (!this.ready) return this.onFail(new Error(`poll answered HTTP ${status}`));
        counters.errors++;
        setTimeout(() => this.poll(), 100);
        return;
      }
      const at = body.lastIndexOf('"cursor":"');
      const end = body.indexOf('"', at + 10);
      this.cursor = body.toString("latin1", at + 10, end);
      if (this.ready) scan(body, this);
    } else {
      if (status === 200) {
        this.lastModified = String(res.headers["last-modified"] ?? "");
        this.etag = String(res.headers.etag ?? "");
        if (this.ready) scan(body, this);
      } else if (status !== 304 && status !== 408) {
        if (!this.ready) return this.onFail(new Error(`long-poll answered HTTP ${status}`));
        counters.errors++;
        setTimeout(() => this.poll(), 100);
        return;
      }
    }
    // Heartline: the first answer (no cursor) gives the position; nchan: the first answer is the primer.
    if (!this.ready && (this.ep.server === "heartline" ? this.cursor !== "" : status === 200)) {
      this.ready = true;
      // Let the socket go back to the pool before it is asked for again.
      setImmediate(() => {
        this.poll();
        this.onReady();
      });
      return;
    }
    setImmediate(() => this.poll());
  }

  close(): void {
    this.closing = true;
    this.req?.destroy();
  }
}

/** An SSE stream on its own HTTP/2 session (TLS; the bench's certificate is not checked). */
class H2SseSubscriber extends SseReader {
  private readonly session: http2.ClientHttp2Session;
  constructor(ep: Endpoint, path: string, localAddress: string | undefined, onReady: () => void, onFail: (e: Error) => void) {
    super("heartline", onReady, onFail);
    this.session = http2.connect(`https://${ep.host}:${ep.port}`, {
      createConnection: () => tls.connect({ socket: net.connect({ host: ep.host, port: ep.port, localAddress }), ALPNProtocols: ["h2"], rejectUnauthorized: false }),
    });
    this.session.on("error", (e) => (this.ready ? this.ended() : this.onFail(e)));
    this.session.on("close", () => this.ended());
    const stream = this.session.request({ ":path": path, accept: "text/event-stream" });
    stream.on("response", (headers) => {
      if (headers[":status"] !== 200) this.onFail(new Error(`SSE over HTTP/2 answered ${headers[":status"]}`));
    });
    stream.on("data", (chunk: Buffer) => this.chunk(chunk));
    stream.on("error", () => this.ended());
    stream.on("close", () => this.ended());
  }

  close(): void {
    this.closing = true;
    this.session.destroy();
  }
}

/** Opens one subscriber of `channel` and resolves once the server has it subscribed. */
export function openSubscriber(ep: Endpoint, transport: Transport, channel: string, localAddress?: string): Promise<Subscriber> {
  let sub: Subscriber | undefined;
  const p = new Promise<Subscriber>((resolve, reject) => {
    const ok = (): void => resolve(sub!);
    const fail = (e: Error): void => {
      sub?.close();
      reject(e);
    };
    if (transport === "ws") {
      sub = new WsSubscriber(ep.server, wsUrl(ep, channel), localAddress, ok, fail);
    } else if (ep.server === "socketio") {
      throw new Error(`the Socket.IO peer serves WebSocket only, not ${transport}`);
    } else if (transport === "sse-h2") {
      if (ep.server !== "heartline" || !ep.tls) throw new Error("sse-h2 needs Heartline on HTTPS");
      sub = new H2SseSubscriber(ep, `/sse?channel=${encodeURIComponent(channel)}`, localAddress, ok, fail);
    } else if (transport === "sse") {
      const path = ep.server === "heartline" ? `/sse?channel=${encodeURIComponent(channel)}` : `/sse/${encodeURIComponent(channel)}`;
      sub = new SseSubscriber(ep.server, ep, path, localAddress, ok, fail);
    } else {
      sub = new PollSubscriber(ep, channel, localAddress, ok, fail);
    }
  });
  return withTimeout(p, `${ep.server} ${transport}`, () => sub?.close());
}
