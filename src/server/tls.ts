/**
 * TLS and HTTP/2 (SPEC §12): with `--tls-cert` and `--tls-key`, `listen()`
 * makes one node:http2 secure server that offers HTTP/2 (ALPN `h2`) and
 * HTTP/1.1 on the same port. Both come to the same request handler (the
 * front door); a WebSocket is an HTTP/1.1 upgrade, as on a plain server.
 * HTTP/1.1 requests here are served through node:http's response: the
 * bare-socket paths of bare.ts hand sockets back as plain connections, which
 * a TLS server cannot take.
 *
 * The certificate and key are read and checked at start (a bad file is a
 * ConfigError naming its option) and again on reload (SIGHUP), when a bad
 * file keeps the certificate in use and open connections stay as they are.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { createSecureServer, Http2ServerRequest, type Http2SecureServer, type Http2Session, type ServerHttp2Stream } from "node:http2";
import type { Socket } from "node:net";
import { createSecureContext, type TLSSocket } from "node:tls";
import { ConfigError } from "../config.js";
import { countAs, countSession, type SocketLimits } from "../http/socket-limits.js";

/** A certificate (chain) and its private key, as PEM. */
export interface TlsPair {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/**
 * Streams one HTTP/2 session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS):
 * far more than a page opens, few enough that one client's requests cannot flood the process.
 */
export const H2_MAX_STREAMS = 256;
/** Bytes of one request's header list (SETTINGS_MAX_HEADER_LIST_SIZE), node:http's limit for HTTP/1.1 too. */
export const H2_MAX_HEADER_LIST = 16 * 1024;

function readPem(option: string, path: string, what: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new ConfigError(`invalid value for ${option}: cannot read ${JSON.stringify(path)}: ${(err as Error).message}; expected ${what}`);
  }
  if (!data.includes("-----BEGIN ")) throw new ConfigError(`invalid value for ${option}: ${JSON.stringify(path)} is not PEM; expected ${what}`);
  return data;
}

/**
 * Reads and checks the PEM files of `--tls-cert` and `--tls-key`: a
 * certificate, an unencrypted private key, and the key of that certificate.
 * Throws {@link ConfigError} naming the option at fault.
 */
export function readTlsPair(certPath: string, keyPath: string): TlsPair {
  const cert = readPem("--tls-cert", certPath, "a PEM certificate (chain)");
  const key = readPem("--tls-key", keyPath, "a PEM private key");
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(`invalid value for --tls-cert: ${JSON.stringify(certPath)} holds no PEM certificate (${(err as Error).message})`);
  }
  try {
    createPrivateKey(key);
  } catch (err) {
    throw new ConfigError(`invalid value for --tls-key: ${JSON.stringify(keyPath)} holds no unencrypted PEM private key (${(err as Error).message})`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError(`invalid value for --tls-key: ${JSON.stringify(keyPath)} is not the key of --tls-cert ${JSON.stringify(certPath)} (${(err as Error).message})`);
  }
  return { cert, key };
}

export interface SecureServerOptions {
  readonly pair: TlsPair;
  readonly sockets: SocketLimits;
  /** Milliseconds a client has for its handshake, and an HTTP/1.1 client for its first request's headers. */
  readonly headersTimeoutMs: number;
  /** How long an idle kept-alive HTTP/1.1 connection, or an HTTP/2 session with no stream open, stays. */
  readonly keepAliveMs: number;
}

const OPEN = Symbol("heartline.openStreams");
const IDLE = Symbol("heartline.idleTimer");
const IDLE_MS = Symbol("heartline.idleMs");
type CountedSession = Http2Session & { [OPEN]?: number; [IDLE]?: NodeJS.Timeout; [IDLE_MS]?: number };
type SessionStream = ServerHttp2Stream & { [OPEN]?: CountedSession };

/**
 * The HTTPS server of `listen()`: HTTP/2 and HTTP/1.1 (allowHTTP1), every
 * TCP socket counted by the socket limits from its accept, before its
 * handshake. Request, upgrade and error listeners are `attach()`'s.
 */
