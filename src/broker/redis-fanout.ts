/**
 * The cluster broker's fan-out continuity (see redis.ts): per channel, the
 * last offset handed to the listener. A notification past `last + 1` first
 * reads the missing range from history; one at or below `last` is a
 * duplicate and is dropped. When the fan-out connection comes back after a
 * drop, every remembered channel is read again from its last offset. What
 * history no longer holds is skipped, and the hub announces the gap as a
 * reset; what history holds but cannot be read at the moment waits for the
 * next heal instead. A queue per channel keeps offset order while those reads are in
 * flight. Publishes waiting for their notification are released here.
 * History found behind what was handed over (messages lost by Redis inside
 * an epoch) ends the epoch, so the loss is announced as a reset.
 */
import type { Clock } from "../clock.js";
import type { Logger } from "../log.js";
import type { Position, ReadResult, StoredMessage } from "./broker.js";
import { FanoutWaiters } from "./redis-waiters.js";

/** Messages read per step while healing a gap. */
const HEAL_BATCH = 500;

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

export interface FanoutOptions {
  historySize: number;
  /** Milliseconds a channel's track is kept after its last message. */
  ttlMs: number;
  /** Milliseconds a track set only by reads is kept after the last read. */
  readTtlMs: number;
  /** Most tracks kept beyond the channels in use. */
  maxTracks: number;
  clock: Clock;
  log: Logger;
  /** Reads history without touching the tracks (the broker's read script). */
  readRaw(channel: string, since: Position | undefined, limit: number): Promise<ReadResult>;
  /**
   * Ends the channel's epoch `epoch` (its history is dropped; the next read or
   * publish starts a new one) when that is still its epoch.
   */
  renew(channel: string, epoch: string): Promise<void>;
  /** Whether Redis can be read now (both connections up, subscription active). */
  isReady(): boolean;
  /** Whether `channel`'s notifications arrive now (its subscription is active). */
  isActive(channel: string): boolean;
}

export class FanoutTracks {
  listener: (message: StoredMessage) => void = () => {};
  private readonly tracks = new Map<string, Track>();
  readonly waiters: FanoutWaiters;
  /** The fan-out subscription is active: notifications are arriving. */
  subscribed = false;
  closed = false;
  /** Messages the listener got from history because their notification was missed. */
  healedMessages = 0;

  constructor(private readonly o: FanoutOptions) {
    this.waiters = new FanoutWaiters(o.clock);
  }

  get size(): number {
    return this.tracks.size;
  }

  /** A `read` answered `r`: remembers where readers stand, so a later gap (or a reconnect) can be healed from there. */
  onRead(channel: string, r: ReadResult): void {
    const t = this.tracks.get(channel);
    if (!t) this.tracks.set(channel, newTrack(r.epoch, r.offset, true, this.o.clock.now()));
    else {
      t.seenAt = this.o.clock.now();
      if (t.soft && !t.running && t.epoch !== r.epoch) {
        t.epoch = r.epoch;
        t.offset = r.offset;
      }
    }
  }

  /** Resolves once this node's listener has been handed `m` (or cannot be soon). */
  handedOver(m: StoredMessage): Promise<void> | undefined {
    if (!this.subscribed || !this.o.isActive(m.channel)) return undefined;
    const t = this.tracks.get(m.channel);
    if (t && !t.soft && t.epoch === m.epoch && t.offset >= m.offset) return undefined;
    return this.waiters.wait(m);
  }

  /** See RedisBroker.sweep. */
  sweep(now: number, inUse?: (channel: string) => boolean): void {
    for (const [channel, t] of this.tracks) {
      if (t.running) continue;
      if (now - t.seenAt >= (t.soft ? this.o.readTtlMs : this.o.ttlMs) && !inUse?.(channel)) this.tracks.delete(channel);
      else if (t.needsHeal && this.o.isReady()) this.enqueue(channel, t, null);
    }
    let over = this.tracks.size - this.o.maxTracks;
    if (over <= 0) return;
    for (const [channel, t] of this.tracks) {
      if (over <= 0) break;
      if (t.running || t.needsHeal || inUse?.(channel)) continue;
      this.tracks.delete(channel);
      over--;
    }
  }

