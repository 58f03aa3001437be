/**
 * The Heartline server's lifecycle: builds the services, makes the HTTP
 * server (or attaches to one) and wires its listeners to the front door
 * (src/server/: the route table, admission, the handlers), runs one ticker
 * for every timed thing, drains and closes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Http2SecureServer } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Registry } from "prom-client";
import { Auth } from "./auth/auth.js";
import { sweepTokens } from "./auth/expiry.js";
import type { Broker } from "./broker/broker.js";
import { createBroker } from "./broker/create.js";
import { sleepOn, systemClock, type Clock } from "./clock.js";
import { configFromOptions, type HeartlineConfig, type HeartlineOptions, type TransportName } from "./config.js";
import { httpError } from "./errors.js";
import { broadcast, type BroadcastResult } from "./http/broadcast.js";
import { EventFeed } from "./hub/event-feed.js";
import { presenceOf, type PresenceSnapshot } from "./server/presence-api.js";
import { Hub } from "./hub/hub.js";
import { HookRunner } from "./hooks/runner.js";
import type { Hooks } from "./hooks/types.js";
import { OriginPolicy } from "./http/origin.js";
import { Publisher, type PublishOptions, type PublishResult } from "./http/publish.js";
import { carrierOf } from "./http/h2.js";
import { SocketLimits, type SocketCounts } from "./http/socket-limits.js";
import { sendRawError } from "./http/respond.js";
import { createLogger, LogLimiter, type Logger } from "./log.js";
import { createMetrics } from "./metrics.js";
import { Stats } from "./stats.js";
import { ConnectionRegistry, type ServerContext } from "./transports/connection.js";
import { sweepClosing, sweepHeartbeats } from "./transports/heartbeat.js";
import { clearKeepAliveLimit, closeServer, shapeSocket, StreamRequest } from "./transports/bare.js";
import { PollTransport } from "./transports/poll.js";
import { WebSocketTransport } from "./transports/websocket.js";
import { FrontDoor } from "./server/front-door.js";
import { createTlsServer, readTlsPair, watchHttp1Requests, type TlsPair } from "./server/tls.js";
import { ServerActions } from "./server/actions.js";
import { SettleGc } from "./server/settle-gc.js";
import {
  ServerApi,
  type ChannelInfo,
  type ChannelList,
  type DisconnectOptions,
  type History,
  type HistoryMessage,
  type HistoryOptions,
} from "./server/server-api.js";

/** Knobs for embedding and tests; not part of the CLI. */
export interface RuntimeOptions {
  /** Time source; tests pass a `ManualClock`. */
  clock?: Clock;
  /** The application's hooks (SPEC §8); each wins over the same hook's `--proxy-*-url`. */
  hooks?: Hooks;
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
  private readonly door: FrontDoor;
  private readonly api: ServerApi;
  /** Sockets of servers made by `listen()` that are not subscriber connections. */
  private readonly sockets: SocketLimits;
  private readonly stopTicker: () => void;
  private readonly servers = new Set<Server>();
  /** Servers made by `listen()`; attached servers belong to the app and are never closed here. */
  private readonly owned = new Set<Server>();
  private readonly runtime: RuntimeOptions;
  private readonly settleGc: SettleGc;
  /** The certificate and key in use (`--tls-cert`, `--tls-key`); undefined: plain HTTP. */
  private tls: TlsPair | undefined;
  private lastBrokerSweep = 0;
  private closing: Promise<void> | undefined;