export function createTlsServer(o: SecureServerOptions): Http2SecureServer {
  const server = createSecureServer({
    cert: o.pair.cert,
    key: o.pair.key,
    allowHTTP1: true,
    // A client has as long to finish its handshake as to send its request headers.
    handshakeTimeout: o.headersTimeoutMs,
    settings: { maxConcurrentStreams: H2_MAX_STREAMS, maxHeaderListSize: H2_MAX_HEADER_LIST },
    maxSessionRejectedStreams: 100,
  });
  // node:http reads it from the server for the HTTP/1.1 connections it parses here.
  (server as unknown as { keepAliveTimeout: number }).keepAliveTimeout = o.keepAliveMs;
  // First, before the TLS server wraps it: a socket past the limits is closed before its handshake.
  const sockets = new Set<Socket>();
  server.prependListener("connection", (socket: Socket) => {
    o.sockets.accept(socket);
    if (socket.destroyed) return;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  // As node:http's closeAllConnections (the end of a drain): every connection cut.
  Object.assign(server, { closeAllConnections: () => sockets.forEach((s) => s.destroy()) });
  // Before node:http2 makes a session of it: the TLS socket stands for its TCP socket.
  server.prependListener("secureConnection", (socket: TLSSocket) => {
    countAs(socket, (socket as TLSSocket & { _parent?: Socket })._parent);
    socket.setNoDelay(true);
    // HTTP/1.1: node:http runs its header timeout only on its own servers; this one, until the first request (see watchHttp1Requests).
    if (socket.alpnProtocol !== "h2") socket.setTimeout(o.headersTimeoutMs);
  });
  server.on("session", (session: CountedSession) => {
    countSession(session, session.socket);
    session[OPEN] = 0;
    session.on("stream", onStream);
    // An idle session (no stream open) is closed like an idle kept-alive HTTP/1.1 connection, with node:http's one-second margin.
    if (o.keepAliveMs > 0) {
      session[IDLE_MS] = o.keepAliveMs + 1000;
      session.once("close", onSessionClose);
      idleFrom(session);
    }
  });
  // A session's errors (a peer breaking the protocol) end that session alone; they are the peer's doing.
  server.on("sessionError", noop);
  server.on("tlsClientError", noop);
  return server;
}

/**
 * node:http runs its `headersTimeout` and `requestTimeout` only on servers it
 * makes; on this one an HTTP/1.1 socket is cut when its first request's
 * headers take longer than `headersTimeoutMs` (the socket timeout set at the
 * handshake, cleared here) or a request's body is not complete after
 * `requestTimeoutMs`. Idle kept-alive connections are node:http's
 * (`keepAliveTimeout`). Call after `attach()`, which replaces the request
 * listeners: this one goes first.
 */
export function watchHttp1Requests(server: Http2SecureServer, requestTimeoutMs: number): void {
  server.prependListener("request", (req: IncomingMessage | Http2ServerRequest) => {
    if (req instanceof Http2ServerRequest) return;
    const socket = req.socket;
    socket.setTimeout(0);
    if (!req.complete) setTimeout(cutIncomplete, requestTimeoutMs, req).unref();
  });
}

function cutIncomplete(req: IncomingMessage): void {
  if (!req.complete) req.socket.destroy();
}

function onStream(this: CountedSession, stream: SessionStream): void {
  if (this[OPEN]!++ === 0 && this[IDLE] !== undefined) {
    clearTimeout(this[IDLE]);
    this[IDLE] = undefined;
  }
  stream[OPEN] = this;
  stream.once("close", onStreamClose);
}

function onStreamClose(this: SessionStream): void {
  const session = this[OPEN];
  if (session !== undefined && --session[OPEN]! === 0) idleFrom(session);
}

/** A session with no stream open: closed (GOAWAY, then the socket) unless a stream opens within its idle limit. */
function idleFrom(session: CountedSession): void {
  const ms = session[IDLE_MS];
  if (ms === undefined || session.closed || session.destroyed) return;
  session[IDLE] = setTimeout(closeIdle, ms, session).unref();
}

function closeIdle(session: CountedSession): void {
  session[IDLE] = undefined;
  if (session[OPEN] === 0 && !session.closed && !session.destroyed) session.close();
}

function onSessionClose(this: CountedSession): void {
  if (this[IDLE] !== undefined) clearTimeout(this[IDLE]);
  this[IDLE] = undefined;
}

function noop(): void {}
