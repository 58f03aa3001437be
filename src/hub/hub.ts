/**
 * The hub: channels, subscriptions and fan-out on this node. It knows nothing
 * about HTTP; connections reach it through the small {@link Subscriber}
 * interface and the broker through {@link Broker}.
 *
 * Guarantees kept here, for every subscriber and channel:
 * - messages are handed over in offset order, each once (a subscription
 *   remembers the last offset it handed over and drops anything not newer);
 * - a subscription started from a position replays history after it, then
 *   goes live with no gap: live messages that arrive while history is being
 *   read wait in `pending` and are merged by offset;
 * - a position that history can no longer serve, or an epoch change, is
 *   announced with `reset` before anything else of that channel.
 */
import type { Broker, BrokerUsage, ReadResult, StoredMessage } from "../broker/broker.js";
import { MemoryHolds, type HoldChange, type Holds } from "../broker/holds.js";
import { presenceChangeJson, presenceSnapshotJson } from "../wire.js";
import { positionIn, type Position } from "./cursor.js";
import { OCCUPANCY_MEMBER, OCCUPANCY_PREFIX } from "./event-feed.js";
import { Presence, type Member } from "./presence.js";
import { addRead, lost, type ChannelsRead, type CursorPositions } from "./reads.js";
import { CLOSED, LIVE, Outgoing, PresenceOut, Subscription, type Subscriber } from "./subscription.js";

export { Outgoing, PresenceOut, Subscription, type Subscriber };

function noop(): void {}

export type { ChannelsRead, CursorPositions, Position, StoredMessage };

/** A waiting long poll, woken when any of its channels gets a message. */
export interface Waiter {
  wake(): void;
}

export interface HubOptions {
  /** Channel patterns that track presence (`--presence`). */
  presence?: readonly string[];
  /** Milliseconds a member is kept after its connection ended (`--presence-grace`). */
  presenceGraceMs?: number;
  /** The clock, in ms. */
  now?: () => number;
}

export class Hub {
  private readonly subs = new Map<string, Set<Subscription>>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** Messages stored and fanned out on this node (`messages published`). */
  published = 0;

  /** The cluster-wide holds (presence, occupancy, the event feed's clients); in memory for a broker that has none. */
  readonly holds: Holds;
  private signalListener: (payload: string) => void = () => {};

  /** Presence on this node (SPEC §9); tracks no channel unless given patterns. */
  readonly presence: Presence;
  /**
   * With the event feed on: its channel, and every other channel's
   * occupancy is held while this node has subscribers on it (see event-feed.ts).
   */
  occupancy: string | undefined = undefined;

  constructor(
    private readonly broker: Broker,
    options: HubOptions = {},
  ) {
    broker.onMessage((m) => this.fanout(m));
    this.holds = broker.holds ?? new MemoryHolds();
    this.holds.onChange((c) => this.presenceChanged(c));
    broker.onSignal?.((payload) => this.signalListener(payload));
    this.presence = new Presence(this.holds, options.presence ?? [], options.presenceGraceMs ?? 0, options.now ?? Date.now);
  }

  /**
   * Hands `payload` to the signal listener of every node (see Broker.signal);
   * with a broker that has no signals, to this node's only.
   */
  signal(payload: string): Promise<void> {
    if (this.broker.signal) return this.broker.signal(payload);
    queueMicrotask(() => this.signalListener(payload));
    return Promise.resolve();
  }

  /** Sets the single listener of signals (the server API's actions, on every node). */
  onSignal(listener: (payload: string) => void): void {
    this.signalListener = listener;
  }

  /** Drops a channel's history (the next read starts a new epoch); rejects when the broker cannot. */
  removeHistory(channel: string): Promise<void> {
    if (!this.broker.removeHistory) return Promise.reject(new Error("this broker cannot remove history"));
    return this.broker.removeHistory(channel);
  }

  /** The channels with subscriptions on this node. */
  channels(): IterableIterator<string> {
    return this.subs.keys();
  }

  /** A channel's position and, from `since`, up to `limit` messages of its history (`GET /api/history`). */
  history(channel: string, since?: Position, limit?: number): Promise<ReadResult> {
    return this.broker.read(channel, since, limit);
  }