  constructor(options: HeartlineOptions = {}, runtime: RuntimeOptions = {}) {
    this.config = configFromOptions(options);
    this.runtime = runtime;
    this.clock = runtime.clock ?? systemClock;
    this.log = runtime.logger ?? createLogger(this.config.logLevel);
    const tickMs = runtime.tickMs ?? 250;
    // Reads and checks the key files first: a bad one is a ConfigError at start.
    const { tlsCert, tlsKey } = this.config;
    if (tlsCert !== undefined && tlsKey !== undefined) this.tls = readTlsPair(tlsCert, tlsKey);
    this.auth = new Auth(this.config, { clock: this.clock, wallClock: runtime.wallClock, tickMs, log: this.log, stats: this.stats });
    const broker = runtime.broker ?? createBroker(this.config, this.clock, this.log);
    this.hub = new Hub(broker, { presence: this.config.presence, presenceGraceMs: this.config.presenceGrace * 1000, now: () => this.clock.now() });
    if (this.config.eventsChannel !== undefined) {
      const feed = new EventFeed(this.config.eventsChannel, (channel, json) => this.hub.publish(channel, json), () => this.auth.now());
      this.hub.presence.feed = feed.changed;
      this.hub.occupancy = feed.channel;
    }
    const logs = new LogLimiter(this.log, this.clock);
    const hooks = new HookRunner({ config: this.config, auth: this.auth, log: this.log, logs, stats: this.stats, now: () => this.ctx.now }, runtime.hooks);
    this.ctx = {
      config: this.config,
      hub: this.hub,
      clock: this.clock,
      log: this.log,
      logs,
      hooks,
      stats: this.stats,
      registry: new ConnectionRegistry(this.config, this.stats),
      auth: this.auth,
      now: this.clock.now(),
      draining: false,
    };
    this.publisher = new Publisher(this.ctx);
    this.sockets = new SocketLimits({
      maxPending: this.config.maxPendingConnections,
      // Behind a trusted proxy every socket comes from the proxy: its own limits apply there.
      maxPendingPerIp: this.config.trustProxy ? 0 : this.config.maxPendingConnectionsPerIp,
      // A poller's socket between two polls counts like the connection it stands for.
      maxResting: this.config.maxConnections,
      maxRestingPerIp: this.config.trustProxy ? 0 : this.config.maxConnectionsPerIp,
      onRefused: (perAddress) => this.stats.rejected[perAddress ? "too_many_connections_per_ip" : "too_many_connections"]++,
    });
    this.ws = new WebSocketTransport(this.ctx, this.publisher);
    this.poll = new PollTransport(this.ctx, (out, err) => this.door.fail(out, err));
    this.metrics = createMetrics(this.ctx);
    this.api = new ServerApi(this.ctx, new ServerActions(this.ctx, this.poll), this.publisher);
    this.door = new FrontDoor(this.ctx, new OriginPolicy(this.config.allowedOrigins), this.publisher, this.metrics, this.poll, this.ws, this.api);
    this.settleGc = new SettleGc(this.config.settleGc, this.log, this.stats);
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
   * not subscriber connections (pending), those between a poller's polls
   * (resting), and the peer addresses holding pending ones.
   */
  get socketCounts(): SocketCounts {
    return this.sockets.counts;
  }

  /**
   * Publishes `data` (any JSON value) to `channel`; resolves once stored.
   * With `idempotencyKey` (1–128 of `A-Z a-z 0-9 - . _ ~`), a repeat on the
   * same channel within `--idempotency-ttl` answers the first result and
   * stores nothing.
   */
  publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    if (this.closing || this.ctx.draining) return Promise.reject(httpError("shutting_down", "this Heartline instance is closed"));
    return this.publisher.publish(channel, data, options.idempotencyKey);
  }

  /**
   * Stores one data on many channels (at most 1000, no repeats), each as its
   * own publish; resolves with one entry per channel, `{channel, epoch,
   * offset}` or `{channel, error}` (SPEC §10).
   */
  broadcast(channels: readonly string[], data: unknown, options: PublishOptions = {}): Promise<BroadcastResult> {
    if (this.closing || this.ctx.draining) return Promise.reject(httpError("shutting_down", "this Heartline instance is closed"));
    return broadcast(this.publisher, channels, data, options.idempotencyKey);
  }

  /** The members of a presence channel, cluster-wide (SPEC §9): what `GET /api/presence/<channel>` answers. */
  presence(channel: string): Promise<PresenceSnapshot> {
    return presenceOf(this.hub, channel);
  }

  /**
   * Closes `user`'s connections on every node (SPEC §10), or only those of
   * `options.client`: WebSocket close 4002 (reconnect) or, with
   * `reconnect: false`, 4403; SSE `event: disconnect`; held polls 403
   * `disconnected`. Resolves with how many were closed on the nodes that
   * answered within 250 ms.
   */
  disconnect(user: string, options: DisconnectOptions = {}): Promise<{ disconnected: number }> {
    return this.api.disconnect(user, options);
  }

  /** Removes `user`'s subscription to `channel` on every node; the clients are told (`unsubscribed`). */
  unsubscribe(user: string, channel: string): Promise<{ unsubscribed: number }> {
    return this.api.unsubscribe(user, channel);
  }

  /**
   * Refuses, on every live node, `user`'s tokens issued (`iat`) before
   * `before` (unix seconds, not in the future), and closes the connections
   * holding one (WebSocket 4001, SSE `event: error` token_revoked, held polls 401).
   */
  revoke(user: string, before: number): Promise<{ closed: number }> {
    return this.api.revoke(user, before);
  }

  /** Channels with WebSocket or SSE subscribers on any node, names starting with `prefix`, with their counts (at most 1,000). */
  channels(prefix = ""): Promise<ChannelList> {
    return this.api.channels(prefix);
  }

  /** A channel's position and its subscribers on every node (`GET /api/channels/<name>`). */
  channel(name: string): Promise<ChannelInfo> {
    return this.api.channel(name);
  }

  /** A channel's history: after `since` in its current epoch, or the latest `limit` (default 100, at most 1000) messages. */
  history(channel: string, options: HistoryOptions = {}): Promise<History<HistoryMessage>> {
    return this.api.history(channel, options);
  }

