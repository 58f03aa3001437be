/**
 * The server API's actions on every node of a cluster (SPEC §10): disconnect,
 * unsubscribe, revoke, the reset after a history removal, and the counts
 * behind `GET /api/channels`. One module decodes the signals and applies them
 * to this node's connections; the HTTP handlers and the library
 * (server-api.ts) call {@link ServerActions.run}.
 *
 * How an action travels: the node that is asked sends one signal (Hub.signal,
 * which reaches every node, at most once each), then applies the action to
 * its own connections at once, and ignores its own signal when it comes back.
 * Every other node applies it when the signal arrives and, when the asking
 * node wants a count, answers with a second signal addressed to it. The
 * asking node sums what arrives within {@link GATHER_MS} (in a cluster; a
 * single node has nothing to wait for). Signals are at most once: a node cut
 * off from the broker at that moment misses the action, and an answer that
 * comes later than the wait is not counted. So counts are those of the nodes
 * that answered in time, never more than the truth.
 *
 * On the wire (the broker's signal payload, JSON):
 * `{"hl":"act","id":"…","from":"<node>","a":{"t":"disconnect",…}}` and
 * `{"hl":"re","id":"…","to":"<node>","n":N[,"channels":[[name,count]…],"more":true]}`;
 * `id` is "" when no answer is wanted.
 */
import { randomUUID } from "node:crypto";
import { sleepOn } from "../clock.js";
import { httpError } from "../errors.js";
import { isChannelName } from "../hub/channel-name.js";
import type { Connection, HeldPoll, ServerContext } from "../transports/connection.js";
import type { PollTransport } from "../transports/poll.js";

/** How long the asking node of a cluster waits for the other nodes' answers, in ms. */
export const GATHER_MS = 250;
/** Most channels one `GET /api/channels` lists; `"more": true` says there are others. */
export const MAX_LISTED_CHANNELS = 1000;
/** The longest user or client id the actions carry (a token's `sub` is at most 1024 characters). */
export const MAX_ID_LENGTH = 1024;

export type Action =
  | { readonly t: "disconnect"; readonly user: string; readonly client?: string | undefined; readonly reconnect: boolean }
  | { readonly t: "unsubscribe"; readonly user: string; readonly channel: string }
  | { readonly t: "revoke"; readonly user: string; readonly before: number }
  | { readonly t: "reset"; readonly channel: string }
  | { readonly t: "count"; readonly channel: string }
  | { readonly t: "list"; readonly prefix: string };

/** What the nodes answered, summed: a count, and for `list` the channels with their subscribers. */
export interface Tally {
  n: number;
  /** For `list`: subscribers by channel, summed over the nodes. */
  channels?: Map<string, number>;
  /** For `list`: a node had more channels than it listed. */
  more?: boolean;
}

/** One node's answer to an action. */
interface Answer {
  n: number;
  channels?: Array<[string, number]>;
  more?: boolean;
}

export class ServerActions {
  /** This process's name among the nodes, for addressing answers. */
  readonly node = randomUUID();
  /** Actions of this node waiting for answers, by id. */
  private readonly gathers = new Map<string, Tally>();

  constructor(
    private readonly ctx: ServerContext,
    private readonly poll: PollTransport,
  ) {
    ctx.hub.onSignal((payload) => this.received(payload));
  }

  /**
   * Sends `a` to every node and applies it here; with `gather`, waits for the
   * other nodes' answers (in a cluster, {@link GATHER_MS}) and sums them.
   * Rejects with 503 `broker_unavailable` when the signal cannot be sent
   * (then nothing was done, here or elsewhere).
   */
  async run(a: Action, gather = true): Promise<Tally> {
    const hub = this.ctx.hub;
    const id = gather ? randomUUID() : "";
    const tally: Tally = { n: 0 };
    if (gather) this.gathers.set(id, tally);
    try {
      await hub.signal(JSON.stringify({ hl: "act", id, from: this.node, a }));
      add(tally, await this.apply(a));
      if (gather && hub.clustered) await sleepOn(this.ctx.clock, GATHER_MS);
    } finally {
      if (gather) this.gathers.delete(id);
    }
    return tally;
  }

  /** A signal from any node, this one included. Anything malformed is dropped (logged, rate-limited). */
  private received(payload: string): void {
    let m: Record<string, unknown>;
    try {
      const v: unknown = JSON.parse(payload);
      if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
      m = v as Record<string, unknown>;
    } catch {
      this.malformed();
      return;
    }
    if (m.hl === "re") {
      if (m.to !== this.node || typeof m.id !== "string") return;
      const tally = this.gathers.get(m.id);
      const answer = checkAnswer(m);
      if (tally !== undefined && answer !== undefined) add(tally, answer);
      return;
    }
    if (m.hl !== "act" || m.from === this.node) return;
    const a = checkAction(m.a);
    if (a === undefined || typeof m.id !== "string" || typeof m.from !== "string") {
      this.malformed();
      return;
    }
    const { id, from } = m;
    this.apply(a)
      .then((answer) => {
        if (id === "") return;
        const reply = { hl: "re", id, to: from, ...answer };
        return this.ctx.hub.signal(JSON.stringify(reply));
      })
      .catch((err: unknown) => this.ctx.logs.write("server_action_error", "warn", { err, action: a.t }, "a server API action from another node failed here"));
  }