  /** Whether signals may reach other nodes: the broker has its own and does not answer in-process (`readSync`: one node). */
  get clustered(): boolean {
    return this.broker.signal !== undefined && !this.broker.readSync;
  }

  /** After `channel`'s history was removed: resets this node's subscriptions still in an older epoch, wakes its polls. */
  async resetChannel(channel: string): Promise<void> {
    if (!this.subs.has(channel) && !this.waiters.has(channel)) return;
    const r = await this.broker.read(channel);
    const resetIfOld = (sub: Subscription): void => {
      if (sub.state !== LIVE || sub.epoch === r.epoch) return;
      sub.epoch = r.epoch;
      sub.offset = r.offset;
      sub.subscriber.reset(sub, r.epoch, r.offset);
    };
    for (const sub of this.subs.get(channel) ?? []) {
      // One still reading its history may have read the old epoch: it is looked at once live.
      if (!sub.live && !sub.closed) sub.ready.then(() => resetIfOld(sub), () => {});
      else resetIfOld(sub);
    }
    const waiting = this.waiters.get(channel);
    if (waiting) for (const w of waiting) w.wake();
  }

  /** A channel's current position (`GET /api/channels/{name}`). Rejects when the broker cannot be read. */
  async position(channel: string): Promise<Position> {
    const r = await this.broker.read(channel);
    return { epoch: r.epoch, offset: r.offset };
  }

  /** Whether the broker can store messages (`/readyz`, `heartline_broker_ready`). */
  brokerReady(): boolean {
    return this.broker.isReady();
  }

  /** The parts of the broker that cannot store messages (shards that are down); empty when it says nothing more. */
  brokerUnavailable(): string[] {
    return this.broker.unavailable?.() ?? [];
  }

  /** What the broker keeps in this process, when it says (metrics). */
  brokerUsage(): BrokerUsage | undefined {
    return this.broker.usage?.();
  }

  /** Lets the broker forget what has expired, keeping the records of channels this node serves. */
  sweepBroker(now: number): void {
    this.broker.sweep(now, this.inUse);
  }

  /** Resolves whether the broker became ready within `timeoutMs` (a broker that is always ready: at once). */
  waitReady(timeoutMs: number): Promise<boolean> {
    return this.broker.waitReady?.(timeoutMs) ?? Promise.resolve(this.broker.isReady());
  }

  /** Releases the broker. */
  closeBroker(): Promise<void> {
    return this.broker.close();
  }

  /** Stores a message (data already validated JSON text) and fans it out; with an idempotency key, a repeat stores nothing (see Broker). */
  publish(channel: string, dataJson: string, idempotencyKey?: string): Promise<StoredMessage> {
    return this.broker.publish(channel, dataJson, idempotencyKey);
  }

  /**
   * Subscribes `subscriber` to `channel`, from `since` when given (replay after
   * it, or a reset when it is gone), else from the current position. The
   * subscription is returned at once; `sub.ready` settles when its history is
   * delivered, and rejects (leaving nothing behind) when the broker cannot be read.
   */
  subscribe(subscriber: Subscriber, channel: string, since?: Position, member?: Member): Subscription {
    let set = this.subs.get(channel);
    let sub: Subscription | undefined;
    if (!set) {
      this.subs.set(channel, (set = new Set()));
      if (!this.waiters.has(channel)) this.broker.interest?.(channel, true);
      if (this.occupancy !== undefined && channel !== this.occupancy) this.presence.enter(OCCUPANCY_PREFIX + channel, OCCUPANCY_MEMBER).catch(noop);
    } else {
      // Share the channel's name and key with the subscriptions before: the
      // name given may be a slice of a whole request URL, kept alive by it.
      for (const first of set) {
        sub = new Subscription(subscriber, first.channel, first.key);
        break;
      }
    }
    sub ??= new Subscription(subscriber, channel);
    if (since) {
      sub.epoch = since.epoch;
      sub.offset = since.offset;
    }
    set.add(sub);
    if (member !== undefined && this.presence.tracks(channel)) {
      sub.presence = { member, pending: [], version: -1, entered: false };
      sub.ready = this.recover(sub, since).then(() => this.joinPresence(sub));
    } else sub.ready = this.recover(sub, since);
    return sub;
  }