  /** Drops a channel's history (a new epoch begins); subscribers on every node get a reset at once. */
  removeHistory(channel: string): Promise<{ channel: string; epoch: string; offset: number }> {
    return this.api.removeHistory(channel);
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
    const door = this.door;
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      // Paths that are not in the route table belong to the app's own listeners, if it has any.
      if (previous.length > 0 && door.routeOf(req.url, pages) === undefined) {
        for (const l of previous) l.call(server, req, res);
        return;
      }
      if (req instanceof StreamRequest) clearKeepAliveLimit(req.socket, server);
      door.request(req, res, pages);
    });
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const route = door.routeOf(req.url, false);
      if (req instanceof StreamRequest) {
        // `GET /sse` and `GET /poll` on a server made by `listen()`, handed over by node:http like an upgrade (see StreamRequest).
        if (route?.socket !== undefined && req.method === "GET") {
          // A poll keeps a handed-back connection's idle limit: its answer sets it again.
          if (route.transport !== "poll") clearKeepAliveLimit(socket as Socket, server);
          route.socket(door, req, socket as Socket, head);
          return;
        }
        clearKeepAliveLimit(socket as Socket, server);
      }
      if (route?.upgrade === undefined && previousUpgrade.length > 0) {
        for (const l of previousUpgrade) l.call(server, req, socket, head);
        return;
      }
      door.upgrade(req, socket, head);
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

  /**
   * Creates a server with every route (pages included) and listens on `port`
   * (0 = any): HTTPS with HTTP/2 and HTTP/1.1 when a certificate is configured
   * (see server/tls.ts), else plain HTTP/1.1.
   */
  async listen(port = this.config.port, host = this.config.host): Promise<AddressInfo> {
    const server = this.tls !== undefined ? this.createTlsServer(this.tls) : this.createHttpServer();
    if (!(await this.hub.waitReady(5000))) {
      this.log.warn({ unavailable: this.hub.brokerUnavailable() }, "Redis is not reachable yet; serving with /readyz 503 and publishes answered 503 until it is");
    }
    this.attach(server, { pages: true });
    if (this.tls !== undefined) watchHttp1Requests(server as unknown as Http2SecureServer, this.requestTimeoutMs());
    this.owned.add(server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    this.log.info({ port: address.port, host: address.address, tls: this.tls !== undefined }, "listening");
    return address;
  }

  /**
   * Reads `--tls-cert` and `--tls-key` again (SIGHUP) for new TLS connections;
   * open ones keep theirs. A missing or bad file is logged and the certificate
   * in use stays. Returns whether the new pair is in use (false without TLS).
   */
  reloadTls(): boolean {
    const { tlsCert, tlsKey } = this.config;
    if (this.tls === undefined || tlsCert === undefined || tlsKey === undefined) return false;
    let pair: TlsPair;
    try {
      pair = readTlsPair(tlsCert, tlsKey);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, "TLS certificate not reloaded; the one in use stays");
      return false;
    }
    this.tls = pair;
    for (const s of this.owned) (s as { setSecureContext?: (o: TlsPair) => void }).setSecureContext?.({ cert: pair.cert, key: pair.key });
    this.log.info({ cert: tlsCert }, "TLS certificate reloaded");
    return true;
  }

  private requestTimeoutMs(): number {
    return Math.max(this.runtime.requestTimeoutMs ?? 30_000, this.runtime.headersTimeoutMs ?? 10_000);
  }

  private createTlsServer(pair: TlsPair): Server {
    const options = { pair, sockets: this.sockets, headersTimeoutMs: this.runtime.headersTimeoutMs ?? 10_000, keepAliveMs: this.config.keepAliveTimeout * 1000 };
    return createTlsServer(options) as unknown as Server;
  }

  private createHttpServer(): Server {
    const server = createServer({
      IncomingMessage: StreamRequest,
      headersTimeout: this.runtime.headersTimeoutMs ?? 10_000,
      requestTimeout: this.requestTimeoutMs(),
      connectionsCheckingInterval: Math.min(1000, this.runtime.headersTimeoutMs ?? 1000),
      // Longer than a proxy's upstream idle timeout: the proxy closes idle connections (it never retries a POST).
      keepAliveTimeout: this.config.keepAliveTimeout * 1000,
    });
    server.on("connection", (socket: Socket) => {
      shapeSocket(socket);
      this.sockets.accept(socket);
    });
    return server as unknown as Server;
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
    for (const s of this.owned) closeServer(s);
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
    await until(() => ctx.registry.total === 0 && ctx.registry.closing.size === 0 && this.door.publishRequests.size === 0);
    // Past the deadline: a body still arriving is cut (its message is never stored) ...
    for (const req of this.door.publishRequests) if (!req.complete) carrierOf(req).destroy();
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
      this.settleGc.close();
      this.ws.wss.close();
      await this.hub.closeBroker();
      await this.ctx.hooks.close();
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
      // Token expiry, and a connect hook's expireAt.
      if (this.auth.enabled || ctx.hooks.enabled) sweepTokens(ctx.registry.live, this.auth.now(), this.auth.marginMs);
      ctx.hooks.sweep(now);
      this.hub.presence.tick(now);
      this.poll.sweep(now);
      this.door.diag.sweep(now);
      ctx.logs.sweep(now);
      this.settleGc.tick(now, ctx.registry.admitted, this.hub.published);
      if (now - this.lastBrokerSweep >= 1000) {
        this.lastBrokerSweep = now;
        this.hub.sweepBroker(now);
      }
    } catch (err) {
      this.log.error({ err }, "error in the ticker");
    }
  }
}
