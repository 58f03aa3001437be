/**
 * The cluster broker: history and offsets in Redis, fan-out through Redis
 * pub/sub, so any node accepts any publisher or subscriber.
 *
 * - `publish` is one Lua script (see redis-scripts.ts): next offset, append to
 *   the channel's stream, refresh the TTL and publish the fan-out
 *   notification on the channel's own pub/sub name, atomically, so
 *   notifications leave Redis in offset order. It resolves once the message
 *   is stored and, when this node subscribes the channel, once this node's
 *   listener has been handed it (or the fan-out connection is down, or a short
 *   wait ran out), so a publisher sees the same order on a node as with the
 *   memory broker.
 * - Interest (SPEC §13): a node subscribes only to the channels the hub has
 *   declared interest in (`interest`), batched and lingering; see
 *   redis-subscriptions.ts. With `subscribeAll`, one pattern subscription
 *   receives every channel instead (the design before interest, kept for
 *   comparison in the cluster benchmark).
 * - A publish with an idempotency key checks and records the key in that same
 *   script (the key lives in the channel's hash slot): a repeat answers the
 *   recorded first result and neither stores nor notifies.
 * - `read` is one Lua script too, and creates the channel's epoch when the
 *   channel has none, so a subscriber's epoch is the one the first publish uses.
 * - Gap healing and continuity: see redis-fanout.ts; publishes waiting for
 *   their own notification: redis-waiters.ts.
 * - Holds (presence, occupancy, the event feed): redis-holds.ts. Signals:
 *   PUBLISH on `<prefix>signal`. Both arrive through the subscriber
 *   connection, which subscribes to `<prefix>signal` and `<prefix>holds` on
 *   every `ready`, then to the wanted channels, and routes by name; they are
 *   at most once (a node cut off at that moment misses them).
 * - `removeHistory` deletes the channel's meta hash and stream (idempotency
 *   keys stay): the next read or publish starts a new epoch, which the
 *   fan-out follows like any other epoch change.
 * - Connections, one Redis or a Redis Cluster (SSUBSCRIBE/SPUBLISH), and
 *   why a publish fails fast with `BrokerUnavailableError` (503) in an
 *   outage: redis-connections.ts. They reconnect by themselves.
 */
import { randomBytes } from "node:crypto";
import type { Cluster, Redis } from "ioredis";
import { sleepOn, systemClock, type Clock } from "../clock.js";
import { BrokerUnavailableError } from "../errors.js";
import { createLogger, type Logger } from "../log.js";
import { encodeMessage, type Broker, type BrokerUsage, type Position, type ReadResult, type StoredMessage } from "./broker.js";
import { FanoutTracks } from "./redis-fanout.js";
import { RedisHolds } from "./redis-holds.js";
import { ChannelSubscriptions } from "./redis-subscriptions.js";
import type { RedisTopology } from "../redis-topology.js";
import { openConnections, ShardedFanout, type RedisConnections } from "./redis-connections.js";
import { channelKeys, notificationName, onceKey, publishLua, READ_LUA, RENEW_LUA } from "./redis-scripts.js";

export interface RedisBrokerOptions {
  /** `redis://…` or `rediss://…` */
  url: string;
  /** A Redis Cluster instead of `url`: its seed nodes (see redis-topology.ts). */
  cluster?: Extract<RedisTopology, { kind: "cluster" }>;
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
  /** Prefix of every key and pub/sub channel (fan-out, signals, holds). Default `heartline:`. */
  prefix?: string;
  /** Time source for forgetting silent channels and for hold expiries (see redis-holds.ts). Default: the system clock. */
  clock?: Clock;
  logger?: Logger;
  /** Seconds an idempotency key is remembered after its first publish. Default 300. */
  idempotencyTtl?: number;
  /** Milliseconds a command may take before it fails. Default 2000. */
  commandTimeoutMs?: number;
  /** Milliseconds a connection attempt may take. Default 2000. */
  connectTimeoutMs?: number;
  /** Longest wait between reconnection attempts, in milliseconds. Default 1000. */
  maxReconnectDelayMs?: number;
  /** Milliseconds a channel stays subscribed after its last local interest (see redis-subscriptions.ts). Default 2000. */
  lingerMs?: number;
  /** Receive every channel's notifications through one pattern subscription, whatever this node serves. Default false. */
  subscribeAll?: boolean;
}

type Script = (...args: Array<string | number>) => Promise<unknown>;
type CommandClient = (Redis | Cluster) & { hlPublish: Script; hlPublishOnce: Script; hlRead: Script };