  /** Holds the subscriber's member, then sends the snapshot and the changes that came meanwhile. */
  private async joinPresence(sub: Subscription): Promise<void> {
    const p = sub.presence!;
    if (sub.state === CLOSED) return;
    const entering = this.presence.enter(sub.channel, p.member);
    p.entered = true;
    try {
      await entering;
    } catch (err) {
      p.entered = false;
      this.unsubscribe(sub);
      throw err;
    }
    let snap;
    try {
      snap = await this.presence.members(sub.channel);
    } catch (err) {
      this.unsubscribe(sub, false);
      throw err;
    }
    if (sub.state === CLOSED) return;
    const pending = p.pending ?? [];
    p.pending = null;
    p.version = snap.version;
    sub.subscriber.presence(sub, new PresenceOut("presence", presenceSnapshotJson(sub.channel, snap.members)));
    for (const c of pending) this.tellPresence(sub, c, new PresenceOut(c.kind, presenceChangeJson(c.kind, c.set, c.member)));
  }

  /** A join or leave from any node: to this node's subscribers of the channel, and a wake-up for its polls. */
  private presenceChanged(c: HoldChange): void {
    this.presence.changed(c);
    const set = this.subs.get(c.set);
    if (set) {
      // Encoded once per change, and once per wire format, for every subscriber of this node.
      let out: PresenceOut | undefined;
      for (const sub of set) {
        const p = sub.presence;
        if (p === null) continue;
        if (p.pending !== null) p.pending.push(c);
        else this.tellPresence(sub, c, (out ??= new PresenceOut(c.kind, presenceChangeJson(c.kind, c.set, c.member))));
      }
    }
    const waiting = this.waiters.get(c.set);
    if (waiting) for (const w of waiting) w.wake();
  }

  private tellPresence(sub: Subscription, c: HoldChange, out: PresenceOut): void {
    const p = sub.presence!;
    if (sub.state === CLOSED || c.version <= p.version) return;
    p.version = c.version;
    sub.subscriber.presence(sub, out);
  }

  private async recover(sub: Subscription, since: Position | undefined): Promise<void> {
    let r;
    try {
      r = await this.broker.read(sub.channel, since);
    } catch (err) {
      this.unsubscribe(sub);
      throw err;
    }
    if (sub.state === CLOSED) return;
    const subscriber = sub.subscriber;
    sub.epoch = r.epoch;
    subscriber.subscribed(sub, r.epoch, r.offset, r.recovered);
    if (lost(since, r)) {
      sub.offset = r.offset;
      subscriber.reset(sub, r.epoch, r.offset);
    } else if (since) {
      sub.offset = since.offset;
      for (const m of r.messages) this.emit(sub, m);
    } else {
      sub.offset = r.offset;
    }
    const pending = sub.pending;
    sub.pending = null;
    if (pending) {
      for (const m of pending) {
        if (sub.state === CLOSED) break;
        this.emit(sub, m);
      }
    }
    if (sub.state !== CLOSED) sub.state = LIVE;
  }

  /**
   * Whether {@link readAfterNow} can answer: the broker reads without waiting
   * (the memory broker). Woken long polls then answer in the turn they are
   * woken and share one answer among the polls waiting at the same cursor.
   */
  get readsNow(): boolean {
    return this.broker.readSync !== undefined;
  }

  /**
   * The messages and resets after `cursor` on `channels`, at most `limit`
   * messages in all (the rest is read from the returned positions next), and
   * the position of every channel: a channel the cursor does not name is
   * given its current one. Rejects when the broker cannot be read.
   */
  async readAfter(channels: readonly string[], cursor: CursorPositions, limit: number): Promise<ChannelsRead> {
    if (this.broker.readSync) return this.readAfterNow(channels, cursor, limit);
    const out: ChannelsRead = { messages: [], resets: [], positions: [] };
    for (const channel of channels) {
      const since = positionIn(cursor, channel);
      addRead(out, channel, since, await this.broker.read(channel, since, Math.max(limit - out.messages.length, 0)));
    }
    return out;
  }

