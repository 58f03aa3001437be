/**
 * `POST /api/rpc` (SPEC §8): an RPC from a client that has no WebSocket (SSE,
 * polling, or none), with the same credentials it subscribes with (cookies,
 * a token). The request is a client's: connect names its user unless a
 * token did, then the rpc hook answers. What the headers decide is checked
 * before a byte of the body is read.
 */
import type { IncomingMessage } from "node:http";
import type { CoreContext } from "../context.js";
import { httpError } from "../errors.js";
import { assertJsonContentType, parseJson, readBody, requestUrl } from "./body.js";
import { clientAddress } from "./client-address.js";

/** Room for the envelope around `params` in an RPC body. */
const ENVELOPE_BYTES = 4096;

/** Answers an RPC: resolves with the result as JSON text, or throws the SPEC error. */
export async function handleRpc(ctx: CoreContext, req: IncomingMessage): Promise<string> {
  const hooks = ctx.hooks;
  // Answered before connect: a server without RPC need not ask who is calling.
  const unavailable = hooks.rpcUnavailable();
  if (unavailable) throw unavailable;
  if (ctx.draining) throw httpError("shutting_down", "the server is draining; retry on another node", { "Retry-After": "1" });
  assertJsonContentType(req, "POST /api/rpc");
  const url = requestUrl(req);
  const auth = ctx.auth;
  const token = auth.tokenOf(req, url);
  const claims = token === undefined ? undefined : await auth.verify(token);
  const session = hooks.session("http", req, url, clientAddress(req, ctx.config.trustProxy), claims);
  await hooks.connect(session);
  const body = parseJson(await readBody(req, ctx.config.maxMessageBytes + ENVELOPE_BYTES));
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw httpError("bad_request", 'the body must be a JSON object {"method": "…", "params": …}');
  }
  const { method, params } = body as Record<string, unknown>;
  return hooks.rpc(session, method, params);
}
