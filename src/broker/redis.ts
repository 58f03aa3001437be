/**
 * The cluster broker: history and offsets in Redis, fan-out through Redis
 * pub/sub, so any node accepts any publisher or subscriber.
 *
 * - `publish` is one Lua script (see redis-scripts.ts): next offset, append to
 *   the channel's stream, refresh the TTL and publish the fan-out
 *   notification, atomically, so notifications leave Redis in offset order.
 *   It resolves once the message is stored and this node's listener has been
 *   handed it (or the fan-out connection is down, or a short wait ran out),
 *   so a publisher sees the same order on a node as with the memory broker.
 * - `read` is one Lua script too, and creates the channel's epoch when the
 *   channel has none, so a subscriber's epoch is the one the first publish uses.
 * - Gap healing: the broker remembers, per channel, the last offset it handed
 *   to the listener. A notification past `last + 1` first reads the missing
 *   range from history; one at or below `last` is a duplicate and is dropped.
 *   When the fan-out connection comes back after a drop, every remembered
 *   channel is read again from its last offset. What history no longer holds
 *   is skipped, and the hub announces the gap as a reset. A queue per channel
 *   keeps offset order while those reads are in flight.
 * - Outages: the command connection has no offline queue and a short command
 *   timeout, so a publish fails fast with `BrokerUnavailableError` (503) and
 *   never succeeds without storing. Both connections reconnect by themselves
 *   with capped backoff.
 */
