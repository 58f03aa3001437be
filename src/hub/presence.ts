/**
 * Presence on this node (SPEC §9): which members this node holds in each
 * presence channel, the grace that keeps a reconnecting client from leaving
 * and joining again, and what a long poller was last told.
 *
 * A member is `{client, user, info}`, keyed by user and client id (so a
 * client id is bound to its user: another user sending the same id is
 * another member). Connections and held polls of the same member on this
 * node share one hold of the cluster-wide set (broker/holds.ts): the first
 * holds it, the last one gone lets it go — at once when the client
 * unsubscribed, after `--presence-grace` when its connection ended, so a
 * reconnect within the grace (to this node or another) changes nothing.
 *
 * No timer per member: the server's ticker calls {@link Presence.tick},
 * which releases departures whose grace is over, pushes the expiry of every
 * hold forward every {@link HOLD_REFRESH_MS} (one batched call), and expires
 * the lapsed holds of the sets this node holds (a dead node's members).
 * Bounds: a member whose connection ends leaves after the grace; one whose
 * connection dies unnoticed, after heartbeat-interval + heartbeat-timeout +
 * grace; one held by a node that died, from every list at most
 * {@link HOLD_TTL_MS} after that node's last refresh, and its leave is
 * announced by the next expiry pass of a node serving the channel (at most
 * HOLD_TTL_MS + HOLD_REFRESH_MS + a tick).
 */
import type { HoldChange, Holds, HoldSnapshot } from "../broker/holds.js";
import { ChannelPatterns } from "./channel-name.js";

/** Milliseconds a hold lives past its node's last refresh. */
export const HOLD_TTL_MS = 15_000;
/** Milliseconds between refreshes of this node's holds (and expiry passes over its sets). */
export const HOLD_REFRESH_MS = 5_000;
/** Changes kept per presence channel this node holds, so a poller gets deltas rather than a snapshot. */
const RECENT_CHANGES = 32;

/** One subscriber's member of a presence channel. */
export interface Member {
  /** The user and client id: what makes two connections the same member. */
  readonly key: string;
  /** `{"client":…,"user":…,"info":…}` */
  readonly json: string;
}

/** This node's hold of one member of one set. */
interface LocalHold {
  readonly set: string;
  readonly key: string;  json: string;
  /** Connections and held polls of this member here. */
  count: number;
  /** When the hold is let go, its last connection gone (clock ms); 0 while in use. */
  departAt: number;
  /** A long poller: the set's version it was last told, or -1 (it gets a snapshot). */
  told: number;
  /** The hold being stored; later arrivals wait for it. */
  holding: Promise<boolean> | undefined;
  /** Why its last connection ended (the event feed's `reason`). */
  reason: string | undefined;
}

/** Who is told of joins and leaves this node caused (its holds, releases and expiries): the backend event feed. */
export type JoinLeaveListener = (kind: "join" | "leave", set: string, member: string, reason?: string) => void;

/** The set of connected clients (the event feed's connect and disconnect); let go after a client's channels. */
export const CLIENTS_SET = "#clients";

/** What a poller gets about one presence channel: a snapshot (`members`) and/or changes after it. */
export interface PresenceNews {
  snapshot: HoldSnapshot | undefined;
  changes: HoldChange[];
}

export class Presence {
  private readonly patterns: ChannelPatterns;
  private readonly local = new Map<string, Map<string, LocalHold>>();
  private readonly recent = new Map<string, HoldChange[]>();
  /** Holds whose last connection is gone, waiting for their grace to end: the ticker looks at these only. */
  private readonly leaving = new Set<LocalHold>();
  private lastRefresh = 0;
  /** Told of joins and leaves that this node's holds caused (not those of other nodes). */
  feed: JoinLeaveListener | undefined = undefined;

  constructor(
    private readonly holds: Holds,
    patterns: readonly string[],
    private readonly graceMs: number,
    private readonly now: () => number,
  ) {
    this.patterns = new ChannelPatterns(patterns);
  }

  /** Whether any channel tracks presence. */
  get enabled(): boolean {
    return this.patterns.size > 0;
  }

  /** Whether `channel` tracks presence (`--presence`). */
  tracks(channel: string): boolean {
    return this.patterns.size > 0 && this.patterns.matches(channel);
  }

  /** A connection (or a held poll) of `m` arrives on `set`; resolves once the member is held. Rejects when the broker cannot hold it. */
  async enter(set: string, m: Member): Promise<void> {
    let byKey = this.local.get(set);
    if (!byKey) this.local.set(set, (byKey = new Map()));
    const h = byKey.get(m.key);
    if (h) {
      h.count++;
      h.departAt = 0;
      this.leaving.delete(h);
      if (h.holding) await h.holding;
      else if (h.json !== m.json) {
        // The same member with new info: the set keeps one entry, with the newest.
        h.json = m.json;
        await this.holds.hold(set, m.key, m.json, this.now() + HOLD_TTL_MS);
      }
      return;
    }
    const fresh: LocalHold = { set, key: m.key, json: m.json, count: 1, departAt: 0, told: -1, holding: undefined, reason: undefined };
    byKey.set(m.key, fresh);
    const holding = (fresh.holding = this.holds.hold(set, m.key, m.json, this.now() + HOLD_TTL_MS));
    try {
      if (await holding) this.feed?.("join", set, m.json);
    } catch (err) {
      fresh.count--;
      if (fresh.count <= 0 && byKey.get(m.key) === fresh) {
        this.leaving.delete(fresh);
        this.forget(set, m.key);
      }
      throw err;
    } finally {
      fresh.holding = undefined;
    }
  }

