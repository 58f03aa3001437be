/**
 * Client test helpers: a manual clock for the client's timers, Node's
 * WebSocket and EventSource for the client, and a recorder of what a
 * subscription hands to its handler.
 */
import assert from "node:assert/strict";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { EventSource } from "eventsource";
import { createServer as createHttpServer, type IncomingMessage } from "node:http";
import { MessageChannel, type MessagePort } from "node:worker_threads";
import WebSocket, { WebSocketServer } from "ws";
import { Heartline, type ClientClock, type HeartlineOptions, type Message, type Position, type ResetInfo, type Subscription, type TimerHandle } from "../../src/client/index.js";
import { after, before } from "node:test";
import type { HeartlineOptions as ServerOptions, RuntimeOptions } from "../../src/index.js";
import { createHub } from "../../src/client/shared.js";
import { publishHttp, waitFor, withServer, type TestServer } from "../helpers/server.js";

/** A clock whose timers fire only when {@link ManualClientClock.advance} passes them. */
export class ManualClientClock implements ClientClock {
  private time = 0;
  private seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void; ms: number }>();

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { at: this.time + ms, fn, ms });
    return id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as number);
  }

  /** Delays (as scheduled) of the timers still pending. */
  pending(): number[] {
    return [...this.timers.values()].map((t) => t.ms);
  }

  /** Moves time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let dueId: number | undefined;
      let due: { at: number; fn: () => void } | undefined;
      for (const [id, t] of this.timers) if (t.at <= end && (!due || t.at < due.at)) (dueId = id), (due = t);
      if (!due) break;
      this.timers.delete(dueId!);
      this.time = due.at;
      due.fn();
    }
    this.time = end;
  }
}

/** Options that make the client work on Node 20. */
export const nodeEnv: Pick<HeartlineOptions, "WebSocket" | "EventSource"> = { WebSocket, EventSource };

/** A client on `url` with Node's constructors and `options`. */
export function client(url: string, options: HeartlineOptions = {}): Heartline {
  return new Heartline(url, { ...nodeEnv, ...options });
}

/** Records what a subscription delivers. */
export class Recorder {
  readonly messages: Message[] = [];
  readonly resets: ResetInfo[] = [];
  readonly handler = (m: Message): void => {
    this.messages.push(m);
  };
  readonly onReset = (r: ResetInfo): void => {
    this.resets.push(r);
  };

  /** Subscribes this recorder to `channel` of `hl`, resets included; returns the subscription. */
  subscribe(hl: Heartline, channel: string, since?: Position): Subscription {
    return hl.subscribe(channel, this.handler, since).on("reset", this.onReset);
  }

  offsets(): number[] {
    return this.messages.map((m) => m.offset);
  }

  /** Waits until `n` messages arrived. */
  until(n: number, timeoutMs = 5000): Promise<true> {
    return waitFor(() => this.messages.length >= n || undefined, timeoutMs, `${n} messages (have ${this.messages.length})`);
  }
}

/** Waits until the client is connected (on `transport`, when given). */
export function connected(hl: Heartline, transport?: string, timeoutMs = 5000): Promise<true> {
  return waitFor(
    () => (hl.state === "connected" && (transport === undefined || hl.transport === transport)) || undefined,
    timeoutMs,
    `connected${transport ? " on " + transport : ""} (state ${hl.state}, transport ${hl.transport})`,
  );
}

/**
 * A TCP proxy in front of a server that a test can cut (every connection
 * dropped at once), block by request path (new requests on that path are
 * dropped before reaching the server) and read (the request lines it saw).
 */
export class CutProxy {
  readonly requests: string[] = [];
  private readonly pairs = new Set<[Socket, Socket]>();
  /** Accepted connections that have not sent a byte yet (an HTTP client may open one and keep it idle). */
  private readonly silent = new Set<Socket>();
  private readonly blocked = new Set<string>();
  private blockAll = false;
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** `http://127.0.0.1:<proxy port>` */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(targetPort: number): Promise<CutProxy> {
    let proxy: CutProxy | undefined;
    const server = createServer((client) => proxy!.accept(client, targetPort));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    proxy = new CutProxy(server, (server.address() as AddressInfo).port);
    return proxy;
  }

  private accept(client: Socket, targetPort: number): void {
    client.on("error", () => {});
    this.silent.add(client);
    client.once("close", () => this.silent.delete(client));
    client.once("data", (first) => {
      this.silent.delete(client);
      if (!this.pass(first)) {
        client.destroy();
        return;
      }
      const upstream = connect(targetPort, "127.0.0.1");
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      upstream.on("error", () => {});
      const drop = (): void => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on("close", drop);
      upstream.on("close", drop);
      upstream.write(first);
      // Later requests on a kept-alive connection are read (and blocked) too.
      client.on("data", (chunk: Buffer) => {
        if (this.pass(chunk)) upstream.write(chunk);
        else drop();
      });
      upstream.pipe(client);
    });
  }

