/**
 * The arena as Heartline hooks (SPEC §8, library form): its methods answer
 * RPCs, a closed WebSocket lets its player go, and `game:arena` is the
 * server's alone, so a browser that publishes there (a teleport, a forged
 * snapshot) is refused. With a publish hook the server leaves every client
 * publish to it, so the hook also keeps `--client-publish`: other channels
 * are open to clients only where those patterns allow.
 */
import { HookError } from "../errors.js";
import type { Hooks } from "../hooks/types.js";
import { ChannelPatterns } from "../hub/channel-name.js";
import { ARENA_CHANNEL, type Arena } from "./arena.js";

export interface ArenaHookOptions {
  /** Channel patterns clients may publish to (the arena's channel never). Default none. */
  clientPublish?: readonly string[];
}

/** The hooks that put `arena` into a Heartline server. */
export function arenaHooks(arena: Arena, options: ArenaHookOptions = {}): Hooks {
  const open = new ChannelPatterns(options.clientPublish ?? []);
  return {
    rpc: (ctx) => arena.call(ctx.method, ctx.params, ctx.client),
    publish: (ctx) => {
      if (ctx.channel === ARENA_CHANNEL) {
        throw new HookError(403, "server_owned", `${ARENA_CHANNEL} is written by the arena server only; move with arena.move`);
      }
      if (!open.matches(ctx.channel)) throw new HookError(403, "forbidden", `clients may not publish to ${ctx.channel} (see --client-publish)`);
    },
    disconnect: (ctx) => {
      if (ctx.client !== undefined) arena.disconnected(ctx.client);
    },
  };
}
