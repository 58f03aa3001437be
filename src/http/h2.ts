/**
 * HTTP/2 requests through node:http2's compatibility API. The request
 * handler, the route table and admission serve them as they serve HTTP/1.1
 * requests, typed as `IncomingMessage` and `ServerResponse`; what differs is
 * here: a request rides on a stream of a session, not on a socket of its own
 * (its `req.socket` is a stand-in for the session's socket, never written
 * to), and HTTP/1.1's connection-specific headers (`Connection`,
 * `Keep-Alive`, `Transfer-Encoding`, …) are forbidden (RFC 9113 §8.2.2;
 * node:http2 throws on them).
 */
import { ServerResponse, type IncomingMessage } from "node:http";
import { constants, Http2ServerRequest, Http2ServerResponse, type ServerHttp2Stream } from "node:http2";
import { Socket } from "node:net";
import type { Duplex } from "node:stream";

/** Whether `res` answers an HTTP/2 request. */
export function isH2(res: unknown): boolean {
  return res instanceof Http2ServerResponse;
}

/** Whether `out` is a response (node:http's, or an HTTP/2 stream's) rather than a bare socket. */
export function isResponse(out: unknown): out is ServerResponse {
  // A socket first: the bare socket of a stream or poll is the common case on a busy server.
  if (out instanceof Socket) return false;
  return out instanceof ServerResponse || out instanceof Http2ServerResponse;
}

/** The HTTP/2 stream of a request or response; undefined for HTTP/1.1. */
export function h2StreamOf(x: IncomingMessage | ServerResponse): ServerHttp2Stream | undefined {
  return x instanceof Http2ServerRequest || x instanceof Http2ServerResponse ? x.stream : undefined;
}

/**
 * What carries a request: its HTTP/1.1 socket, or its HTTP/2 stream. The
 * socket limits count it (see socket-limits.ts), and cutting it cuts the
 * request alone.
 */
export function carrierOf(req: IncomingMessage): Duplex {
  return h2StreamOf(req) ?? req.socket;
}

/** Whether the client of a response has gone (node:http2's compatibility response has no `destroyed`). */
export function responseGone(res: ServerResponse): boolean {
  const stream = h2StreamOf(res);
  return stream !== undefined ? stream.destroyed || stream.closed : res.destroyed;
}

/**
 * After an answer sent before the request's body arrived: an HTTP/2 stream
 * is closed with NO_ERROR once the answer is out (RFC 9113 §8.1), which
 * tells the client to stop sending; the session goes on.
 */
export function closeAfterAnswer(res: ServerResponse): void {
  const stream = h2StreamOf(res);
  if (stream === undefined) return;
  res.once("finish", () => {
    if (!stream.closed) stream.close(constants.NGHTTP2_NO_ERROR);
  });
}
