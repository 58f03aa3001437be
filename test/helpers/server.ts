/**
 * Test helpers: a real Heartline on port 0, real clients, and waiting
 * without fixed sleeps.
 */
import { once } from "node:events";
import { request, type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import { connect } from "node:net";
import WebSocket from "ws";
import { pino } from "pino";
import { after, before } from "node:test";
import { createHeartline, type Heartline, type HeartlineOptions, type RuntimeOptions } from "../../src/index.js";
import { Recorded } from "./recorded.js";

export { waitFor } from "./recorded.js";

export interface TestServer {
  hl: Heartline;
  port: number;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `ws://127.0.0.1:<port>` */
  wsUrl: string;
  close(): Promise<void>;
}

/** A silent logger unless HEARTLINE_TEST_LOG is set. */
export const quietLogger = () => pino({ level: process.env.HEARTLINE_TEST_LOG ?? "silent" });

export async function startServer(options: HeartlineOptions = {}, runtime: RuntimeOptions = {}): Promise<TestServer> {
  const hl = createHeartline({ host: "127.0.0.1", ...options }, { logger: quietLogger(), ...runtime });
  const address = await hl.listen(0, "127.0.0.1");
  const port = address.port;
  return {
    hl,
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    close: () => hl.close(0.5),
  };
}

/** A value, or a function giving it when the server starts (for values that earlier hooks make). */
export type AtStart<T> = T | (() => T);

/**
 * A real Heartline started before the tests of the enclosing suite (or file)
 * and closed after them: registers node:test `before`/`after` hooks where it
 * is called, and returns a handle whose `hl`, `port`, `url` and `wsUrl` are
 * those of the running server inside tests. Hooks run in the order they are
 * registered, so a hook that makes a value the options read comes first.
 */
export function withServer(options: AtStart<HeartlineOptions> = {}, runtime: AtStart<RuntimeOptions> = {}): TestServer {
  const handle = new ServerHandle();
  before(async () => {
    handle.server = await startServer(atStart(options), atStart(runtime));
  });
  after(() => handle.server?.close());
  return handle;
}

function atStart<T extends object>(value: AtStart<T>): T {
  return typeof value === "function" ? (value as () => T)() : value;
}

/** The server of a {@link withServer} fixture, read when a test runs. */
class ServerHandle implements TestServer {
  server: TestServer | undefined;

  private get started(): TestServer {
    if (!this.server) throw new Error("the server of withServer() is read before its before() hook ran");
    return this.server;
  }
  get hl(): Heartline {
    return this.started.hl;
  }
  get port(): number {
    return this.started.port;
  }
  get url(): string {
    return this.started.url;
  }
  get wsUrl(): string {
    return this.started.wsUrl;
  }
  async close(): Promise<void> {
    await this.started.close();
  }
}

export type Frame = { type: string; [k: string]: unknown };

/** A `ws` client that records every JSON frame and lets a test await the next matching one. */
export class WsClient extends Recorded<Frame> {
  closeCode: number | undefined;
  closeReason = "";
  readonly closed: Promise<void>;

  constructor(readonly ws: WebSocket) {
    super("a WebSocket frame");
    ws.on("message", (data, isBinary) => {
      if (!isBinary) this.record(JSON.parse(data.toString()) as Frame);
    });
    this.closed = new Promise((resolve) =>
      ws.on("close", (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve();
      }),
    );
    ws.on("error", () => {});
  }

  /** Every JSON frame received so far. */
  get frames(): Frame[] {
    return this.items;
  }

  static async connect(url: string, options?: WebSocket.ClientOptions): Promise<WsClient> {
    const c = new WsClient(new WebSocket(url, options));
    await once(c.ws, "open");
    return c;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** Messages (type "message") received so far. */
  messages(channel?: string): Frame[] {
    return this.frames.filter((f) => f.type === "message" && (channel === undefined || f.channel === channel));
  }

  close(): void {
    this.ws.close();
  }
}

/** GET a URL and parse its JSON body. */
export async function getJson(url: string, init?: RequestInit): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, body: jsonOrText(await res.text()) };
}

/** An answer's body: parsed when it is JSON, the text as it is otherwise. */
export function jsonOrText(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Reads a node:http answer to the end: status, headers, and the body through {@link jsonOrText}. */
export function readAnswer(res: IncomingMessage): Promise<HttpAnswer> {
  return new Promise((resolve) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c: string) => (text += c));
    res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: jsonOrText(text) }));
  });
}

/** Whether a new TCP connection to 127.0.0.1:port is refused. */
export function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
  });
}

/** POST /api/publish. */
export function publishHttp(server: TestServer, channel: unknown, data: unknown, headers: Record<string, string> = {}) {
  return getJson(`${server.url}/api/publish`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify({ channel, data }),
  });
}

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  /** The JSON body of a refusal; undefined after a 101. */
  body: any;
}

/** A WebSocket upgrade through node:http: 101, or the status and JSON body of the refusal. */
export function upgrade(port: number, path: string, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port,
      path,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        ...headers,
      },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: undefined });
    });
    req.on("response", (res) => void readAnswer(res).then(resolve));
    req.on("error", reject);
    req.end();
  });
}
