/**
 * Several independent Redis instances as one broker (`--redis url1,url2,…`,
 * SPEC §13): each channel lives on one shard, chosen by {@link shardOf}; its
 * keys, stream, idempotency keys and notifications are all there, so every
 * per-channel guarantee of the Redis broker (order, resume, resets, gap
 * healing, idempotency) holds shard by shard unchanged.
 *
 * - Holds (presence, occupancy, the event feed's clients) live on the shard
 *   of their set's name, by the same hash; each node reads every shard's
 *   changes (each shard's broker subscribes to its `<prefix>holds`).
 * - Signals (the server API's actions: disconnect, unsubscribe, revoke,
 *   history removal) go out on the first shard that is up, and every node
 *   subscribes to the signals of every shard: an action reaches every node
 *   whatever shard the channels it concerns live on, and while any shard is up.
 * - A shard that is down makes only its channels fail (503 on publish and on
 *   subscribe there); the others go on. `/readyz` answers 503 and names the
 *   shards that are down.
 * - Changing the list moves channels: a channel hashed to another shard
 *   finds no history there and starts a new epoch, so its subscribers get a
 *   reset (announced, never a silent mix of two histories). Every node must
 *   be given the same list in the same order.
 */
import { BrokerUnavailableError } from "../errors.js";
import type { Broker, BrokerUsage, Position, ReadResult, StoredMessage } from "./broker.js";
import type { HoldChange, Holds, HoldSnapshot } from "./holds.js";
import type { RedisBroker } from "./redis.js";

/**
 * The shard of `name` among `count`: FNV-1a (32 bits) of the name's
 * characters (channel names are ASCII, so these are its UTF-8 bytes),
 * modulo `count`. Offset basis 2166136261, prime 16777619.
 */
export function shardOf(name: string, count: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % count;
}

export class ShardedBroker implements Broker {
  readonly holds: Holds;
  private closed = false;

  /** `shards[i]` serves the channels with `shardOf(channel, shards.length) === i`; `names[i]` says which it is in logs and `/readyz`. */
  constructor(
    private readonly shards: readonly RedisBroker[],
    private readonly names: readonly string[],
  ) {
    if (shards.length === 0) throw new TypeError("a sharded broker needs at least one shard");
    this.holds = new ShardedHolds(shards.map((s) => s.holds));
  }

  private of(channel: string): RedisBroker {
    return this.shards[shardOf(channel, this.shards.length)]!;
  }

  publish(channel: string, dataJson: string, idempotencyKey?: string): Promise<StoredMessage> {
    return this.of(channel).publish(channel, dataJson, idempotencyKey);
  }

  read(channel: string, since?: Position, limit?: number): Promise<ReadResult> {
    return this.of(channel).read(channel, since, limit);
  }

  interest(channel: string, wanted: boolean): void {
    this.of(channel).interest(channel, wanted);
  }

  onMessage(listener: (message: StoredMessage) => void): void {
    for (const s of this.shards) s.onMessage(listener);
  }

  /** Every shard can store messages. */
  isReady(): boolean {
    return !this.closed && this.shards.every((s) => s.isReady());
  }

  /** The shards that cannot store messages now. */
  unavailable(): string[] {
    return this.names.filter((_, i) => !this.shards[i]!.isReady());
  }

  sweep(now: number, inUse?: (channel: string) => boolean): void {
    for (const s of this.shards) s.sweep(now, inUse);
  }

  usage(): BrokerUsage {
    const sum = { channels: 0, subscribedChannels: 0, notifications: 0, notificationBytes: 0 };
    for (const s of this.shards) {
      const u = s.usage();
      sum.channels += u.channels;
      sum.subscribedChannels += u.subscribedChannels ?? 0;
      sum.notifications += u.notifications ?? 0;
      sum.notificationBytes += u.notificationBytes ?? 0;
    }
    return sum;
  }

  async waitReady(timeoutMs: number): Promise<boolean> {
    const ready = await Promise.all(this.shards.map((s) => s.waitReady(timeoutMs)));
    return ready.every(Boolean);
  }

  /** On the first shard that is up; every node hears the signals of every shard. */
  signal(payload: string): Promise<void> {
    const up = this.shards.find((s) => s.isReady());
    if (!up) return Promise.reject(new BrokerUnavailableError("No Redis shard is reachable; the signal was not sent."));
    return up.signal(payload);
  }

  onSignal(listener: (payload: string) => void): void {
    for (const s of this.shards) s.onSignal(listener);
  }

  removeHistory(channel: string): Promise<void> {
    return this.of(channel).removeHistory(channel);
  }

  /** Whether `channel`'s notifications arrive now. */
  isSubscribed(channel: string): boolean {
    return this.of(channel).isSubscribed(channel);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.shards.map((s) => s.close()));
  }
}

/** Holds spread over shards: each set on the shard of its name. */
class ShardedHolds implements Holds {
  constructor(private readonly shards: readonly Holds[]) {}

  private of(set: string): Holds {
    return this.shards[shardOf(set, this.shards.length)]!;
  }

  hold(set: string, key: string, member: string, expiresAt: number): Promise<boolean> {
    return this.of(set).hold(set, key, member, expiresAt);
  }

  release(set: string, key: string): Promise<boolean> {
    return this.of(set).release(set, key);
  }

  async refresh(holds: ReadonlyArray<readonly [set: string, key: string]>, expiresAt: number): Promise<void> {
    const per: Array<Array<readonly [string, string]>> = this.shards.map(() => []);
    for (const h of holds) per[shardOf(h[0], this.shards.length)]!.push(h);
    // Every shard is refreshed even when one fails; the failure is reported after.
    const results = await Promise.allSettled(per.map((list, i) => (list.length > 0 ? this.shards[i]!.refresh(list, expiresAt) : undefined)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  expire(set: string, now: number): Promise<string[]> {
    return this.of(set).expire(set, now);
  }

  members(set: string): Promise<HoldSnapshot> {
    return this.of(set).members(set);
  }

  onChange(listener: (change: HoldChange) => void): void {
    for (const s of this.shards) s.onChange(listener);
  }
}