  /**
   * Channels whose subscription just became active: each one read before is
   * caught up from history, for what was published between that read and
   * the subscription taking effect.
   */
  activated(channels: readonly string[]): void {
    for (const channel of channels) {
      const t = this.tracks.get(channel);
      if (t) this.enqueue(channel, t, null);
    }
  }

  /** Forgets a channel this node stopped subscribing to (its position would go stale). */
  forget(channel: string): void {
    const t = this.tracks.get(channel);
    if (t && !t.running) this.tracks.delete(channel);
  }

  /** Catches every remembered channel up from history (`onlyFailed`: those whose last heal failed). */
  healAll(onlyFailed: boolean): void {
    for (const [channel, t] of this.tracks) if (!onlyFailed || t.needsHeal) this.enqueue(channel, t, null);
  }

  /** Stops fanning out and releases every waiting publish; `forget` drops the tracks (once the connections are closed). */
  close(forget = false): void {
    this.closed = true;
    this.subscribed = false;
    this.waiters.releaseAll();
    if (forget) this.tracks.clear();
  }

  onNotification(payload: string): void {
    const a = payload.indexOf("\n");
    const b = payload.indexOf("\n", a + 1);
    const c = payload.indexOf("\n", b + 1);
    if (a <= 0 || b < 0 || c < 0) {
      this.o.log.warn({ payload: payload.slice(0, 100) }, "ignored a malformed fan-out notification");
      return;
    }
    const channel = payload.slice(b + 1, c);
    const m: StoredMessage = { channel, epoch: payload.slice(0, a), offset: Number(payload.slice(a + 1, b)), json: payload.slice(c + 1) };
    const t = this.tracks.get(channel);
    const now = this.o.clock.now();
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
      this.o.log.error({ err, channel }, "error while fanning out");
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
    if (m.offset > t.offset + 1 && !(await this.fill(m.channel, t, m.offset - 1))) {
      // History could not be read now (Redis paused, a connection cut): what is missing is still stored, so
      // `m` waits with it for the heal (retried by the sweep once Redis answers), which hands both over in
      // order. Handed over the gap, `m` would turn a delay into a reset, and the messages into a loss.
      t.needsHeal = true;
      return;
    }
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
        r = await this.o.readRaw(channel, { epoch: t.epoch, offset: t.offset }, Math.min(upTo - t.offset, HEAL_BATCH));
        if (r.epoch !== t.epoch) return true;
        if (!r.recovered) {
          // History is trimmed exactly to historySize, so its oldest message follows this position.
          const oldest = r.offset - this.o.historySize;
          if (jumps++ >= 3 || oldest <= t.offset || oldest >= upTo) return true;
          r = await this.o.readRaw(channel, { epoch: t.epoch, offset: oldest }, Math.min(upTo - oldest, HEAL_BATCH));
          if (r.epoch !== t.epoch || !r.recovered) continue;
        }
      } catch (err) {
        this.o.log.warn({ err, channel }, "could not read history to fill a fan-out gap");
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
      r = await this.o.readRaw(channel, { epoch: t.epoch, offset: t.offset }, 0);
    } catch {
      t.needsHeal = true;
      return;
    }
    if (r.epoch === t.epoch && r.offset < t.offset && !t.soft) {
      // History went backwards inside one epoch: messages already handed over are gone (on a Redis Cluster, a
      // failover to a replica that had not received them). Their offsets would be given again to other messages,
      // so the epoch ends: subscribers get a reset, never a silent loss or a message mistaken for a duplicate.
      this.o.log.warn({ channel, offset: t.offset, stored: r.offset }, "a channel's history lost messages already delivered; starting a new epoch");
      try {
        await this.o.renew(channel, t.epoch);
        r = await this.o.readRaw(channel, undefined, 0);
      } catch {
        t.needsHeal = true;
        return;
      }
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
      this.o.log.error({ err, channel: m.channel }, "fan-out listener failed");
    }
    if (this.waiters.count > 0) this.waiters.release(m);
  }
}

function newTrack(epoch: string, offset: number, soft: boolean, now: number): Track {
  return { epoch, offset, soft, seenAt: now, queue: [], running: false, needsHeal: false };
}
