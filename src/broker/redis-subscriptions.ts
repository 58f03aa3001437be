/**
 * Interest-based fan-out (SPEC §13): the Redis pub/sub subscriptions of one
 * node, one per channel it serves, so its Redis ingress follows its own
 * channels rather than the whole cluster's traffic.
 *
 * - `want(channel)` is called by the hub when the channel gains its first
 *   local interest (a subscription or a waiting poll); `drop(channel)` when it
 *   loses its last. Both are map operations: the SUBSCRIBE commands of every
 *   channel wanted in one turn go out together, up to {@link BATCH} names per
 *   command, on the next turn.
 * - A dropped channel stays subscribed for `lingerMs` (the broker's sweep
 *   unsubscribes it after that, many names per UNSUBSCRIBE), so a channel
 *   that gains and loses its only subscriber many times a second costs no
 *   Redis command at all; wanted again meanwhile, it was never left.
 * - A channel is *active* once Redis acknowledged its subscription: from then
 *   on its notifications arrive. `onActive` is told, and the broker catches the
 *   channel up from history (redis-fanout.ts), which covers what was published
 *   between a subscriber's read and the subscription taking effect.
 * - When the subscriber connection drops, nothing is active; once it is back
 *   (`connected`), every wanted channel is subscribed again, in batches.
 *
 * The commands themselves are the link's: classic SUBSCRIBE on one Redis or
 * one shard, SSUBSCRIBE (one per name) on a Redis Cluster (redis-connections.ts).
 */
import type { Logger } from "../log.js";

/** Names per SUBSCRIBE or UNSUBSCRIBE command. */
export const BATCH = 1000;

/** How subscriptions reach Redis. */
export interface SubscribeLink {
  subscribe(names: string[]): Promise<unknown>;
  unsubscribe(names: string[]): Promise<unknown>;
}

/** One wanted channel: `active` once Redis acknowledged it; `sent` while asked. */
interface Entry {
  name: string;
  active: boolean;
  sent: boolean;
}

export interface ChannelSubscriptionsOptions {
  link: SubscribeLink;
  /** The pub/sub name of a channel's notifications. */
  nameOf(channel: string): string;
  /** Milliseconds a dropped channel stays subscribed. */
  lingerMs: number;
  log: Logger;
  /** Channels whose subscription just became active. */
  onActive(channels: string[]): void;
  /** Called when a subscribe command fails: the connection should be recycled, or {@link retry} called later. */
  onFailure(err: unknown): void;
}

export class ChannelSubscriptions {
  private readonly entries = new Map<string, Entry>();
  /** Channels without local interest, with the time they lost it. */
  private readonly idle = new Map<string, number>();
  private queue: string[] = [];
  private scheduled = false;
  private connectedNow = false;
  /** SUBSCRIBE and UNSUBSCRIBE commands sent (for tests and the capacity model). */
  commands = 0;
  /** Acknowledged SUBSCRIBE commands: a read that saw this move may have raced its channel's subscription. */
  activations = 0;

  constructor(private readonly o: ChannelSubscriptionsOptions) {}

  /** Channels subscribed or being subscribed (wanted or lingering). */
  get size(): number {
    return this.entries.size;
  }

  /** Whether `channel`'s notifications arrive now. */
  isActive(channel: string): boolean {
    return this.entries.get(channel)?.active === true;
  }

  /** Whether this node subscribes `channel` (active, asked, or lingering). */
  has(channel: string): boolean {
    return this.entries.has(channel);
  }

  want(channel: string): void {
    if (this.entries.has(channel)) {
      this.idle.delete(channel);
      return;
    }
    this.entries.set(channel, { name: this.o.nameOf(channel), active: false, sent: false });
    this.queue.push(channel);
    if (!this.scheduled && this.connectedNow) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  drop(channel: string, now: number): void {
    if (this.entries.has(channel)) this.idle.set(channel, now);
  }

  /** Unsubscribes the channels idle for `lingerMs`; answers them, so their fan-out state can go too. */
  sweep(now: number): string[] {
    const gone: string[] = [];
    const names: string[] = [];
    for (const [channel, since] of this.idle) {
      if (now - since < this.o.lingerMs) continue;
      this.idle.delete(channel);
      const e = this.entries.get(channel);
      if (!e) continue;
      this.entries.delete(channel);
      gone.push(channel);
      if (e.sent || e.active) names.push(e.name);
    }
    if (names.length > 0 && this.connectedNow) {
      for (let i = 0; i < names.length; i += BATCH) {
        this.commands++;
        // A failed UNSUBSCRIBE only leaves traffic that is ignored; the next reconnection clears it.
        this.o.link.unsubscribe(names.slice(i, i + BATCH)).catch((err: unknown) => this.o.log.debug({ err }, "UNSUBSCRIBE failed"));
      }
    }
    return gone;
  }

  /** The subscriber connection is up: subscribe every wanted channel again. */
  connected(): void {
    this.connectedNow = true;
    this.queue = [...this.entries.keys()];
    for (const e of this.entries.values()) e.sent = e.active = false;
    this.flush();
  }

  /** Sends again the subscriptions that failed (the connection stayed up, as a Redis Cluster's does through a failover). */
  retry(): void {
    if (!this.connectedNow) return;
    for (const [channel, e] of this.entries) if (!e.sent && !e.active) this.queue.push(channel);
    this.flush();
  }

  /** The channels whose notifications arrive now. */
  activeChannels(): string[] {
    const out: string[] = [];
    for (const [channel, e] of this.entries) if (e.active) out.push(channel);
    return out;
  }

  /** The subscriber connection dropped: nothing is subscribed any more. */
  disconnected(): void {
    this.connectedNow = false;
    this.queue = [];
    for (const e of this.entries.values()) e.sent = e.active = false;
  }

  private flush(): void {
    this.scheduled = false;
    if (!this.connectedNow || this.queue.length === 0) return;
    const queued = this.queue;
    this.queue = [];
    const batch: Entry[] = [];
    const channels: string[] = [];
    for (const channel of queued) {
      const e = this.entries.get(channel);
      if (!e || e.sent || e.active) continue;
      e.sent = true;
      batch.push(e);
      channels.push(channel);
      if (batch.length === BATCH) this.send(batch.splice(0), channels.splice(0));
    }
    if (batch.length > 0) this.send(batch, channels);
  }

  private send(batch: Entry[], channels: string[]): void {
    this.commands++;
    this.o.link.subscribe(batch.map((e) => e.name)).then(
      () => {
        this.activations++;
        const active: string[] = [];
        for (let i = 0; i < batch.length; i++) {
          const e = batch[i]!;
          // Dropped and forgotten meanwhile (its UNSUBSCRIBE follows), or the connection went down.
          if (this.entries.get(channels[i]!) !== e || !e.sent) continue;
          e.sent = false;
          e.active = true;
          active.push(channels[i]!);
        }
        if (active.length > 0) this.o.onActive(active);
      },
      (err: unknown) => {
        for (const e of batch) e.sent = false;
        this.o.onFailure(err);
      },
    );
  }
}
