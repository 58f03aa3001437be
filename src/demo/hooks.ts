/**
 * The arena as Heartline hooks (SPEC §8, library form): its methods answer
 * RPCs, a closed WebSocket lets its player go, and `game:arena` is the
 * server's alone, so a browser that publishes there (a teleport, a forged
 * snapshot) is refused.
 */
import { HookError } from "../errors.js";
import type { Hooks } from "../hooks/types.js";
import { ARENA_CHANNEL, type Arena } from "./arena.js";

/** The hooks that put `arena` into a Heartline server. */
export function arenaHooks(arena: Arena): Hooks {
  return {
    rpc: (ctx) => arena.call(ctx.method, ctx.params, ctx.client),
    publish: (ctx) => {
      if (ctx.channel === ARENA_CHANNEL) {
        throw new HookError(403, "server_owned", `${ARENA_CHANNEL} is written by the arena server only; move with arena.move`);
      }
    },
    disconnect: (ctx) => {
      if (ctx.client !== undefined) arena.disconnected(ctx.client);
    },
  };
}
