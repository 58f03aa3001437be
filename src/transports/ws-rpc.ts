/**
 * RPC over a WebSocket (SPEC §8): `{"type":"rpc","id","method","params"}`
 * frames, answered `{"type":"rpc","id","result"}` or
 * `{"type":"rpc","id","error"}` in whatever order the rpc hook answers.
 * Each frame passes the rate limit (`--client-rpc-rate`) and the cap of
 * {@link MAX_RPC_IN_FLIGHT} waiting RPCs, so a client that does not wait
 * costs a bounded amount.
 */
import { HeartlineError, httpError } from "../errors.js";
import type { Session } from "../hooks/runner.js";
import { MAX_RPC_IN_FLIGHT } from "../hooks/types.js";
import type { ServerContext } from "./connection.js";
import { takeToken } from "./rate.js";

/** What an rpc frame needs of its connection (a `WsConnection`). */
export interface RpcConnection {
  readonly ctx: ServerContext;
  readonly id: number;
  readonly session: Session | undefined;
  /** RPCs sent to the hook and not yet answered. */
  rpcInFlight: number;
  /** The RPC rate limit's bucket (see rate.ts). */
  rpcTat: number;
  /** Sends one text frame. */
  write(bytes: Buffer): void;
}

/** Serves one rpc frame; throws `bad_request` for a frame without a usable `id` (answered as an `error` frame). */
export function rpcFrame(conn: RpcConnection, f: Record<string, unknown>): void {
  const rid = f.id;
  if (!(typeof rid === "number" && Number.isFinite(rid)) && !(typeof rid === "string" && rid.length <= 64)) {
    throw httpError("bad_request", 'an rpc frame needs an "id": a number or a string of at most 64 characters');
  }
  const idJson = JSON.stringify(rid);
  const { ctx, session } = conn;
  const unavailable = ctx.hooks.rpcUnavailable();
  // A connection has a session whenever any hook is configured.
  if (unavailable || session === undefined) {
    rpcError(conn, idJson, unavailable);
    return;
  }
  const tat = takeToken(conn.rpcTat, ctx.clock.now(), ctx.config.clientRpcRate);
  if (tat < 0) {
    rpcError(conn, idJson, rateLimited("RPCs", ctx.config.clientRpcRate, "--client-rpc-rate"));
    return;
  }
  conn.rpcTat = tat;
  if (conn.rpcInFlight >= MAX_RPC_IN_FLIGHT) {
    rpcError(conn, idJson, httpError("too_many_requests", `at most ${MAX_RPC_IN_FLIGHT} RPCs may wait for their answer on one connection`));
    return;
  }
  conn.rpcInFlight++;
  ctx.hooks.rpc(session, f.method, f.params).then(
    (json) => {
      conn.rpcInFlight--;
      conn.write(Buffer.from(`{"type":"rpc","id":${idJson},"result":${json}}`));
    },
    (err) => {
      conn.rpcInFlight--;
      rpcError(conn, idJson, err);
    },
  );
}

function rpcError(conn: RpcConnection, idJson: string, err: unknown): void {
  const e = err instanceof HeartlineError ? err : httpError("internal_error", "unexpected error; it was logged");
  if (!(err instanceof HeartlineError)) conn.ctx.logs.write("rpc_error", "error", { err, conn: conn.id }, "unexpected error on an rpc frame");
  conn.write(Buffer.from(`{"type":"rpc","id":${idJson},"error":${JSON.stringify({ code: e.code, message: e.message })}}`));
}

/** The refusal of a frame over `--client-publish-rate` / `--client-rpc-rate`. */
export function rateLimited(what: string, rate: number, option: string): HeartlineError {
  return httpError("rate_limited", `more than ${rate} ${what} per second on this connection (${option}); slow down`, { "Retry-After": "1" });
}