export class RedisBroker implements Broker {
  private readonly cmd: CommandClient;
  private readonly sub: Redis | Cluster;
  private readonly conn: RedisConnections;
  private readonly prefix: string;
  private readonly signalChannel: string;
  /** With `subscribeAll`: the pattern that matches every channel's notification name. */
  private readonly allPattern: string | undefined;
  private readonly channelSubs: ChannelSubscriptions; // the channels this node subscribes to
  readonly holds: RedisHolds; // the cluster-wide holds (redis-holds.ts)
  private signalListener: (payload: string) => void = () => {};
  private readonly ttlMs: number;
  private readonly readTtlMs: number;
  private readonly idempotencyTtlMs: number;
  private readonly maxTracks: number;
  private readonly historySize: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  /** Fan-out continuity per channel, and publishes waiting for their notification. */
  private readonly fanout: FanoutTracks;
  private readonly shards: ShardedFanout | undefined; // on a Redis Cluster: failover handling (redis-connections.ts)
  private closed = false;
  private down = false;
  /** Fan-out notifications received, and their bytes (this node's ingress). */
  private notifications = 0;
  private notificationBytes = 0;
  /** Epochs are this node's random prefix plus a counter: unique without a random draw each. */
  private readonly epochSeed = randomBytes(8).toString("base64url");
  private epochCounter = 0;

  constructor(options: RedisBrokerOptions) {
    const prefix = options.prefix ?? "heartline:";
    if (/[{}]/.test(prefix)) throw new TypeError(`invalid Redis key prefix ${JSON.stringify(prefix)}: it may not contain { or }`);
    if (!Number.isInteger(options.historySize) || options.historySize < 0) {
      throw new TypeError(`invalid historySize ${options.historySize}: expected an integer ≥ 0`);
    }
    if (!(options.historyTtl > 0)) throw new TypeError(`invalid historyTtl ${options.historyTtl}: expected seconds > 0`);
    if (options.cluster && options.subscribeAll) throw new TypeError("subscribeAll needs one Redis: sharded pub/sub has no patterns");
    this.prefix = prefix;
    this.signalChannel = prefix + "signal";
    this.ttlMs = Math.max(1, Math.ceil(options.historyTtl * 1000));
    this.readTtlMs = Math.max(1, Math.ceil((options.readTtl ?? Math.min(options.historyTtl, 60)) * 1000));
    this.idempotencyTtlMs = Math.max(1, Math.ceil((options.idempotencyTtl ?? 300) * 1000));
    this.maxTracks = options.maxChannels ?? 100_000;
    this.historySize = options.historySize;
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? createLogger("silent");
    this.fanout = new FanoutTracks({
      historySize: this.historySize,
      ttlMs: this.ttlMs,
      readTtlMs: this.readTtlMs,
      maxTracks: this.maxTracks,
      clock: this.clock,
      log: this.log,
      readRaw: (channel, since, limit) => this.readRaw(channel, since, limit),
      renew: async (channel, epoch) => void (await this.cmd.eval(RENEW_LUA, 2, ...channelKeys(this.prefix, channel), epoch)),
      isReady: () => this.isReady(),
      isActive: (channel) => this.isSubscribed(channel),
    });
    this.allPattern = options.subscribeAll ? prefix + "{*}:f" : undefined;
    const { commandTimeoutMs = 2000, connectTimeoutMs = 2000, maxReconnectDelayMs = 1000 } = options;
    const conn = openConnections({ url: options.url, cluster: options.cluster, commandTimeoutMs, connectTimeoutMs, maxReconnectDelayMs });
    this.conn = conn;
    this.cmd = conn.cmd as CommandClient;
    this.sub = conn.sub;
    const publishScript = publishLua(conn.sharded ? "SPUBLISH" : "PUBLISH");
    this.cmd.defineCommand("hlPublish", { numberOfKeys: 2, lua: publishScript });
    this.cmd.defineCommand("hlPublishOnce", { numberOfKeys: 3, lua: publishScript });
    this.cmd.defineCommand("hlRead", { numberOfKeys: 2, lua: READ_LUA });
    const route = (channel: string, payload: string) => this.onPubSub(channel, payload);
    this.cmd.on("ready", () => this.onCommandReady());
    this.sub.on("ready", () => this.onSubscriberReady());
    this.sub.on("close", () => this.onSubscriberClose());
    this.cmd.on("close", () => this.wentDown("command"));
    this.cmd.on("error", (err: Error) => this.onError("command", err));
    this.sub.on("error", (err: Error) => this.onError("fan-out", err));
    this.sub.on("message", route);
    this.sub.on("pmessage", (_pattern: string, _channel: string, payload: string) => this.notified(payload));
    this.shards = conn.sharded ? new ShardedFanout(this.sub as Cluster, this.log, () => this.onResubscribed(), route) : undefined;
    this.channelSubs = new ChannelSubscriptions({
      link: conn.link,
      nameOf: (channel) => notificationName(this.prefix, channel),
      lingerMs: options.lingerMs ?? 2000,
      log: this.log,
      onActive: (channels) => this.fanout.activated(channels),
      onFailure: (err) => {
        if (this.shards) this.shards.subscribeFailed(err, () => this.channelSubs.retry());
        else {
          this.log.warn({ err }, "could not subscribe to channels' notifications; reconnecting");
          this.sub.disconnect(true);
        }
      },
    });
    this.holds = new RedisHolds({
      client: this.cmd,
      cluster: conn.sharded,
      prefix,
      clock: this.clock,
      log: this.log,
      available: () => !this.closed && this.cmd.status === "ready",
      // The system clock is the process's own monotonic time: hold expiries go to Redis as wall-clock ms.
      origin: this.clock === systemClock ? Date.now() - systemClock.now() : 0,
    });
  }

