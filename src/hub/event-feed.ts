/**
 * The backend event feed (SPEC §9, `--events-channel`): connect, disconnect,
 * join, leave, occupied and vacated as ordinary messages on one channel, so
 * a backend reads them like any subscriber and resumes by cursor (a gap it
 * cannot replay arrives as a reset).
 *
 * Every event is cluster-wide, counted through the broker's holds
 * (broker/holds.ts), and published by the one node whose hold, release or
 * expiry made the change:
 * - `connect` / `disconnect`: a client (user and client id) holds the set
 *   `#clients` while it has a WebSocket or SSE connection anywhere,
 *   kept through `--presence-grace` like presence, so a reconnect is neither;
 * - `join` / `leave`: presence (hub/presence.ts);
 * - `occupied` / `vacated`: each node holds the key `node` of the set
 *   `#o:<channel>` while it has a subscriber on the channel; the first hold
 *   anywhere is `occupied`, the last one gone `vacated`.
 * Set names start with `#`, which no channel name may hold.
 *
 * Order per client: its connect is held before its subscriptions start, and
 * on the way out its channels are let go before the client (Presence.tick
 * releases {@link CLIENTS_SET} last); one node's publishes are stored in the
 * order they are made, so a connect comes before its joins, a join before its
 * leave, and leaves before the disconnect.
 */
import { CLIENTS_SET, type Member } from "./presence.js";
/** The prefix of a channel's occupancy set. */
export const OCCUPANCY_PREFIX = "#o:";
/** The one key each node holds in an occupancy set. */
export const OCCUPANCY_MEMBER: Member = { key: "node", json: "null" };

type Publish = (channel: string, json: string) => Promise<unknown>;

export class EventFeed {
  /** Events that could not be stored (the broker was away); the feed's reader sees a gap only if it was stored. */
  lost = 0;

  constructor(
    readonly channel: string,
    private readonly publish: Publish,
    private readonly wallNow: () => number,
  ) {}

  /** A join or leave of any holds set, made by this node: the event it means, published. */
  readonly changed = (kind: "join" | "leave", set: string, member: string, reason?: string): void => {
    let json: string;
    if (set === CLIENTS_SET) json = this.client(kind === "join" ? "connect" : "disconnect", member, undefined, reason);
    else if (set.startsWith(OCCUPANCY_PREFIX)) {
      const channel = set.slice(OCCUPANCY_PREFIX.length);
      json = '{"event":"' + (kind === "join" ? "occupied" : "vacated") + '","channel":' + JSON.stringify(channel) + ',"at":' + this.wallNow() + "}";
    } else json = this.client(kind, member, set, reason);
    this.publish(this.channel, json).catch(() => this.lost++);
  };

  /** `{"event","channel"?,"user","client","reason"?,"at"}` from a member's JSON `{"client","user","info"}`. */
  private client(event: string, member: string, channel: string | undefined, reason: string | undefined): string {
    const m = JSON.parse(member) as { client: string; user: string | null };
    let json = '{"event":"' + event + '"';
    if (channel !== undefined) json += ',"channel":' + JSON.stringify(channel);
    json += ',"user":' + JSON.stringify(m.user) + ',"client":' + JSON.stringify(m.client);
    if (reason !== undefined) json += ',"reason":' + JSON.stringify(reason);
    return json + ',"at":' + this.wallNow() + "}";
  }
}