  /** Records the request lines in `chunk`; false when one of them is blocked. */
  private pass(chunk: Buffer): boolean {
    let ok = true;
    for (const m of chunk.toString("latin1").matchAll(/^(?:GET|POST|HEAD|OPTIONS) (\S+) HTTP\/1\.1$/gm)) {
      this.requests.push(m[0]);
      const path = m[1]!.split("?")[0]!;
      if (this.blockAll || this.blocked.has(path)) ok = false;
    }
    return ok;
  }

  /** Drops every open connection, those that have sent nothing yet included. */
  cut(): void {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    for (const c of this.silent) c.destroy();
    this.silent.clear();
  }

  /** Drops new requests on `paths` (all requests when none are given) until {@link CutProxy.unblock}. */
  block(...paths: string[]): void {
    if (paths.length === 0) this.blockAll = true;
    for (const p of paths) this.blocked.add(p);
  }

  unblock(): void {
    this.blockAll = false;
    this.blocked.clear();
  }

  /** Open proxied connections. */
  get open(): number {
    return this.pairs.size;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/**
 * Cuts every proxied connection and waits until the client is disconnected.
 * With `block`, new requests are refused first until `proxy.unblock()`: those
 * on the paths given, or all of them for an empty list (as CutProxy.block).
 */
export async function dropConnection(proxy: CutProxy, hl: Heartline, block?: string[]): Promise<void> {
  if (block) proxy.block(...block);
  const gone = nextState(hl, "disconnected");
  proxy.cut();
  await gone;
}

/** Resolves at the client's next transition to `state` (create it before causing the transition). */
export function nextState(hl: Heartline, state: string, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for state ${state}`)), timeoutMs);
    const on = ({ to }: { to: string }): void => {
      if (to !== state) return;
      clearTimeout(timer);
      hl.off("state", on);
      resolve();
    };
    hl.on("state", on);
  });
}

/**
 * A real server behind a {@link CutProxy}, started before the suite and closed
 * after it. Read `fx.s` and `fx.proxy` inside tests.
 */
export function serverBehindProxy(options: ServerOptions = {}, runtime: RuntimeOptions = {}): { readonly s: TestServer; readonly proxy: CutProxy } {
  const fx = {} as { s: TestServer; proxy: CutProxy };
  // Registered before the server's own hook, so the proxy closes first.
  after(() => fx.proxy.close());
  fx.s = withServer(options, runtime);
  before(async () => {
    fx.proxy = await CutProxy.start(fx.s.port);
  });
  return fx;
}

/** Waits until the server side holds the client's subscription (stream or held poll). */
export function onServer(s: TestServer, channel: string, transport: string): Promise<true> {
  return waitFor(
    () => (transport === "poll" ? s.hl.hub.totalWaiters > 0 : s.hl.hub.subscriberCount(channel) === 1) || undefined,
    5000,
    `the ${transport} subscription on the server`,
  );
}

/** Publishes `{ i }` for i = from…to over HTTP, checking each lands at offset i. */
export async function publishMany(s: TestServer, channel: string, from: number, to: number): Promise<void> {
  for (let i = from; i <= to; i++) {
    const r = await publishHttp(s, channel, { i });
    assert.equal(r.status, 200);
    assert.equal(r.body.offset, i);
  }
}

/**
 * A WebSocket server that plays `script` to every connection (the `n`th, from
 * 1), started before the suite and closed after it. Read `fx.url`, the frames
 * clients sent (`fx.frames`) and the request URLs (`fx.upgrades`) inside tests.
 */
export function scriptedWsServer(script: (ws: WebSocket, n: number) => void): { readonly url: string; readonly frames: string[]; readonly upgrades: string[] } {
  const fx = { url: "", frames: [] as string[], upgrades: [] as string[] };
  const server = createHttpServer();
  const wss = new WebSocketServer({ server });
  wss.on("connection", (ws: WebSocket, req: IncomingMessage) => {
    fx.upgrades.push(req.url ?? "");
    ws.on("message", (d) => fx.frames.push(d.toString()));
    script(ws, fx.upgrades.length);
  });
  before(async () => {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    fx.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    wss.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return fx;
}

/**
 * A SharedWorker stand-in: the worker side (createHub) behind real
 * MessagePorts in this process, one hub per worker name, as a browser keeps
 * one SharedWorker per (script, name). Install `SharedWorker` as a global;
 * `close()` closes every port it made.
 */
export function fakeSharedWorkers(): { SharedWorker: new (url: string | URL, options: { name: string }) => { port: MessagePort }; close(): void } {
  const hubs = new Map<string, ReturnType<typeof createHub>>();
  const ports: MessagePort[] = [];
  class SharedWorker {
    readonly port: MessagePort;
    constructor(_url: string | URL, options: { name: string }) {
      let hub = hubs.get(options.name);
      if (!hub) hubs.set(options.name, (hub = createHub()));
      const { port1, port2 } = new MessageChannel();
      const serve = hub;
      port2.on("message", (m) => serve(port2 as unknown as { postMessage(m: unknown): void } as never, m));
      ports.push(port1, port2);
      this.port = port1;
    }
  }
  return { SharedWorker, close: () => ports.forEach((p) => p.close()) };
}