  /** Whether both connections are up (on a Redis Cluster: the command cluster) and the base subscription is active. */
  isReady(): boolean {
    return !this.closed && this.cmd.status === "ready" && this.fanout.subscribed;
  }

  /** Resolves true once ready, or false after `timeoutMs`. */
  async waitReady(timeoutMs: number): Promise<boolean> {
    const clock = this.clock;
    const deadline = clock.now() + timeoutMs;
    while (!this.isReady()) {
      if (this.closed || clock.now() >= deadline) return false;
      await sleepOn(clock, 20);
    }
    return true;
  }

  /** Channels whose fan-out position is remembered; for tests and metrics. */
  get trackedChannels(): number {
    return this.fanout.size;
  }

  /** Messages the listener got from history because their notification was missed. */
  get healedMessages(): number {
    return this.fanout.healedMessages;
  }

  /** Channels whose notifications this node subscribes to (wanted or lingering); for tests and metrics. */
  get subscribedChannels(): number {
    return this.channelSubs.size;
  }

  /** Whether `channel`'s notifications arrive now (its subscription is active). */
  isSubscribed(channel: string): boolean {
    return this.allPattern !== undefined ? this.fanout.subscribed : this.channelSubs.isActive(channel);
  }

  /** SUBSCRIBE/UNSUBSCRIBE commands sent for channels so far; for tests and the capacity model. */
  get subscriptionCommands(): number {
    return this.channelSubs.commands;
  }

  /**
   * The hub's interest in `channel` starts (`true`: its first local
   * subscription or waiting poll) or ends (`false`: its last is gone). No
   * Redis command waits on this call (see redis-subscriptions.ts).
   */
  interest(channel: string, wanted: boolean): void {
    if (this.closed || this.allPattern !== undefined) return;
    if (wanted) this.channelSubs.want(channel);
    else this.channelSubs.drop(channel, this.clock.now());
  }

  onMessage(listener: (message: StoredMessage) => void): void {
    this.fanout.listener = listener;
  }

  async publish(channel: string, dataJson: string, idempotencyKey?: string): Promise<StoredMessage> {
    if (this.closed || this.cmd.status !== "ready") throw new BrokerUnavailableError();
    const args: Array<string | number> = [this.newEpoch(), JSON.stringify(channel), dataJson, this.historySize, this.ttlMs, notificationName(this.prefix, channel), channel];
    let reply: unknown;
    try {
      reply =
        idempotencyKey === undefined
          ? await this.cmd.hlPublish(...channelKeys(this.prefix, channel), ...args)
          : await this.cmd.hlPublishOnce(...channelKeys(this.prefix, channel), onceKey(this.prefix, channel, idempotencyKey), ...args, this.idempotencyTtlMs);
    } catch (err) {
      throw new BrokerUnavailableError(undefined, err);
    }
    const [epoch, rawOffset, repeated] = reply as [string, number, number];
    const offset = Number(rawOffset);
    const json = encodeMessage(channel, offset, dataJson);
    // A repeat stored and notified nothing: there is nothing to wait for.
    if (Number(repeated) === 1) return { channel, epoch: String(epoch), offset, json, repeated: true };
    const message: StoredMessage = { channel, epoch, offset, json };
    await this.fanout.handedOver(message);
    return message;
  }

  /** PUBLISH (SPUBLISH on a Redis Cluster) on `<prefix>signal`: every node subscribed at that moment, this one included, hands it to its listener once. */
  async signal(payload: string): Promise<void> {
    const message = "The broker is unavailable; the signal was not sent.";
    if (this.closed || this.cmd.status !== "ready") throw new BrokerUnavailableError(message);
    try {
      await this.conn.signal(this.signalChannel, payload);
    } catch (err) {
      throw new BrokerUnavailableError(message, err);
    }
  }

