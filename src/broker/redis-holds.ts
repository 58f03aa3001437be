/**
 * Holds in Redis (the contract is in holds.ts): the sets behind presence,
 * occupancy and the event feed, shared by every node of a cluster.
 *
 * Keys of a set (one hash tag, so one slot of a Redis Cluster; `<prefix>` is
 * the broker's, `heartline:` by default):
 *
 * | key | type | content |
 * |---|---|---|
 * | `<prefix>{<set>}:ph` | zset | one entry per hold: member `<key>\n<nodeId>`, score = the hold's expiry (clock ms) |
 * | `<prefix>{<set>}:pm` | hash | key → the member's JSON text |
 * | `<prefix>{<set>}:pc` | hash | key → how many nodes hold it |
 * | `<prefix>{<set>}:pv` | string | the set's version |
 *
 * Changes are published on the pub/sub channel `<prefix>holds` by the script
 * that made them (see redis-holds-scripts.ts for the format) and reach every
 * node through the broker's subscriber connection, this one included. Like
 * every pub/sub message they are at most once: a node whose subscription
 * dropped misses some, and sees it from `previous`.
 *
 * Lifetime: the keys of a set live the latest expiry pushed so far plus
 * {@link HOLD_KEY_MARGIN_MS}; when its last hold goes, only the version stays,
 * for that margin. A cluster that dies entirely leaves nothing behind for long.
 * A node that dies leaves its holds, which lapse at their expiry (the node no
 * longer pushes it forward) and are removed, their leaves reported, by
 * whichever node next runs `expire` on the set.
 *
 * Time: expiries and the `now` of `expire` are the callers' clock values,
 * compared inside Redis with those of other nodes, so they must be on one
 * timeline. Each value is stored plus `origin`: for the system clock (whose
 * `now()` is the process's monotonic time) the broker gives the offset that
 * turns it into wall-clock ms, measured once at start, so nodes agree as far
 * as their wall clocks do (NTP); a test's manual clock, shared by its
 * brokers, gets 0. `members` filters with this broker's `clock.now()`, and
 * key lifetimes are relative to it. Needs Redis ≥ 6.2 (`ZADD … GT`).
 *
 * Cost in Redis, measured with `MEMORY USAGE` and `INFO commandstats` on
 * Redis 7.0, for a member of `m` bytes of JSON under a key of `k` bytes:
 * - memory per member held by one node: about 2k + m + 80 bytes while a key
 *   of the set has under 128 entries (listpack encodings), about 2k + m + 250
 *   past that (hashtable and skiplist); each further node holding the same
 *   member adds about k + 35 (k + 120 past 128); plus about 300 bytes per set.
 *   Measured with k = 30, m = 60: 100 members took 20 KB, 1,000 took 366 KB.
 * - commands, each call one round trip and one EVALSHA:
 *   join 11 inside the script (ZADD, HSET, HINCRBY, GET, TIME, PUBLISH, PTTL,
 *   3 PEXPIRE, SET); leave 11 (ZREM, HINCRBY, HGET, 2 HDEL, GET, TIME,
 *   PUBLISH, PTTL, DEL or nothing, SET); a hold that is no join 4–5 (ZADD,
 *   HSET, HINCRBY, 2 PTTL), a release that is no leave 4;
 * - refresh: one pipeline (one round trip; on a Redis Cluster, one call per set
 *   and batch, sent at once) for all of this node's holds: one
 *   EVALSHA per set and per 1,000 holds, each running one ZADD XX GT of all
 *   of them and a PTTL (and 4 PEXPIRE when the keys' lifetime moves by more
 *   than half the margin); so 5,000 holds in 5 sets cost 5 script calls and
 *   5 ZADD;
 * - expire: 1 EVALSHA per set (per 1,000 holds removed): ZRANGEBYSCORE, then
 *   per hold removed ZREM and HINCRBY, and per leave HGET, 2 HDEL, TIME and
 *   PUBLISH; an expire that finds nothing is 1 ZRANGEBYSCORE;
 * - members: 1 EVALSHA: ZRANGEBYSCORE, GET, HMGET per 1,000 members.
 */
