/**
 * The Heartline server: builds the HTTP server (or attaches to one), routes
 * requests to transports and HTTP handlers, and owns the lifecycle: listen,
 * one ticker for every timed thing, drain and close.
 */
import { readFile } from "node:fs/promises";
import { createServer, ServerResponse, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { fileURLToPath } from "node:url";
import type { Registry } from "prom-client";
import { Auth } from "./auth/auth.js";
import { sweepTokens } from "./auth/expiry.js";
import { readRecordTtl, type Broker } from "./broker/broker.js";
import { MemoryBroker } from "./broker/memory.js";
import { RedisBroker } from "./broker/redis.js";
import { sleepOn, systemClock, type Clock } from "./clock.js";
import { configFromOptions, type HeartlineConfig, type HeartlineOptions, type TransportName } from "./config.js";
import { httpError } from "./errors.js";
import { assertChannelName } from "./hub/channel-name.js";
import { decodeCursorShared, type Position, type SharedCursor } from "./hub/cursor.js";
import { Hub } from "./hub/hub.js";
import { clientAddress } from "./http/client-address.js";
import { OriginPolicy } from "./http/origin.js";
import { Publisher, type PublishResult } from "./http/publish.js";
import { assertRoutePath, routePath } from "./http/request-path.js";
import { socketAdmitted, socketIdle, SocketLimits } from "./http/socket-limits.js";
import { sendError, sendJson, sendRawError, toHeartlineError } from "./http/respond.js";
import { createLogger, LogLimiter, type Logger } from "./log.js";
import { createMetrics } from "./metrics.js";
import { Stats } from "./stats.js";
import { ConnectionRegistry, type ServerContext } from "./transports/connection.js";
import { sweepClosing, sweepHeartbeats } from "./transports/heartbeat.js";
import { clearKeepAliveLimit, isPollRequest, keepsAlive, PollTransport, watchPollSocket, type PollOutput } from "./transports/poll.js";
import { isSseRequest, openSseResponse, openSseSocket, serveSse, StreamRequest, type SseOutput } from "./transports/sse.js";
import { WebSocketTransport } from "./transports/websocket.js";

/** Knobs for embedding and tests; not part of the CLI. */
export interface RuntimeOptions {
  /** Time source; tests pass a `ManualClock`. */
  clock?: Clock;
  /** A pino logger; by default one is made at `logLevel`. */
  logger?: Logger;
  /** A broker instead of the embedded memory broker. */
  broker?: Broker;
  /** Milliseconds between sweeps of the shared ticker. Default 250. */
  tickMs?: number;
  /** Milliseconds a client has to send complete request headers (slowloris guard). Default 10000. */
  headersTimeoutMs?: number;
  /** Milliseconds a client has to send a complete request, body included. Default 30000. Streams are not cut by it. */
  requestTimeoutMs?: number;
  /**
   * Wall-clock milliseconds since the epoch, the time base of token `exp`.
   * Default `Date.now`; with a custom `clock`, that clock anchored to `Date.now()` at start.
   */
  wallClock?: () => number;
}

const WEB_DIR = fileURLToPath(new URL("../web/", import.meta.url));
const PAGES: Record<string, { file: string; type: string }> = {
  "/": { file: "demo.html", type: "text/html; charset=utf-8" },
  "/demo": { file: "demo.html", type: "text/html; charset=utf-8" },
  "/dashboard": { file: "dashboard.html", type: "text/html; charset=utf-8" },
  // The browser client, built by `npm run build`; served in attach mode too.
  "/heartline.js": { file: "build/heartline.js", type: "text/javascript; charset=utf-8" },
};

interface SubscribeParams {
  channels: string[];
  /** The cursor's positions (shared: read them, never change them). */
  cursor: ReadonlyMap<string, Position> | undefined;
  /** The same cursor with its text. */
  shared: SharedCursor | undefined;
}

export class Heartline {
  readonly config: HeartlineConfig;
  readonly log: Logger;
  readonly hub: Hub;
  readonly stats = new Stats();
  readonly metrics: Registry;
  private readonly ctx: ServerContext;
  private readonly publisher: Publisher;
  private readonly ws: WebSocketTransport;
  private readonly poll: PollTransport;
  private readonly clock: Clock;
  private readonly auth: Auth;
  private readonly origins: OriginPolicy;
  /** Sockets of servers made by `listen()` that are not subscriber connections. */
  private readonly sockets: SocketLimits;
  private readonly stopTicker: () => void;
  private readonly servers = new Set<Server>();
  /** Servers made by `listen()`; attached servers belong to the app and are never closed here. */
  private readonly owned = new Set<Server>();
  private readonly runtime: RuntimeOptions;
  private lastBrokerSweep = 0;
  private closing: Promise<void> | undefined;
  /** `POST /api/publish` requests not answered yet: their bodies being read, their messages being stored. */
  private readonly publishRequests = new Set<IncomingMessage>();

  constructor(options: HeartlineOptions = {}, runtime: RuntimeOptions = {}) {
    this.config = configFromOptions(options);
    this.runtime = runtime;
    this.clock = runtime.clock ?? systemClock;
    this.log = runtime.logger ?? createLogger(this.config.logLevel);
    const tickMs = runtime.tickMs ?? 250;
    // Reads and checks the key file first: a bad one is a ConfigError at start.
    this.auth = new Auth(this.config, { clock: this.clock, wallClock: runtime.wallClock, tickMs, log: this.log, stats: this.stats });
    const { historySize, historyTtl, redis, maxChannels, maxHistoryBytes } = this.config;
    const readTtl = readRecordTtl(historyTtl, this.config.pollTimeout);
    const broker =
      runtime.broker ??
      (redis
        ? new RedisBroker({ url: redis, historySize, historyTtl, readTtl, maxChannels, clock: this.clock, logger: this.log })
        : new MemoryBroker({ historySize, historyTtl, readTtl, maxChannels, maxHistoryBytes, clock: this.clock }));
    this.hub = new Hub(broker);
    this.ctx = {
      config: this.config,
      hub: this.hub,
      clock: this.clock,
      log: this.log,
      logs: new LogLimiter(this.log, this.clock),
      stats: this.stats,
      registry: new ConnectionRegistry(this.config, this.stats),
      auth: this.auth,
      now: this.clock.now(),
      draining: false,
    };
    this.publisher = new Publisher(this.ctx);
    this.origins = new OriginPolicy(this.config.allowedOrigins);
    this.sockets = new SocketLimits({
      maxPending: this.config.maxPendingConnections,
      // Behind a trusted proxy every socket comes from the proxy: its own limits apply there.
      maxPendingPerIp: this.config.trustProxy ? 0 : this.config.maxPendingConnectionsPerIp,
      onRefused: (perAddress) => this.stats.rejected[perAddress ? "too_many_connections_per_ip" : "too_many_connections"]++,
    });
    this.ws = new WebSocketTransport(this.ctx, this.publisher);
    this.poll = new PollTransport(this.ctx, (out, err) => this.fail(out, err));
    this.metrics = createMetrics(this.ctx, () => broker.isReady());
    this.stopTicker = this.clock.every(tickMs, () => this.tick());
    if (!this.config.apiKey) {
      this.log.warn("no --api-key: publishing over HTTP is accepted only from loopback addresses");
    }
  }

  /** Open subscriber connections (WS + SSE + waiting polls) on this process. */
  get connections(): number {
    return this.ctx.registry.total;
  }

  /** Connection counts by transport. */
  get connectionsByTransport(): Readonly<Record<TransportName, number>> {
    return this.ctx.registry.byTransport;
  }

  /**
   * Open sockets of the servers made by `listen()`, those among them that are
   * not subscriber connections (pending), and the peer addresses holding pending ones.
   */
  get socketCounts(): { open: number; pending: number; addresses: number } {
    return this.sockets.counts;
  }

  /** Publishes `data` (any JSON value) to `channel`; resolves once stored. */
  publish(channel: string, data: unknown): Promise<PublishResult> {
    if (this.closing || this.ctx.draining) return Promise.reject(httpError("shutting_down", "this Heartline instance is closed"));
    return this.publisher.publish(channel, data);
  }

  /**
   * Serves Heartline's routes on an existing server. Requests for other paths
   * go to the server's previous `request` listeners (and upgrades on other
   * paths to its previous `upgrade` listeners), so an app keeps its own routes.
   */
  attach(server: Server, { pages = false }: { pages?: boolean } = {}): Server {
    const previous = server.listeners("request") as Array<(req: IncomingMessage, res: ServerResponse) => void>;
    const previousUpgrade = server.listeners("upgrade") as Array<(req: IncomingMessage, socket: Duplex, head: Buffer) => void>;
    server.removeAllListeners("request");
    server.removeAllListeners("upgrade");
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      if (!this.handles(req, pages) && previous.length > 0) {
        for (const l of previous) l.call(server, req, res);
        return;
      }
      if (req instanceof StreamRequest) clearKeepAliveLimit(req.socket, server);
      this.handleRequest(req, res, pages);
    });
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (req instanceof StreamRequest) {
        // `GET /sse` and `GET /poll` on a server made by `listen()`, handed over by node:http like an upgrade (see StreamRequest).
        if (isPollRequest(req.method, req.url)) {
          this.handlePollSocket(req, socket as Socket, head);
          return;
        }
        clearKeepAliveLimit(socket as Socket, server);
        if (isSseRequest(req.method, req.url)) {
          this.handleSseSocket(req, socket as Socket);
          return;
        }
      }
      if (routePath(req.url) !== "/ws" && previousUpgrade.length > 0) {
        for (const l of previousUpgrade) l.call(server, req, socket, head);
        return;
      }
      this.handleUpgrade(req, socket, head);
    });
    server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (err.code === "ECONNRESET" || !socket.writable) {
        socket.destroy();
        return;
      }
      const e =
        err.code === "HPE_HEADER_OVERFLOW"
          ? httpError("headers_too_large", "the request headers are too large")
          : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
            ? httpError("request_timeout", "the request did not arrive in time")
            : httpError("bad_request", "malformed HTTP request");
      sendRawError(socket, e);
    });
    this.servers.add(server);
    return server;
  }

  /** Creates a server with every route (pages included) and listens on `port` (0 = any). */
  async listen(port = this.config.port, host = this.config.host): Promise<AddressInfo> {
    const server = createServer({
      IncomingMessage: StreamRequest,
      headersTimeout: this.runtime.headersTimeoutMs ?? 10_000,
      requestTimeout: Math.max(this.runtime.requestTimeoutMs ?? 30_000, this.runtime.headersTimeoutMs ?? 10_000),
      connectionsCheckingInterval: Math.min(1000, this.runtime.headersTimeoutMs ?? 1000),
      // Longer than the proxy's own idle timeout for upstream connections, so
      // the proxy, never Heartline, closes an idle kept-alive connection: a
      // proxy does not retry a POST on a connection closed under it.
      keepAliveTimeout: this.config.keepAliveTimeout * 1000,
    });
    const broker = this.hub.broker;
    if (broker instanceof RedisBroker && !(await broker.waitReady(5000))) {
      this.log.warn("Redis is not reachable yet; serving with /readyz 503 and publishes answered 503 until it is");
    }
    this.attach(server as unknown as Server, { pages: true });
    this.owned.add(server);
    server.on("connection", (socket: Socket) => this.sockets.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    this.log.info({ port: address.port, host: address.address }, "listening");
    return address;
  }

  /** The first listening server's port. */
  get port(): number | undefined {
    for (const s of this.servers) {
      const a = s.address();
      if (a && typeof a === "object") return a.port;
    }
    return undefined;
  }

  /**
   * Stops accepting, lets publishes under way finish and be answered, tells
   * every client to reconnect elsewhere (WS 1012, SSE ended, waiting polls
   * answered), and resolves when all are gone or after `drainTimeout`
   * seconds, when the rest are cut. A publish whose body has not fully
   * arrived by then is cut unanswered and never stored; one being stored is
   * answered first, so no message is stored without its answer.
   */
  async drain(timeoutSeconds = this.config.drainTimeout): Promise<void> {
    const ctx = this.ctx;
    ctx.draining = true;
    for (const s of this.owned) s.close();
    // Waits on the injected clock (a ManualClock's sleep takes real time too, so a test's close ends).
    const clock = this.clock;
    const deadline = clock.now() + timeoutSeconds * 1000;
    const until = async (done: () => boolean) => {
      while (!done() && clock.now() < deadline) await sleepOn(clock, 20);
    };
    // A client publish being stored is answered on its WebSocket before that socket is closed.
    await until(() => this.publisher.storing.size === 0);
    await new Promise((r) => setImmediate(r));
    for (const c of [...ctx.registry.live]) c.close("service_restart");
    this.poll.drain();
    await until(() => ctx.registry.total === 0 && ctx.registry.closing.size === 0 && this.publishRequests.size === 0);
    // Past the deadline: a body still arriving is cut (its message is never stored) ...
    for (const req of this.publishRequests) if (!req.complete) req.socket.destroy();
    // ... and a message being stored gets its answer (the broker bounds how long that takes).
    await this.publisher.storing.idle();
    await new Promise((r) => setImmediate(r));
    for (const c of [...ctx.registry.closing]) c.terminate();
    for (const c of [...ctx.registry.live]) c.terminate();
    for (const s of this.owned) s.closeAllConnections();
  }

  /** Drains (briefly, by default) and releases everything. Safe to call twice. */
  close(timeoutSeconds = 1): Promise<void> {
    this.closing ??= (async () => {
      await this.drain(timeoutSeconds);
      this.stopTicker();
      this.ws.wss.close();
      await this.hub.broker.close();
      await Promise.all([...this.owned].map((s) => new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()))));
    })();
    return this.closing;
  }

  /** One sweep of everything timed: heartbeats, poll holds, lingering closes, history expiry. */
  private tick(): void {
    const now = this.clock.now();
    const ctx = this.ctx;
    ctx.now = now;
    try {
      sweepHeartbeats(ctx.registry.live, now, this.config.heartbeatInterval * 1000, this.config.heartbeatTimeout * 1000);
      sweepClosing(ctx.registry.closing, now);
      if (this.auth.enabled) sweepTokens(ctx.registry.live, this.auth.now(), this.auth.marginMs);
      this.poll.sweep(now);
      ctx.logs.sweep(now);
      if (now - this.lastBrokerSweep >= 1000) {
        this.lastBrokerSweep = now;
        this.hub.broker.sweep(now, this.hub.inUse);
      }
    } catch (err) {
      this.log.error({ err }, "error in the ticker");
    }
  }

  private handles(req: IncomingMessage, pages: boolean): boolean {
    const path = routePath(req.url);
    if (path === undefined) return false;
    if (pages && (path in PAGES)) return true;
    return (
      path === "/ws" ||
      path === "/sse" ||
      path === "/poll" ||
      path === "/healthz" ||
      path === "/readyz" ||
      path === "/metrics" ||
      path === "/heartline.js" ||
      path === "/api/publish" ||
      path.startsWith("/api/channels/")
    );
  }

  /** An error while serving a request, answered through its response or, for one taken out of node:http, on its socket. */
  private fail(out: ServerResponse | Socket, err: unknown, headers?: Record<string, string>): void {
    const e = toHeartlineError(err, (error) => this.ctx.logs.write("request_error", "error", { err: error }, "unexpected error while serving a request"));
    if (e.code === "broker_unavailable") this.stats.brokerErrors++;
    if (out instanceof ServerResponse) {
      // Refused before its body was read (e.g. a publish without a credential): close the
      // connection after the answer rather than let node:http read and drop the rest.
      sendError(out, e, out.req.complete ? headers : { ...headers, Connection: "close" });
    } else sendRawError(out, e, headers);
  }

  /** CORS: which origins may use the API from a browser (see OriginPolicy). */
  private corsHeaders(req: IncomingMessage): Record<string, string> {
    return this.origins.corsHeaders(req);
  }

  /** Refuses (and counts) a request whose Origin is not allowed. */
  private assertOrigin(req: IncomingMessage): void {
    if (this.origins.allows(req)) return;
    this.stats.rejected.origin_not_allowed++;
    throw httpError("origin_not_allowed", "this Origin is not in --allowed-origins");
  }

  private handleRequest(req: IncomingMessage, res: ServerResponse, pages: boolean): void {
    const cors = this.corsHeaders(req);
    this.route(req, res, cors, pages).catch((err) => this.fail(res, err, cors));
  }

  private async route(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>, pages: boolean): Promise<void> {
    // Routes are chosen by the path exactly as received (see request-path.ts).
    const path = assertRoutePath(req.url);
    const method = req.method ?? "GET";
    if (method === "OPTIONS") {
      if (!this.origins.allows(req)) throw httpError("origin_not_allowed", "this Origin is not in --allowed-origins");
      res.writeHead(204, {
        ...cors,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, Last-Event-ID",
        "Access-Control-Max-Age": "600",
      });
      res.end();
      return;
    }
    this.assertOrigin(req);
    const get = method === "GET" || method === "HEAD";
    switch (path) {
      case "/healthz":
        this.allow(get, "GET");
        return sendJson(res, 200, { status: "ok" }, cors);
      case "/readyz":
        this.allow(get, "GET");
        if (this.ctx.draining) throw httpError("shutting_down", "the server is draining");
        if (!this.hub.broker.isReady()) throw httpError("broker_unavailable", "the broker is not reachable");
        return sendJson(res, 200, { status: "ready" }, cors);
      case "/metrics": {
        this.allow(get, "GET");
        const text = await this.metrics.metrics();
        res.writeHead(200, { ...cors, "Content-Type": this.metrics.contentType });
        res.end(text);
        return;
      }
      case "/api/publish": {
        this.allow(method === "POST", "POST");
        if (this.ctx.draining) throw httpError("shutting_down", "the server is draining; publish to another node");
        // Counted until answered (or gone): drain lets it finish.
        this.publishRequests.add(req);
        res.once("close", () => this.publishRequests.delete(req));
        const result = await this.publisher.handleHttp(req);
        return sendJson(res, 200, result, cors);
      }
      case "/sse":
        this.allow(get, "GET");
        return this.sse(req, parseUrl(req), () => openSseResponse(res, cors));
      case "/poll":
        this.allow(get, "GET");
        return this.longPoll(req, parseUrl(req), res, cors);
      case "/ws":
        this.offered("ws");
        throw httpError("bad_request", "/ws expects a WebSocket upgrade");
    }
    if (path.startsWith("/api/channels/")) {
      this.allow(get, "GET");
      let name: string;
      try {
        name = decodeURIComponent(path.slice("/api/channels/".length));
      } catch {
        throw httpError("bad_channel", "the channel name is not valid percent-encoding");
      }
      const channel = assertChannelName(name);
      const r = await this.hub.broker.read(channel);
      return sendJson(res, 200, { channel, epoch: r.epoch, offset: r.offset, subscribers: this.hub.subscriberCount(channel) }, cors);
    }
    if ((pages || path === "/heartline.js") && path in PAGES) {
      this.allow(get, "GET");
      const page = PAGES[path]!;
      let body: Buffer;
      try {
        body = await readFile(WEB_DIR + page.file);
      } catch {
        throw httpError("not_found", path === "/heartline.js" ? "/heartline.js is not built; run npm run build" : `${path} is not built`);
      }
      // cors: a module script from another origin is fetched in CORS mode.
      res.writeHead(200, { ...cors, "Content-Type": page.type, "Content-Length": body.length, "Cache-Control": "no-cache" });
      res.end(method === "HEAD" ? undefined : body);
      return;
    }
    throw httpError("not_found", `no route for ${method} ${path.slice(0, 100)}`);
  }

  private allow(ok: boolean, allowed: string): void {
    if (!ok) throw httpError("method_not_allowed", `this endpoint accepts ${allowed}`, { Allow: allowed });
  }

  private offered(t: TransportName): void {
    if (!this.config.transports.includes(t)) throw httpError("transport_disabled", `the ${t} transport is disabled on this server (--transports)`);
  }

  private notDraining(): void {
    if (this.ctx.draining) throw httpError("shutting_down", "the server is draining; reconnect to another node", { "Retry-After": "1" });
  }

  /** `channel=` (repeated), `cursor=` (or `lastEventId=`, or the `Last-Event-ID` header) of a subscribe request. */
  private subscribeParams(url: URL, needChannel: boolean, headerCursorValue?: string): SubscribeParams {
    const channels = [...new Set(url.searchParams.getAll("channel"))];
    if (needChannel && channels.length === 0) throw httpError("bad_request", "give at least one channel= parameter");
    const max = this.config.maxChannelsPerConnection;
    if (channels.length > max) throw httpError("too_many_channels", `at most ${max} channels per connection (--max-channels-per-connection)`);
    for (const c of channels) assertChannelName(c);
    const raw = headerCursorValue ?? url.searchParams.get("lastEventId") ?? url.searchParams.get("cursor") ?? undefined;
    const shared = raw === undefined || raw === "" ? undefined : decodeCursorShared(raw);
    return { channels, cursor: shared?.positions, shared };
  }

  private pollHold(url: URL): number {
    const t = url.searchParams.get("timeout");
    if (t === null) return this.config.pollTimeout;
    const n = Number(t);
    if (t.trim() === "" || !Number.isFinite(n) || n < 0) throw httpError("bad_request", "timeout must be a number of seconds ≥ 0");
    return Math.min(n, this.config.pollTimeout);
  }

  /** `GET /sse` taken out of node:http: the same checks as the request route, errors answered on the socket. */
  private handleSseSocket(req: IncomingMessage, socket: Socket): void {
    socket.on("error", noop);
    const cors = this.corsHeaders(req);
    this.openSse(req, socket, cors).catch((err) => this.fail(socket, err, cors));
  }

  private async openSse(req: IncomingMessage, socket: Socket, cors: Record<string, string>): Promise<void> {
    this.assertOrigin(req);
    return this.sse(req, parseUrl(req), () => openSseSocket(socket, cors));
  }

  /** `GET /sse`, whichever way it came: the checks, then the stream `open` starts. */
  private async sse(req: IncomingMessage, url: URL, open: () => SseOutput): Promise<void> {
    this.offered("sse");
    this.notDraining();
    const params = this.subscribeParams(url, true, headerCursor(req));
    const claims = await this.auth.authorizeSubscribe(req, url, params.channels);
    this.notDraining();
    const ip = clientAddress(req, this.config.trustProxy);
    this.ctx.registry.admit("sse", ip);
    socketAdmitted(req.socket);
    const out = open();
    // Through the response, a stream that ends leaves the connection open: idle again.
    if (out instanceof ServerResponse) out.once("finish", streamEnded);
    return serveSse(this.ctx, out, ip, params.channels, params.cursor, claims);
  }

  /**
   * `GET /poll` taken out of node:http: the same checks as the request route,
   * errors answered on the socket (which then closes); an answer leaves the
   * kept-alive connection to node:http again.
   */
  private handlePollSocket(req: IncomingMessage, socket: Socket, head: Buffer): void {
    watchPollSocket(socket);
    const cors = this.corsHeaders(req);
    this.openPoll(req, socket, head, cors).catch((err) => this.fail(socket, err, cors));
  }

  private async openPoll(req: IncomingMessage, socket: Socket, head: Buffer, cors: Record<string, string>): Promise<void> {
    const url = parseUrl(req);
    this.assertOrigin(req);
    return this.longPoll(req, url, socket, cors, keepsAlive(req), head);
  }

  /** `GET /poll`, whichever way it came: the checks, then the poll answered (or held) on `out`. */
  private async longPoll(req: IncomingMessage, url: URL, out: PollOutput, cors: Record<string, string>, keepAlive = false, head?: Buffer): Promise<void> {
    this.offered("poll");
    this.notDraining();
    const params = this.subscribeParams(url, true);
    const hold = this.pollHold(url);
    const claims = this.auth.enabled ? await this.auth.authorizeSubscribe(req, url, params.channels) : undefined;
    // The client may have gone while its token was checked.
    if (out.destroyed) return;
    this.notDraining();
    return this.poll.serve(out, clientAddress(req, this.config.trustProxy), params.channels, params.shared, hold, cors, claims, keepAlive, head);
  }

  private handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", noop);
    this.upgrade(req, socket, head).catch((err) => {
      const e = toHeartlineError(err, (error) => this.ctx.logs.write("upgrade_error", "error", { err: error }, "unexpected error during a WebSocket upgrade"));
      sendRawError(socket, e);
    });
  }

  /** Checks an upgrade (origin, parameters, token, limits) before `ws` completes it; any throw is answered as HTTP. */
  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (assertRoutePath(req.url) !== "/ws") throw httpError("not_found", "WebSocket connections are served on /ws");
    this.offered("ws");
    this.notDraining();
    this.assertOrigin(req);
    const url = parseUrl(req);
    const params = this.subscribeParams(url, false);
    const claims = await this.auth.authorizeSubscribe(req, url, params.channels);
    if (socket.destroyed) return;
    this.notDraining();
    const ip = clientAddress(req, this.config.trustProxy);
    this.ctx.registry.admit("ws", ip);
    socketAdmitted(socket);
    this.ws.accept(req, socket, head, ip, { ...params, claims });
  }
}

function noop(): void {}

function streamEnded(this: ServerResponse): void {
  socketIdle(this.req.socket);
}

function parseUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? "/", "http://heartline.invalid");
  } catch {
    throw httpError("bad_request", "the request URL is malformed");
  }
}

function headerCursor(req: IncomingMessage): string | undefined {
  const h = req.headers["last-event-id"];
  return typeof h === "string" && h !== "" ? h : undefined;
}