  /**
   * A connection (or an answered poll) of the member `key` leaves `set`. The
   * last one lets the hold go: after the grace when `graceful` (its
   * connection ended), at once when not (it unsubscribed, or was removed).
   */
  exit(set: string, key: string, graceful: boolean, atLeastMs = 0, reason?: string): void {
    const h = this.local.get(set)?.get(key);
    if (!h || --h.count > 0) return;
    h.reason = reason;
    const grace = Math.max(this.graceMs, atLeastMs);
    if (graceful && grace > 0) {
      h.departAt = this.now() + grace;
      this.leaving.add(h);
    } else this.release(set, key);
  }

  /** One pass of the ticker: departures, and every {@link HOLD_REFRESH_MS} the refresh and the expiry of lapsed holds. */
  tick(now: number): void {
    if (this.leaving.size > 0) {
      // Clients go after their channels: a client's leaves come before its disconnect.
      let clients: LocalHold[] | undefined;
      for (const h of this.leaving) {
        if (h.departAt > now) continue;
        if (h.set === CLIENTS_SET) (clients ??= []).push(h);
        else this.release(h.set, h.key);
      }
      if (clients) for (const h of clients) this.release(h.set, h.key);
    }
    if (this.local.size === 0 || now - this.lastRefresh < HOLD_REFRESH_MS) return;
    this.lastRefresh = now;
    const keep: Array<readonly [string, string]> = [];
    for (const [set, byKey] of this.local) for (const key of byKey.keys()) keep.push([set, key]);
    const fail = (): void => {
      // The broker is away: the holds lapse unless a later refresh reaches it; nothing to undo here.
    };
    this.holds.refresh(keep, now + HOLD_TTL_MS).catch(fail);
    for (const set of this.local.keys()) {
      this.holds.expire(set, now).then((left) => {
        for (const m of left) this.feed?.("leave", set, m, "expired");
      }, fail);
    }
  }

  /** A join or leave from any node: remembered for the pollers of a set this node holds. */
  changed(c: HoldChange): void {
    const byKey = this.local.get(c.set);
    if (!byKey) return;
    const mine = c.kind === "leave" ? byKey.get(c.key) : undefined;
    if (mine && !mine.holding) {
      // A hold of ours lapsed (a refresh came too late and another node expired it) while still in use: hold it again.
      mine.holding = this.holds.hold(c.set, c.key, mine.json, this.now() + HOLD_TTL_MS).finally(() => (mine.holding = undefined));
      mine.holding.catch(() => {});
    }
    let list = this.recent.get(c.set);
    if (!list) this.recent.set(c.set, (list = []));
    list.push(c);
    if (list.length > RECENT_CHANGES) list.shift();
  }

  /**
   * What the poller `key` has not been told about `set`: the changes after
   * what it was told, when they are all still remembered, else a snapshot
   * (and the changes after it). Empty when nothing changed. Call between
   * {@link enter} and {@link exit}.
   */
  async news(set: string, key: string): Promise<PresenceNews> {
    const h = this.local.get(set)?.get(key);
    if (!h) return { snapshot: undefined, changes: [] };
    const list = this.recent.get(set) ?? [];
    let snapshot: HoldSnapshot | undefined;
    let at = h.told;
    // Deltas only when they chain from what the poller was told; a break means a change was not remembered.
    let missed = at < 0;
    for (let i = 0, v = at; !missed && i < list.length; i++) {
      const c = list[i]!;
      if (c.version <= v) continue;
      if (c.previous !== v) missed = true;
      v = c.version;
    }
    if (missed) {
      snapshot = await this.holds.members(set);
      at = snapshot.version;
    }
    const changes: HoldChange[] = [];
    for (const c of list) {
      if (c.version <= at) continue;
      changes.push(c);
      at = c.version;
    }
    h.told = at;
    return { snapshot, changes };
  }

  /** The members of `set` cluster-wide, with their version. */
  members(set: string): Promise<HoldSnapshot> {
    return this.holds.members(set);
  }

  /** Members this node holds (in use or in their grace), for metrics and tests. */
  get held(): number {
    let n = 0;
    for (const byKey of this.local.values()) n += byKey.size;
    return n;
  }

  private release(set: string, key: string): void {
    const h = this.local.get(set)?.get(key);
    if (!h) return;
    this.leaving.delete(h);
    this.forget(set, key);
    this.holds.release(set, key).then(
      (left) => {
        if (left) this.feed?.("leave", set, h.json, h.reason);
      },
      () => {
        // The broker is away: the hold lapses by itself (HOLD_TTL_MS) and an expiry pass reports the leave.
      },
    );
  }

  private forget(set: string, key: string): void {
    const byKey = this.local.get(set);
    if (!byKey) return;
    byKey.delete(key);
    if (byKey.size === 0) {
      this.local.delete(set);
      this.recent.delete(set);
    }
  }
}

/** The most bytes of a member's `info` as JSON; a larger `info` is listed as null (and the member is still listed). */
export const MAX_PRESENCE_INFO_BYTES = 1024;

/** The member of a client: key (user and client id) and `{"client","user","info"}` (`user` and `info` null when none). */
export function memberOf(client: string, user: string | undefined, info: unknown): Member {
  let infoJson = info === undefined ? "null" : JSON.stringify(info);
  if (infoJson === undefined || Buffer.byteLength(infoJson) > MAX_PRESENCE_INFO_BYTES) infoJson = "null";
  return {
    key: (user ?? "") + "\n" + client,
    json: '{"client":' + JSON.stringify(client) + ',"user":' + (user === undefined ? "null" : JSON.stringify(user)) + ',"info":' + infoJson + "}",
  };
}