  onSignal(listener: (payload: string) => void): void {
    this.signalListener = listener;
  }

  /**
   * Deletes the channel's meta hash and stream (one DEL: both keys are in the
   * channel's slot). Idempotency keys stay, as on the memory broker.
   */
  async removeHistory(channel: string): Promise<void> {
    const message = "The broker is unavailable; the history was not removed.";
    if (this.closed || this.cmd.status !== "ready") throw new BrokerUnavailableError(message);
    try {
      await this.cmd.del(...channelKeys(this.prefix, channel));
    } catch (err) {
      throw new BrokerUnavailableError(message, err);
    }
  }

  async read(channel: string, since?: Position, limit = Infinity): Promise<ReadResult> {
    const activations = this.channelSubs.activations;
    const r = await this.readRaw(channel, since, limit);
    // Remember where readers stand, so a later gap (or a reconnect) can be healed from there.
    this.fanout.onRead(channel, r);
    // The channel's subscription took effect while this read was on its way: it may have missed what came between.
    if (activations !== this.channelSubs.activations && this.channelSubs.isActive(channel)) this.fanout.activated([channel]);
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
    for (const channel of this.channelSubs.sweep(now)) this.fanout.forget(channel);
    this.fanout.sweep(now, inUse);
  }

  usage(): BrokerUsage {
    return { channels: this.fanout.size, subscribedChannels: this.channelSubs.size, notifications: this.notifications, notificationBytes: this.notificationBytes };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.shards?.close();
    this.fanout.close();
    await Promise.all(
      [this.cmd, this.sub].map(async (client) => {
        if (client.status === "ready") await client.quit().catch(() => {});
        client.disconnect();
      }),
    );
    this.fanout.close(true);
  }

  // ---- Redis calls ----

  private newEpoch(): string {
    return this.epochSeed + (this.epochCounter++).toString(36);
  }

  /** The read script, without touching the fan-out bookkeeping. */
  private async readRaw(channel: string, since: Position | undefined, limit: number): Promise<ReadResult> {
    if (this.closed || this.cmd.status !== "ready") throw new BrokerUnavailableError("The broker is unavailable; history cannot be read.");
    let reply: unknown;
    try {
      reply = await this.cmd.hlRead(
        ...channelKeys(this.prefix, channel),
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

  // ---- connection events ----

  private onCommandReady(): void {
    this.cameBack("command");
    if (this.fanout.subscribed) this.fanout.healAll(true);
  }

  /** A message on the subscriber connection, routed by its pub/sub channel. */
  private onPubSub(channel: string, payload: string): void {
    if (channel === this.holds.channel) this.holds.onNotification(payload);
    else if (channel === this.signalChannel) {
      try {
        this.signalListener(payload);
      } catch (err) {
        this.log.error({ err }, "signal listener failed");
      }
    } else if (this.channelSubs.has(channel.slice(this.prefix.length + 1, -3))) this.notified(payload);
    // else: a channel unsubscribed a moment ago (its UNSUBSCRIBE is on its way)
  }

  private notified(payload: string): void {
    this.notifications++;
    this.notificationBytes += Buffer.byteLength(payload);
    this.fanout.onNotification(payload);
  }

  private onSubscriberReady(): void {
    const all = this.allPattern;
    Promise.all([this.conn.subscribeBase(this.signalChannel, this.holds.channel), all !== undefined ? this.sub.psubscribe(all) : undefined]).then(
      () => {
        if (this.closed) return;
        this.fanout.subscribed = true;
        this.cameBack("fan-out");
        // Anything published while the subscription was down is in history: each channel catches up from there once subscribed again.
        if (all !== undefined) this.fanout.healAll(false);
        else this.channelSubs.connected();
      },
      (err: unknown) => {
        this.log.warn({ err }, "could not subscribe to the Redis signal and holds channels; reconnecting");
        this.sub.disconnect(true);
      },
    );
  }

  /** ioredis resubscribed the sharded subscriber after a topology change: catch up what the failover window missed. */
  private onResubscribed(): void {
    if (!this.closed && this.fanout.subscribed) this.fanout.activated(this.channelSubs.activeChannels());
  }

  private onSubscriberClose(): void {
    this.fanout.subscribed = false;
    this.channelSubs.disconnected();
    // Notifications in flight are lost with the connection; the heal on `ready` makes up for them.
    this.fanout.waiters.releaseAll();
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