import { randomBytes } from "node:crypto";
import type { Cluster, Redis } from "ioredis";
import type { Clock } from "../clock.js";
import { BrokerUnavailableError } from "../errors.js";
import type { Logger } from "../log.js";
import type { HoldChange, Holds, HoldSnapshot } from "./holds.js";
import { EXPIRE_LUA, HOLD_LUA, MEMBERS_LUA, REFRESH_BATCH, REFRESH_LUA, RELEASE_LUA } from "./redis-holds-scripts.js";

/** How long a set's keys outlive its latest hold expiry (and its version its last hold). */
export const HOLD_KEY_MARGIN_MS = 60_000;
/** Characters of a node id (16 base64url characters: 96 random bits). */
const NODE_ID_LENGTH = 16;
/** Most holds one `expire` script removes before the next call takes over. */
const EXPIRE_BATCH = 1000;

type Script = (...args: Array<string | number>) => Promise<unknown>;
type HoldsClient = (Redis | Cluster) & { hlHold: Script; hlRelease: Script; hlExpire: Script; hlRefresh: Script; hlMembers: Script };

export interface RedisHoldsOptions {
  /** The broker's command connection (no offline queue). */
  client: Redis | Cluster;
  /** A Redis Cluster: sets live in different slots, so `refresh` sends one call per set rather than one pipeline. */
  cluster?: boolean;
  prefix: string;
  clock: Clock;
  log: Logger;
  /** Whether commands can be sent now (the command connection is ready, the broker open). */
  available(): boolean;
  /** Added to every clock value stored or compared in Redis: puts this node's clock on the cluster's timeline. Default 0. */
  origin?: number;
}

export class RedisHolds implements Holds {
  /** This broker instance, in the holds it writes. */
  readonly nodeId = randomBytes(12).toString("base64url");
  /** The pub/sub channel of changes. */
  readonly channel: string;
  private readonly client: HoldsClient;
  private listener: (change: HoldChange) => void = () => {};
  private readonly origin: number;

  constructor(private readonly o: RedisHoldsOptions) {
    this.origin = o.origin ?? 0;
    this.channel = o.prefix + "holds";
    const c = o.client as HoldsClient;
    c.defineCommand("hlHold", { numberOfKeys: 4, lua: HOLD_LUA });
    c.defineCommand("hlRelease", { numberOfKeys: 4, lua: RELEASE_LUA });
    c.defineCommand("hlExpire", { numberOfKeys: 4, lua: EXPIRE_LUA });
    c.defineCommand("hlRefresh", { numberOfKeys: 4, lua: REFRESH_LUA });
    c.defineCommand("hlMembers", { numberOfKeys: 4, lua: MEMBERS_LUA });
    this.client = c;
  }

  onChange(listener: (change: HoldChange) => void): void {
    this.listener = listener;
  }

  async hold(set: string, key: string, member: string, expiresAt: number): Promise<boolean> {
    finite(expiresAt, "expiresAt");
    const reply = await this.call(() =>
      this.client.hlHold(...this.keys(set), ...this.head(set), this.holdOf(key), key, member, this.shared(expiresAt), this.ttl(expiresAt)),
    );
    return Number(reply) === 1;
  }

  async release(set: string, key: string): Promise<boolean> {
    const reply = await this.call(() => this.client.hlRelease(...this.keys(set), ...this.head(set), this.holdOf(key), key));
    return Number(reply) === 1;
  }

  async refresh(holds: ReadonlyArray<readonly [set: string, key: string]>, expiresAt: number): Promise<void> {
    finite(expiresAt, "expiresAt");
    if (holds.length === 0) return;
    const bySet = new Map<string, string[]>();
    for (const [set, key] of holds) {
      let list = bySet.get(set);
      if (!list) bySet.set(set, (list = []));
      list.push(this.holdOf(key));
    }
    const score = this.shared(expiresAt);
    const ttl = this.ttl(expiresAt);
    const calls: Array<Array<string | number>> = [];
    for (const [set, list] of bySet) {
      for (let i = 0; i < list.length; i += REFRESH_BATCH) calls.push([...this.keys(set), score, ttl, HOLD_KEY_MARGIN_MS, ...list.slice(i, i + REFRESH_BATCH)]);
    }
    await this.call(async () => {
      if (this.o.cluster) {
        // A pipeline on a Redis Cluster must stay in one slot: one call per set and batch, all at once.
        await Promise.all(calls.map((args) => this.client.hlRefresh(...args)));
        return;
      }
      const pipeline = this.client.pipeline() as unknown as { hlRefresh(...args: Array<string | number>): void; exec(): Promise<Array<[Error | null, unknown]> | null> };
      for (const args of calls) pipeline.hlRefresh(...args);
      const results = await pipeline.exec();
      const failed = results?.find(([err]) => err !== null)?.[0];
      if (failed) throw failed;
    });
  }