import { randomBytes } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import { systemClock, type Clock } from "../clock.js";
import { BrokerUnavailableError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";
import { encodeMessage, type Broker, type BrokerUsage, type Position, type ReadResult, type StoredMessage } from "./broker.js";
import { PUBLISH_LUA, READ_LUA } from "./redis-scripts.js";

export interface RedisBrokerOptions {
  /** `redis://…` or `rediss://…` */
  url: string;
  historySize: number;
  /** Seconds a channel's history is kept after its last message. */
  historyTtl: number;
  /**
   * Seconds this node remembers the fan-out position of a channel it has only
   * read, after its last read. Default: `min(historyTtl, 60)`.
   */
  readTtl?: number;
  /** Most channels whose fan-out position this node remembers (beyond those it serves). Default 100000. */
  maxChannels?: number;
  /** Prefix of every key and of the fan-out channel. Default `heartline:`. */
  prefix?: string;
  /** Time source for forgetting silent channels. Default: the system clock. */
  clock?: Clock;
  logger?: Logger;
  /** Milliseconds a command may take before it fails. Default 2000. */
  commandTimeoutMs?: number;
  /** Milliseconds a connection attempt may take. Default 2000. */
  connectTimeoutMs?: number;
  /** Longest wait between reconnection attempts, in milliseconds. Default 1000. */
  maxReconnectDelayMs?: number;
}

/** Messages read per step while healing a gap. */
const HEAL_BATCH = 500;
/** Longest a publish waits for its own notification before it resolves anyway. */
const FANOUT_WAIT_MS = 1000;

/** What the broker remembers about one channel's fan-out. */
interface Track {
  epoch: string;
  /** The last offset handed to the listener (or, while `soft`, a floor read from history). */
  offset: number;
  /**
   * True while `offset` comes from a `read` and the listener has been handed
   * nothing of this epoch yet: a notification at or below it is not a duplicate.
   */
  soft: boolean;
  /** Clock time of the last notification or read. */
  seenAt: number;
  /** Work in order: notifications, and `null` for "heal up to the latest". */
  queue: Array<StoredMessage | null>;
  running: boolean;
  /** A heal failed (Redis unreachable); retried when the command connection is ready. */
  needsHeal: boolean;
}

/** A publish waiting for its notification to reach this node's listener. */
interface Waiter {
  epoch: string;
  offset: number;
  deadline: number;
  resolve: () => void;
}

type Script = (...args: Array<string | number>) => Promise<unknown>;
type CommandClient = Redis & { hlPublish: Script; hlRead: Script };

export class RedisBroker implements Broker {
  private readonly cmd: CommandClient;
  private readonly sub: Redis;
  private readonly prefix: string;
  private readonly fanoutChannel: string;
  private readonly ttlMs: number;
  private readonly readTtlMs: number;
  private readonly maxTracks: number;
  private readonly historySize: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private listener: (message: StoredMessage) => void = () => {};
  private readonly tracks = new Map<string, Track>();
  private readonly waiters = new Map<string, Waiter[]>();
  private waiterCount = 0;
  private waiterTimer: NodeJS.Timeout | undefined;
  private subscribed = false;
  private closed = false;
  private down = false;
  /** Epochs are this node's random prefix plus a counter: unique without a random draw each. */
  private readonly epochSeed = randomBytes(8).toString("base64url");
  private epochCounter = 0;
  /** Messages the listener got from history because their notification was missed. */
  healedMessages = 0;

  constructor(options: RedisBrokerOptions) {
    const prefix = options.prefix ?? "heartline:";
    if (/[{}]/.test(prefix)) throw new TypeError(`invalid Redis key prefix ${JSON.stringify(prefix)}: it may not contain { or }`);
    if (!Number.isInteger(options.historySize) || options.historySize < 0) {
      throw new TypeError(`invalid historySize ${options.historySize}: expected an integer ≥ 0`);
    }
    if (!(options.historyTtl > 0)) throw new TypeError(`invalid historyTtl ${options.historyTtl}: expected seconds > 0`);
    this.prefix = prefix;
    this.fanoutChannel = prefix + "fanout";
    this.ttlMs = Math.max(1, Math.ceil(options.historyTtl * 1000));
    this.readTtlMs = Math.max(1, Math.ceil((options.readTtl ?? Math.min(options.historyTtl, 60)) * 1000));
    this.maxTracks = options.maxChannels ?? 100_000;
    this.historySize = options.historySize;
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? createLogger("silent");
    const maxDelay = options.maxReconnectDelayMs ?? 1000;
    const common: RedisOptions = {
      connectTimeout: options.connectTimeoutMs ?? 2000,
      commandTimeout: options.commandTimeoutMs ?? 2000,
      // Capped exponential backoff with jitter, forever: nodes come back by themselves.
      retryStrategy: (times) => Math.round(Math.min(maxDelay, 50 * 2 ** Math.min(times - 1, 10)) * (0.5 + Math.random() * 0.5)),
      // Never queue or resend while disconnected: a publish either reaches Redis now or fails.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
    };
    this.cmd = new Redis(options.url, { ...common, connectionName: "heartline" }) as CommandClient;
    this.cmd.defineCommand("hlPublish", { numberOfKeys: 2, lua: PUBLISH_LUA });
    this.cmd.defineCommand("hlRead", { numberOfKeys: 2, lua: READ_LUA });
    // The subscription is renewed by hand on every `ready`, so healing starts only once it is active.
    this.sub = new Redis(options.url, { ...common, connectionName: "heartline-fanout", autoResubscribe: false });

    this.cmd.on("ready", () => this.onCommandReady());
    this.sub.on("ready", () => this.onSubscriberReady());
    this.sub.on("close", () => this.onSubscriberClose());
    this.cmd.on("close", () => this.wentDown("command"));
    this.cmd.on("error", (err: Error) => this.onError("command", err));
    this.sub.on("error", (err: Error) => this.onError("fan-out", err));
    this.sub.on("message", (_channel: string, payload: string) => this.onNotification(payload));
  }

  /** Whether both connections are up and the fan-out subscription is active. */
  isReady(): boolean {
    return !this.closed && this.cmd.status === "ready" && this.subscribed;
  }

  /** Resolves true once ready, or false after `timeoutMs`. */
  async waitReady(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.isReady()) {
      if (this.closed || Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  }

  /** Channels whose fan-out position is remembered; for tests and metrics. */
  get trackedChannels(): number {
    return this.tracks.size;
  }

  onMessage(listener: (message: StoredMessage) => void): void {
    this.listener = listener;
  }

  async publish(channel: string, dataJson: string): Promise<StoredMessage> {
    if (this.closed || this.cmd.status !== "ready") throw new BrokerUnavailableError();
    let reply: unknown;
    try {
      reply = await this.cmd.hlPublish(
        this.metaKey(channel),
        this.streamKey(channel),
        this.newEpoch(),
        JSON.stringify(channel),
        dataJson,
        this.historySize,
        this.ttlMs,
        this.fanoutChannel,
        channel,
      );
    } catch (err) {
      throw new BrokerUnavailableError(undefined, err);
    }
    const [epoch, offset] = reply as [string, number];
    const message: StoredMessage = { channel, epoch, offset: Number(offset), json: encodeMessage(channel, Number(offset), dataJson) };
    await this.handedOver(message);
    return message;
  }

  async read(channel: string, since?: Position, limit = Infinity): Promise<ReadResult> {
    const r = await this.readRaw(channel, since, limit);
    // Remember where readers stand, so a later gap (or a reconnect) can be healed from there.
    const t = this.tracks.get(channel);
    if (!t) this.tracks.set(channel, newTrack(r.epoch, r.offset, true, this.clock.now()));
    else {
      t.seenAt = this.clock.now();
      if (t.soft && !t.running && t.epoch !== r.epoch) {
        t.epoch = r.epoch;
        t.offset = r.offset;
      }
    }
    return r;
  }

  /**
   * Forgets the fan-out position of a channel this node no longer serves
   * (`inUse`): `readTtl` after its last read when it was only read,
   * `historyTtl` after its last message otherwise; then, past `maxChannels`,
   * the oldest remembered ones. A channel forgotten and then notified again
   * starts a new track at that message, so forgetting loses nothing.
   */
  sweep(now: number, inUse?: (channel: string) => boolean): void {
    for (const [channel, t] of this.tracks) {
      if (t.running) continue;
      if (now - t.seenAt >= (t.soft ? this.readTtlMs : this.ttlMs) && !inUse?.(channel)) this.tracks.delete(channel);
      else if (t.needsHeal && this.isReady()) this.enqueue(channel, t, null);
    }
    let over = this.tracks.size - this.maxTracks;
    if (over <= 0) return;
    for (const [channel, t] of this.tracks) {
      if (over <= 0) break;
      if (t.running || t.needsHeal || inUse?.(channel)) continue;
      this.tracks.delete(channel);
      over--;
    }
  }

  usage(): BrokerUsage {
    return { channels: this.tracks.size };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscribed = false;
    this.releaseWaiters();
    await Promise.all(
      [this.cmd, this.sub].map(async (client) => {
        if (client.status === "ready") await client.quit().catch(() => {});
        client.disconnect();
      }),
    );
    this.tracks.clear();
  }

  // ---- Redis calls ----

  private metaKey(channel: string): string {
    return this.prefix + "{" + channel + "}:m";
  }

  private streamKey(channel: string): string {
    return this.prefix + "{" + channel + "}:s";
  }

  private newEpoch(): string {
    return this.epochSeed + (this.epochCounter++).toString(36);
  }

  /** The read script, without touching the fan-out bookkeeping. */
  private async readRaw(channel: string, since: Position | undefined, limit: number): Promise<ReadResult> {
    if (this.closed || this.cmd.status !== "ready") throw new BrokerUnavailableError("The broker is unavailable; history cannot be read.");
    let reply: unknown;
    try {
      reply = await this.cmd.hlRead(
        this.metaKey(channel),
        this.streamKey(channel),
        this.newEpoch(),
        this.ttlMs,
        since ? since.epoch : "",
        since ? since.offset : 0,
        Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : -1,
      );
    } catch (err) {
      throw new BrokerUnavailableError("The broker is unavailable; history cannot be read.", err);
    }
    const a = reply as Array<string | number>;
    const epoch = String(a[0]);
    const messages: StoredMessage[] = [];
    for (let i = 3; i + 1 < a.length; i += 2) {
      const offset = Number.parseInt(String(a[i]), 10);
      messages.push({ channel, epoch, offset, json: encodeMessage(channel, offset, String(a[i + 1])) });
    }
    return { epoch, offset: Number(a[1]), messages, recovered: Number(a[2]) === 1 };
  }

  // ---- fan-out and gap healing ----

  private onNotification(payload: string): void {
    const a = payload.indexOf("\n");
    const b = payload.indexOf("\n", a + 1);
    const c = payload.indexOf("\n", b + 1);
    if (a <= 0 || b < 0 || c < 0) {
      this.log.warn({ payload: payload.slice(0, 100) }, "ignored a malformed fan-out notification");
      return;
    }
    const channel = payload.slice(b + 1, c);
    const m: StoredMessage = { channel, epoch: payload.slice(0, a), offset: Number(payload.slice(a + 1, b)), json: payload.slice(c + 1) };
    const t = this.tracks.get(channel);
    const now = this.clock.now();
    if (!t) {
      const fresh = newTrack(m.epoch, m.offset, false, now);
      this.tracks.set(channel, fresh);
      this.hand(fresh, m);
      return;
    }
    t.seenAt = now;
    // Fast path: the next message of a channel with nothing in flight.
    if (!t.running && !t.soft && m.epoch === t.epoch) {
      if (m.offset <= t.offset) return;
      if (m.offset === t.offset + 1) {
        this.hand(t, m);
        return;
      }
    }
    this.enqueue(channel, t, m);
  }

  private enqueue(channel: string, t: Track, task: StoredMessage | null): void {
    if (task === null && t.queue.includes(null)) return;
    t.queue.push(task);
    if (!t.running) void this.drain(channel, t);
  }

  /** Works through a channel's queue in order; reads from history make it asynchronous. */
  private async drain(channel: string, t: Track): Promise<void> {
    t.running = true;
    try {
      for (let task = t.queue.shift(); task !== undefined; task = t.queue.shift()) {
        if (this.closed) return;
        if (task === null) await this.heal(channel, t);
        else await this.apply(t, task);
      }
    } catch (err) {
      this.log.error({ err, channel }, "error while fanning out");
    } finally {
      t.running = false;
    }
  }

  /** One notification that was not on the fast path. */
  private async apply(t: Track, m: StoredMessage): Promise<void> {
    if (m.epoch !== t.epoch) {
      // A new lifetime of the channel: nothing of it has been handed over yet.
      t.epoch = m.epoch;
      t.offset = 0;
      t.soft = false;
    } else if (t.soft) {
      if (m.offset <= t.offset) {
        // Published before the read that set the floor; the listener has not had it.
        this.hand(t, m);
        return;
      }
    } else if (m.offset <= t.offset) {
      return;
    }
    if (m.offset > t.offset + 1) await this.fill(m.channel, t, m.offset - 1);
    if (m.epoch === t.epoch && m.offset > t.offset) this.hand(t, m);
  }

  /**
   * Hands the listener what history holds after `t.offset`, up to `upTo`.
   * When that range is trimmed away it goes on from the oldest message history
   * still holds (the hub announces the jump as a reset). Resolves false when
   * Redis could not be read.
   */
  private async fill(channel: string, t: Track, upTo: number): Promise<boolean> {
    let jumps = 0;
    while (t.offset < upTo && !this.closed) {
      let r: ReadResult;
      try {
        r = await this.readRaw(channel, { epoch: t.epoch, offset: t.offset }, Math.min(upTo - t.offset, HEAL_BATCH));
        if (r.epoch !== t.epoch) return true;
        if (!r.recovered) {
          // History is trimmed exactly to historySize, so its oldest message follows this position.
          const oldest = r.offset - this.historySize;
          if (jumps++ >= 3 || oldest <= t.offset || oldest >= upTo) return true;
          r = await this.readRaw(channel, { epoch: t.epoch, offset: oldest }, Math.min(upTo - oldest, HEAL_BATCH));
          if (r.epoch !== t.epoch || !r.recovered) continue;
        }
      } catch (err) {
        this.log.warn({ err, channel }, "could not read history to fill a fan-out gap");
        return false;
      }
      if (r.messages.length === 0) return true;
      for (const m of r.messages) {
        if (m.offset <= t.offset) continue;
        this.healedMessages++;
        this.hand(t, m);
      }
    }
    return true;
  }

  /** After the fan-out connection was down: catch up with everything published meanwhile. */
  private async heal(channel: string, t: Track): Promise<void> {
    let r: ReadResult;
    try {
      // Limit 0: only the channel's epoch and latest offset.
      r = await this.readRaw(channel, { epoch: t.epoch, offset: t.offset }, 0);
    } catch {
      t.needsHeal = true;
      return;
    }
    t.needsHeal = false;
    if (r.epoch !== t.epoch) {
      // The history was lost meanwhile (Redis without data, expiry): continue in the new epoch from its start.
      t.epoch = r.epoch;
      t.offset = 0;
      t.soft = false;
    }
    if (t.offset < r.offset && !(await this.fill(channel, t, r.offset))) t.needsHeal = true;
  }

  /** Hands one message to the listener, in order, and releases publishes waiting for it. */
  private hand(t: Track, m: StoredMessage): void {
    t.offset = m.offset;
    t.soft = false;
    try {
      this.listener(m);
    } catch (err) {
      this.log.error({ err, channel: m.channel }, "fan-out listener failed");
    }
    if (this.waiterCount > 0) this.release(m);
  }

  // ---- publishes waiting for their notification ----

  /** Resolves once this node's listener has been handed `m` (or cannot be soon). */
  private handedOver(m: StoredMessage): Promise<void> | undefined {
    if (!this.subscribed) return undefined;
    const t = this.tracks.get(m.channel);
    if (t && !t.soft && t.epoch === m.epoch && t.offset >= m.offset) return undefined;
    return new Promise<void>((resolve) => {
      let list = this.waiters.get(m.channel);
      if (!list) this.waiters.set(m.channel, (list = []));
      list.push({ epoch: m.epoch, offset: m.offset, deadline: performance.now() + FANOUT_WAIT_MS, resolve });
      this.waiterCount++;
      this.waiterTimer ??= setInterval(() => this.expireWaiters(), FANOUT_WAIT_MS / 4).unref();
    });
  }

  private release(m: StoredMessage): void {
    const list = this.waiters.get(m.channel);
    if (!list) return;
    let kept = 0;
    for (const w of list) {
      if (w.epoch === m.epoch && w.offset <= m.offset) w.resolve();
      else list[kept++] = w;
    }
    this.waiterCount -= list.length - kept;
    list.length = kept;
    if (kept === 0) this.waiters.delete(m.channel);
    this.stopWaiterTimer();
  }

  private expireWaiters(): void {
    const now = performance.now();
    for (const [channel, list] of this.waiters) {
      let kept = 0;
      for (const w of list) {
        if (w.deadline <= now) w.resolve();
        else list[kept++] = w;
      }
      this.waiterCount -= list.length - kept;
      list.length = kept;
      if (kept === 0) this.waiters.delete(channel);
    }
    this.stopWaiterTimer();
  }

  private releaseWaiters(): void {
    for (const list of this.waiters.values()) for (const w of list) w.resolve();
    this.waiters.clear();
    this.waiterCount = 0;
    this.stopWaiterTimer();
  }

  private stopWaiterTimer(): void {
    if (this.waiterCount === 0 && this.waiterTimer) {
      clearInterval(this.waiterTimer);
      this.waiterTimer = undefined;
    }
  }

  // ---- connection events ----

  private onCommandReady(): void {
    this.cameBack("command");
    for (const [channel, t] of this.tracks) if (t.needsHeal && this.subscribed) this.enqueue(channel, t, null);
  }

  private onSubscriberReady(): void {
    this.sub.subscribe(this.fanoutChannel).then(
      () => {
        if (this.closed) return;
        this.subscribed = true;
        this.cameBack("fan-out");
        // Anything published while the subscription was down is in history: catch up from there.
        for (const [channel, t] of this.tracks) this.enqueue(channel, t, null);
      },
      (err: unknown) => {
        this.log.warn({ err }, "could not subscribe to the Redis fan-out channel; reconnecting");
        this.sub.disconnect(true);
      },
    );
  }

  private onSubscriberClose(): void {
    this.subscribed = false;
    // Notifications in flight are lost with the connection; the heal on `ready` makes up for them.
    this.releaseWaiters();
    this.wentDown("fan-out");
  }

  private wentDown(which: string): void {
    if (this.closed || this.down) return;
    this.down = true;
    this.log.warn({ connection: which }, "Redis connection lost; publishing answers 503 until it is back");
  }

  private cameBack(which: string): void {
    if (!this.isReady()) return;
    if (this.down) this.log.info({ connection: which }, "Redis connection back");
    this.down = false;
  }

  private onError(which: string, err: Error): void {
    // Connection errors repeat on every reconnection attempt; the transitions are logged once each.
    this.log.debug({ err, connection: which }, "Redis error");
  }
}

function newTrack(epoch: string, offset: number, soft: boolean, now: number): Track {
  return { epoch, offset, soft, seenAt: now, queue: [], running: false, needsHeal: false };
}
