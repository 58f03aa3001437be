/**
 * The arena as Heartline hooks (SPEC §8, library form): its methods answer
 * RPCs, a closed WebSocket lets its player go, and `game:arena` is the
 * server's alone, so a browser that publishes there (a teleport, a forged
 * snapshot) is refused. With a publish hook the server leaves every client
 * publish to it, so the hook also keeps `--client-publish`: other channels
 * are open to clients only where those patterns allow.
 *
 * Presence (SPEC §9): a subscriber of `game:arena` is listed with
 * `info: {name}`, the player's name as the arena knows it for that client id,
 * else the `arena-name` cookie the page sets (cleaned as a join's name), else
 * no info. Without tokens every channel is open, and the subscribe hook keeps
 * it so; with tokens (`--jwt-secret`, `--jwt-public-key`) there is no
 * subscribe hook, so the tokens alone decide, and members carry no info.
 */
import { HookError } from "../errors.js";
import type { HookContext, Hooks } from "../hooks/types.js";
import { ChannelPatterns } from "../hub/channel-name.js";
import { ARENA_CHANNEL, type Arena } from "./arena.js";
import { cleanName } from "./params.js";

/** The cookie the demo page keeps its player's name in, for presence before it has joined. */
export const NAME_COOKIE = "arena-name";

export interface ArenaHookOptions {
  /** Channel patterns clients may publish to (the arena's channel never). Default none. */
  clientPublish?: readonly string[];
  /** Subscribers carry tokens (`--jwt-secret` or `--jwt-public-key`): no subscribe hook, so tokens alone decide who subscribes. */
  tokens?: boolean;
}

/** The player's name for presence: the arena's for this client, else the page's cookie; undefined when neither is a valid name. */
function nameFor(arena: Arena, ctx: HookContext): string | undefined {
  const known = arena.nameOf(ctx.client);
  if (known !== undefined) return known;
  const raw = ctx.cookies[NAME_COOKIE];
  if (raw === undefined) return undefined;
  try {
    return cleanName(decodeURIComponent(raw));
  } catch {
    return undefined;
  }
}

/** The hooks that put `arena` into a Heartline server. */
export function arenaHooks(arena: Arena, options: ArenaHookOptions = {}): Hooks {
  const open = new ChannelPatterns(options.clientPublish ?? []);
  const hooks: Hooks = {
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
  if (!options.tokens) {
    hooks.subscribe = (ctx) => {
      const name = ctx.channel === ARENA_CHANNEL ? nameFor(arena, ctx) : undefined;
      return name === undefined ? {} : { info: { name } };
    };
  }
  return hooks;
}
