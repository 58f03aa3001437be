/** Reading a request body with a hard byte limit. */
import type { IncomingMessage } from "node:http";
import { httpError } from "../errors.js";

/**
 * Reads the whole body, refusing with 413 as soon as it passes `limit` bytes
 * (by Content-Length, or while streaming for chunked bodies).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(httpError("message_too_large", `the body is larger than ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        reject(httpError("message_too_large", `the body is larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: NodeJS.ErrnoException) => {
      cleanup();
      // The client closed the connection before its body was complete: its doing, not an error of the server.
      reject(err.code === "ECONNRESET" || err.message === "aborted" ? httpError("bad_request", "the request was aborted") : err);
    };
    const onAborted = () => {
      cleanup();
      reject(httpError("bad_request", "the request was aborted"));
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onAborted);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onAborted);
  });
}

/** Parses JSON text, refusing with 400 bad_json. */
export function parseJson(body: Buffer | string): unknown {
  try {
    return JSON.parse(typeof body === "string" ? body : body.toString("utf8"));
  } catch {
    throw httpError("bad_json", "the body is not valid JSON");
  }
}

/** `application/json` or `application/<anything>+json`, parameters allowed. */
const JSON_MEDIA_TYPE = /^application\/(?:[a-z0-9!#$&^_.+-]+\+)?json[ \t]*(?:;|$)/i;

/**
 * A publish or RPC must say it is JSON. A browser sends a cross-site POST as
 * `text/plain` (or a form type) without asking first (no CORS preflight), so
 * a page on any site could otherwise publish through a server that trusts its
 * visitor's machine (`npm start` on a developer's laptop).
 */
export function assertJsonContentType(req: IncomingMessage, endpoint: string): void {
  const type = req.headers["content-type"];
  if (type === undefined || !JSON_MEDIA_TYPE.test(type.trim())) {
    throw httpError(
      "unsupported_media_type",
      `${endpoint} needs Content-Type: application/json; got ${type === undefined ? "none" : JSON.stringify(type.slice(0, 100))}`,
    );
  }
}

/** The request's URL, parsed (its host is a placeholder); a malformed one is refused. */
export function requestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? "/", "http://heartline.invalid");
  } catch {
    throw httpError("bad_request", "the request URL is malformed");
  }
}
