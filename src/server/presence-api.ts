/**
 * `GET /api/presence/<channel>` (SPEC §9): the channel's members
 * cluster-wide, for the API key (or, without one, this machine) and for a
 * client whose credentials allow it to subscribe to the channel.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { httpError } from "../errors.js";
import { assertChannelName } from "../hub/channel-name.js";
import { clientAddress } from "../http/client-address.js";
import { sendJson } from "../http/respond.js";
import type { Hub } from "../hub/hub.js";
import type { Door } from "./door.js";
import { channelOfPath } from "./server-api.js";

const PREFIX = "/api/presence/";

/** `{"channel","members":[{client,user,info}],"users":U,"clients":C}`. */
export async function presenceRoute(d: Door, req: IncomingMessage, res: ServerResponse, cors: Record<string, string>, path: string): Promise<void> {
  const channel = channelOfPath(path, PREFIX);
  await allowed(d, req, channel);
  sendJson(res, 200, await presenceOf(d.ctx.hub, channel), cors);
}

/** A member of a presence channel. */
export interface PresenceMember {
  client: string;
  user: string | null;
  info: unknown;
}

/** What `GET /api/presence/<channel>` and `hl.presence(channel)` answer. */
export interface PresenceSnapshot {
  channel: string;
  members: PresenceMember[];
  /** Distinct users among the members (anonymous ones not counted). */
  users: number;
  /** Members: one per client id and user. */
  clients: number;
}

/** The members of `channel` cluster-wide; `not_found` when it does not track presence. */
export async function presenceOf(hub: Hub, channel: string): Promise<PresenceSnapshot> {
  assertChannelName(channel);
  if (!hub.presence.tracks(channel)) throw httpError("not_found", `${channel} does not track presence (see --presence)`);
  const snapshot = await hub.presence.members(channel);
  const members = snapshot.members.map((m) => JSON.parse(m) as PresenceMember);
  const users = new Set<string>();
  for (const m of members) if (m.user !== null) users.add(m.user);
  return { channel, members, users: users.size, clients: members.length };
}

/** The API key (or this machine without one); else a client allowed to subscribe to `channel`, as admission would decide. */
async function allowed(d: Door, req: IncomingMessage, channel: string): Promise<void> {
  try {
    d.publisher.assertServer(req);
    return;
  } catch (refusal) {
    const ctx = d.ctx;
    const url = new URL(req.url ?? "/", "http://heartline.invalid");
    if (ctx.hooks.enabled) {
      const claims = await ctx.auth.authorizeSubscribe(req, url, []);
      const session = ctx.hooks.session("poll", req, url, clientAddress(req, ctx.config.trustProxy), claims);
      await ctx.hooks.connect(session);
      await ctx.hooks.checkChannel(session, claims, channel);
      return;
    }
    if (ctx.auth.enabled) {
      if (ctx.auth.tokenOf(req, url) === undefined) throw refusal;
      await ctx.auth.authorizeSubscribe(req, url, [channel]);
      return;
    }
    // Neither tokens nor hooks: every channel is public to subscribers, and so is who is on it.
  }
}
