/**
 * Presence over long polls (SPEC §9): a poll that names its client (`client=`)
 * is a member of the presence channels it polls, and its answer's `presence`
 * array carries what it was not told yet (hub/presence.ts `news`).
 */
import type { Member } from "../hub/presence.js";
import { memberOf } from "../hub/presence.js";
import type { Session } from "../hooks/runner.js";
import { presenceChangeJson, presenceSnapshotJson } from "../wire.js";
import type { ServerContext } from "./connection.js";

/** Milliseconds a poller stays present after an answer at least, whatever `--presence-grace`: its time to poll again. */
export const POLLER_GRACE_MS = 2000;

/** A poller's members, one per presence channel it polls. */
export type PollMembers = ReadonlyArray<readonly [channel: string, member: Member]>;

/** Who polls: the client id it gave, its user and session; a poll that names its client is a member of its presence channels. */
export interface Poller {
  readonly client: string | undefined;
  readonly user: string | undefined;
  readonly session: Session | undefined;
}

/** The members a poller holds on the presence channels among `channels`; undefined when none. */
export function pollMembers(ctx: ServerContext, channels: readonly string[], who: Poller | undefined): PollMembers | undefined {
  if (who?.client === undefined || !ctx.hub.presence.enabled) return undefined;
  let out: Array<readonly [string, Member]> | undefined;
  for (const ch of channels) {
    if (!ctx.hub.presence.tracks(ch)) continue;
    (out ??= []).push([ch, memberOf(who.client, who.user, who.session?.channelInfo?.get(ch) ?? who.session?.info)]);
  }
  return out;
}

/** What a poller has not been told about its presence channels, as the answer's `presence` array. */
export async function presenceNews(ctx: ServerContext, members: PollMembers): Promise<string[]> {
  const out: string[] = [];
  for (const [ch, m] of members) {
    const news = await ctx.hub.presence.news(ch, m.key);
    if (news.snapshot) out.push(presenceSnapshotJson(ch, news.snapshot.members));
    for (const c of news.changes) out.push(presenceChangeJson(c.kind, ch, c.member));
  }
  return out;
}