  /** {@link readAfter} answered at once; only when {@link readsNow}. */
  readAfterNow(channels: readonly string[], cursor: CursorPositions, limit: number): ChannelsRead {
    const out: ChannelsRead = { messages: [], resets: [], positions: [] };
    for (const channel of channels) {
      const since = positionIn(cursor, channel);
      addRead(out, channel, since, this.broker.readSync!(channel, since, Math.max(limit - out.messages.length, 0)));
    }
    return out;
  }

  /**
   * Ends a subscription; safe to call twice. On a presence channel its member
   * leaves (once no other connection of it remains here): after the grace
   * when `graceful` (the connection ended), at once when not (unsubscribed).
   */
  unsubscribe(sub: Subscription, graceful = false): void {
    if (sub.state === CLOSED) return;
    sub.state = CLOSED;
    sub.pending = null;
    if (sub.presence?.entered) this.presence.exit(sub.channel, sub.presence.member.key, graceful);
    const set = this.subs.get(sub.channel);
    if (set && set.delete(sub) && set.size === 0) {
      this.subs.delete(sub.channel);
      if (!this.waiters.has(sub.channel)) this.broker.interest?.(sub.channel, false);
      if (this.occupancy !== undefined && sub.channel !== this.occupancy) this.presence.exit(OCCUPANCY_PREFIX + sub.channel, OCCUPANCY_MEMBER.key, true);
    }
  }

  /** Registers a long poll to be woken by the next message on any of `channels`. */
  addWaiter(channels: readonly string[], waiter: Waiter): void {
    for (const c of channels) {
      let set = this.waiters.get(c);
      if (!set) {
        this.waiters.set(c, (set = new Set()));
        if (!this.subs.has(c)) this.broker.interest?.(c, true);
      }
      set.add(waiter);
    }
  }

  removeWaiter(channels: readonly string[], waiter: Waiter): void {
    for (const c of channels) {
      const set = this.waiters.get(c);
      if (set && set.delete(waiter) && set.size === 0) {
        this.waiters.delete(c);
        if (!this.subs.has(c)) this.broker.interest?.(c, false);
      }
    }
  }

  /**
   * Whether this node still serves `channel` (a subscription or a waiting
   * poll): given to the broker's sweep, which keeps such channels' records.
   * Two map lookups, bound once.
   */
  readonly inUse = (channel: string): boolean => this.subs.has(channel) || this.waiters.has(channel);

  /** Subscriptions on `channel` on this node. */
  subscriberCount(channel: string): number {
    return this.subs.get(channel)?.size ?? 0;
  }

  /** Subscriptions on every channel of this node. */
  get totalSubscriptions(): number {
    let n = 0;
    for (const set of this.subs.values()) n += set.size;
    return n;
  }

  get totalWaiters(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  private fanout(m: StoredMessage): void {
    this.published++;
    const set = this.subs.get(m.channel);
    if (set) {
      const out = new Outgoing(m);
      for (const sub of set) {
        if (sub.state === LIVE) {
          if (m.offset === sub.offset + 1 && m.epoch === sub.epoch) {
            sub.offset = m.offset;
            sub.subscriber.deliver(sub, out);
          } else this.emit(sub, m, out);
        } else if (sub.pending) sub.pending.push(m);
      }
    }
    const waiting = this.waiters.get(m.channel);
    if (waiting) for (const w of waiting) w.wake();
  }

  /** Hands `m` to `sub` unless it is old; announces an epoch change or a gap first. */
  private emit(sub: Subscription, m: StoredMessage, out?: Outgoing): void {
    if (m.epoch !== sub.epoch) {
      sub.epoch = m.epoch;
      sub.offset = m.offset - 1;
      sub.subscriber.reset(sub, m.epoch, sub.offset);
      if (sub.state === CLOSED) return;
    } else if (m.offset <= sub.offset) {
      return;
    } else if (m.offset > sub.offset + 1) {
      // A gap the broker could not fill: announce it rather than skip silently.
      sub.offset = m.offset - 1;
      sub.subscriber.reset(sub, m.epoch, sub.offset);
      if (sub.state === CLOSED) return;
    }
    sub.offset = m.offset;
    sub.subscriber.deliver(sub, out ?? new Outgoing(m));
  }
}