  async expire(set: string, now: number): Promise<string[]> {
    finite(now, "now");
    const head = this.head(set);
    const at = this.shared(now);
    const left: string[] = [];
    for (;;) {
      const reply = (await this.call(() => this.client.hlExpire(...this.keys(set), ...head, at, EXPIRE_BATCH))) as Array<string | number>;
      for (let i = 1; i < reply.length; i++) left.push(String(reply[i]));
      if (Number(reply[0]) < EXPIRE_BATCH) return left;
    }
  }

  async members(set: string): Promise<HoldSnapshot> {
    const reply = (await this.call(() => this.client.hlMembers(...this.keys(set), this.shared(this.o.clock.now()), NODE_ID_LENGTH))) as string[];
    return { version: Number(reply[0]), members: reply.slice(1).map(String) };
  }

  /** A message on {@link channel}: hands the change to the listener. */
  onNotification(payload: string): void {
    const change = parseChange(payload);
    if (!change) {
      this.o.log.warn({ payload: payload.slice(0, 100) }, "ignored a malformed holds notification");
      return;
    }
    try {
      this.listener(change);
    } catch (err) {
      this.o.log.error({ err, set: change.set }, "holds listener failed");
    }
  }

  // ---- helpers ----

  private keys(set: string): [string, string, string, string] {
    const base = this.o.prefix + "{" + set + "}:p";
    return [base + "h", base + "m", base + "c", base + "v"];
  }

  /** The arguments every changing script starts with. */
  private head(set: string): [string, number, string, number] {
    return [set, NODE_ID_LENGTH, this.channel, HOLD_KEY_MARGIN_MS];
  }

  private holdOf(key: string): string {
    return key + "\n" + this.nodeId;
  }

  /** A clock value on the cluster's timeline, as Redis reads a score. */
  private shared(ms: number): string {
    return String(ms + this.origin);
  }

  /** Milliseconds a set's keys must live for a hold expiring at `expiresAt` (clock ms). */
  private ttl(expiresAt: number): number {
    const left = Math.ceil(expiresAt - this.o.clock.now());
    return (Number.isFinite(left) ? Math.max(0, left) : 0) + HOLD_KEY_MARGIN_MS;
  }

  private async call<T>(run: () => Promise<T>): Promise<T> {
    if (!this.o.available()) throw new BrokerUnavailableError("The broker is unavailable; holds cannot be changed or read.");
    try {
      return await run();
    } catch (err) {
      throw new BrokerUnavailableError("The broker is unavailable; holds cannot be changed or read.", err);
    }
  }
}

/** A time that is not a finite number would reach Redis as a score it refuses: a caller's bug, said as such. */
function finite(ms: number, name: string): void {
  if (typeof ms !== "number" || !Number.isFinite(ms)) throw new TypeError(`holds: ${name} must be a finite number of clock ms, got ${String(ms)}`);
}

/** `<version> <previous> <j|l>\n<set JSON>\n<key JSON>\n<member>`, or undefined when malformed. */
export function parseChange(payload: string): HoldChange | undefined {
  const a = payload.indexOf("\n");
  const b = payload.indexOf("\n", a + 1);
  const c = payload.indexOf("\n", b + 1);
  if (a < 0 || b < 0 || c < 0) return undefined;
  const head = /^(\d{1,16}) (\d{1,16}) ([jl])$/.exec(payload.slice(0, a));
  if (!head) return undefined;
  const version = Number(head[1]);
  const previous = Number(head[2]);
  if (!Number.isSafeInteger(version) || !Number.isSafeInteger(previous)) return undefined;
  const kind = head[3] === "j" ? "join" : "leave";
  let set: unknown;
  let key: unknown;
  try {
    set = JSON.parse(payload.slice(a + 1, b));
    key = JSON.parse(payload.slice(b + 1, c));
  } catch {
    return undefined;
  }
  if (typeof set !== "string" || typeof key !== "string") return undefined;
  return { set, kind, key, member: payload.slice(c + 1), version, previous };
}