  /** Applies `a` to this node's connections and polls; resolves with this node's answer. */
  async apply(a: Action): Promise<Answer> {
    switch (a.t) {
      case "disconnect":
        return { n: this.disconnect(a.user, a.client, a.reconnect) };
      case "unsubscribe": {
        let n = 0;
        for (const c of this.ctx.registry.connectionsOf(a.user)) if (c.removeSubscription(a.channel)) n++;
        return { n };
      }
      case "revoke":
        return { n: this.revoke(a.user, a.before) };
      case "reset":
        await this.ctx.hub.resetChannel(a.channel);
        return { n: 0 };
      case "count":
        return { n: this.ctx.hub.subscriberCount(a.channel) };
      case "list":
        return this.list(a.prefix);
    }
  }

  /** Closes `user`'s connections (or the one `client`'s) and answers their held polls 403; the number closed. */
  private disconnect(user: string, client: string | undefined, reconnect: boolean): number {
    let n = 0;
    for (const c of this.ctx.registry.connectionsOf(user)) {
      if (client !== undefined && c.client !== client) continue;
      c.close(reconnect ? "disconnected_reconnect" : "disconnected");
      n++;
    }
    for (const p of this.ctx.registry.polls.of(user)) {
      if (client !== undefined && p.client !== client) continue;
      // A Retry-After says the client may come back (as the reconnect close code does on a WebSocket); none, for good.
      p.fail(httpError("disconnected", "the server disconnected this user", reconnect ? { "Retry-After": "1" } : undefined));
      n++;
    }
    return n;
  }

  /** Refuses `user`'s tokens issued before `before` from now on, and closes the connections and polls holding one; the number closed. */
  private revoke(user: string, before: number): number {
    const auth = this.ctx.auth;
    auth.revoke(user, before);
    let n = 0;
    // A connect hook may name another user than the token's sub: then every connection is looked at.
    const conns: Iterable<Connection> = this.ctx.hooks.enabled ? [...this.ctx.registry.live] : this.ctx.registry.connectionsOf(user);
    for (const c of conns) {
      if (c.claims !== undefined && c.claims.sub === user && auth.isRevoked(c.claims)) {
        c.close("token_revoked");
        n++;
      }
    }
    const polls: Iterable<HeldPoll> = this.ctx.hooks.enabled ? [...this.poll.waiting] : this.ctx.registry.polls.of(user);
    for (const p of polls) {
      if (p.claims !== undefined && p.claims.sub === user && auth.isRevoked(p.claims)) {
        p.fail(httpError("token_revoked", "this token was revoked; get a new one"));
        n++;
      }
    }
    return n;
  }

  /** This node's channels starting with `prefix` and their subscribers: the first {@link MAX_LISTED_CHANNELS} by name. */
  private list(prefix: string): Answer {
    const hub = this.ctx.hub;
    const names: string[] = [];
    for (const c of hub.channels()) if (c.startsWith(prefix)) names.push(c);
    names.sort();
    const more = names.length > MAX_LISTED_CHANNELS;
    const channels: Array<[string, number]> = [];
    for (let i = 0; i < names.length && i < MAX_LISTED_CHANNELS; i++) channels.push([names[i]!, hub.subscriberCount(names[i]!)]);
    return more ? { n: 0, channels, more } : { n: 0, channels };
  }

  private malformed(): void {
    this.ctx.logs.write("bad_signal", "warn", {}, "a signal from the broker was not a server API action; dropped");
  }
}

function add(tally: Tally, answer: Answer): void {
  tally.n += answer.n;
  if (answer.channels !== undefined) {
    const map = (tally.channels ??= new Map());
    for (const [c, k] of answer.channels) map.set(c, (map.get(c) ?? 0) + k);
  }
  if (answer.more === true) tally.more = true;
}

const isId = (v: unknown): v is string => typeof v === "string" && v.length > 0 && v.length <= MAX_ID_LENGTH;

/** An action as another node sent it, checked like any input; undefined when it is not one. */
export function checkAction(v: unknown): Action | undefined {
  if (v === null || typeof v !== "object") return undefined;
  const a = v as Record<string, unknown>;
  switch (a.t) {
    case "disconnect":
      if (!isId(a.user) || (a.client !== undefined && !isId(a.client)) || typeof a.reconnect !== "boolean") return undefined;
      return { t: "disconnect", user: a.user, client: a.client as string | undefined, reconnect: a.reconnect };
    case "unsubscribe":
      return isId(a.user) && isChannelName(a.channel) ? { t: "unsubscribe", user: a.user, channel: a.channel } : undefined;
    case "revoke":
      return isId(a.user) && typeof a.before === "number" && Number.isFinite(a.before) ? { t: "revoke", user: a.user, before: a.before } : undefined;
    case "reset":
    case "count":
      return isChannelName(a.channel) ? { t: a.t, channel: a.channel } : undefined;
    case "list":
      return typeof a.prefix === "string" && a.prefix.length <= 255 ? { t: "list", prefix: a.prefix } : undefined;
    default:
      return undefined;
  }
}

/** An answer as another node sent it; undefined when it is not one. */
function checkAnswer(m: Record<string, unknown>): Answer | undefined {
  const n = m.n;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) return undefined;
  const answer: Answer = { n };
  if (m.channels !== undefined) {
    if (!Array.isArray(m.channels) || m.channels.length > MAX_LISTED_CHANNELS) return undefined;
    const channels: Array<[string, number]> = [];
    for (const e of m.channels as unknown[]) {
      if (!Array.isArray(e) || !isChannelName(e[0]) || typeof e[1] !== "number" || !Number.isSafeInteger(e[1]) || e[1] < 0) return undefined;
      channels.push([e[0], e[1]]);
    }
    answer.channels = channels;
  }
  if (m.more === true) answer.more = true;
  return answer;
}
