/**
 * The application of the client's RPC tests: an rpc hook (library form) with
 * a few methods, and gates that hold a `wait` call until the test opens
 * them, so a test decides in which order answers go out.
 */
import { HookError, type Hooks } from "../../src/index.js";
import { waitFor } from "../helpers/server.js";

/** One call the rpc hook received. */
export interface RpcCall {
  method: string;
  params: unknown;
  transport: string;
  user: string | undefined;
  authorization: string | undefined;
}

export function rpcApp() {
  const calls: RpcCall[] = [];
  const gates = new Map<string, () => void>();
  const hooks: Hooks = {
    async rpc(ctx) {
      calls.push({ method: ctx.method, params: ctx.params, transport: ctx.transport, user: ctx.user, authorization: ctx.headers.authorization });
      const p = ctx.params as { key?: string } | null;
      switch (ctx.method) {
        case "echo":
          return { params: ctx.params, transport: ctx.transport };
        case "value":
          return ctx.params;
        case "nothing":
          return undefined;
        case "whoami":
          return ctx.user ?? null;
        case "wait":
          return new Promise((resolve) => gates.set(String(p?.key), () => resolve(p?.key)));
        case "refuse":
          throw new HookError(422, "bad_move", "that move is not allowed");
      }
      throw new HookError(404, "unknown_method", `no method ${ctx.method}`);
    },
  };
  return {
    hooks,
    calls,
    /** Calls of `method` (with `key`, for `wait`). */
    callsOf(method: string, key?: string): RpcCall[] {
      return calls.filter((c) => c.method === method && (key === undefined || (c.params as { key?: string } | null)?.key === key));
    },
    /** Waits until a `wait` call with `key` is held by the hook. */
    held(key: string): Promise<true> {
      return waitFor(() => gates.has(key) || undefined, 5000, `the hook to hold the call ${key}`);
    },
    /** Lets the `wait` call with `key` answer (with its key). */
    async open(key: string): Promise<void> {
      await this.held(key);
      gates.get(key)!();
      gates.delete(key);
    },
  };
}
