/**
 * The embedded broker: one process, history in a ring buffer per channel.
 * Its state lives and dies with the process, so each channel gets a fresh
 * epoch whenever its state is created: a cursor from before a restart is
 * answered with a reset, never with silently wrong offsets.
 *
 * What it holds is bounded, whoever asks:
 * - a channel only read (never published in its epoch) is a small record
 *   (epoch, offset 0, time of the last read) forgotten `readTtl` seconds after
 *   its last read, unless the hub still has subscribers or waiting polls on it;
 * - history is allocated on the first publish and grows with what is stored,
 *   up to `historySize` messages; it is forgotten `historyTtl` seconds after
 *   the channel's last message, as before;
 * - at most `maxChannels` channels have state: a read or publish that would
 *   create one more is refused with `channel_limit` (503), existing channels
 *   keep working;
 * - stored history counts at most `maxHistoryBytes`: each message costs the
 *   UTF-8 length of its JSON (an upper bound of the string's size in V8) plus
 *   {@link MESSAGE_OVERHEAD_BYTES}. Past it, the oldest messages of the
 *   channels published least recently are dropped. That loss is announced: a
 *   resume from a dropped position gets a reset (SPEC §2). The message just
 *   published is always kept;
 * - idempotency keys: at most `maxIdempotencyKeys` (default 100,000), each
 *   forgotten `idempotencyTtl` seconds after the publish that first used it,
 *   by the same sweep; past the bound the oldest goes first (see
 *   idempotency-keys.ts).
 */
import { randomBytes } from "node:crypto";
import type { Clock } from "../clock.js";
import { HeartlineError } from "../errors.js";
import { MemoryHolds } from "./holds.js";
import { DEFAULT_MAX_IDEMPOTENCY_KEYS, IdempotencyKeys } from "./idempotency-keys.js";
import { encodeMessage, type Broker, type BrokerUsage, type Position, type ReadResult, type StoredMessage } from "./broker.js";

export interface MemoryBrokerOptions {
  historySize: number;
  /** Seconds a channel's history is kept after its last message. */
  historyTtl: number;
  clock: Clock;
  /** Seconds the record of a channel that is only read lives after its last read. Default: `min(historyTtl, 60)`. */
  readTtl?: number;
  /** Most channels with state. Default {@link DEFAULT_MAX_CHANNELS}. */
  maxChannels?: number;
  /** Most bytes of stored history, counted as described above. Default {@link DEFAULT_MAX_HISTORY_BYTES}. */
  maxHistoryBytes?: number;
  /** Seconds an idempotency key is remembered after its first publish. Default 300. */
  idempotencyTtl?: number;
  /** Most idempotency keys remembered. Default {@link DEFAULT_MAX_IDEMPOTENCY_KEYS}. */
  maxIdempotencyKeys?: number;
}

export const DEFAULT_MAX_CHANNELS = 100_000;
export const DEFAULT_MAX_HISTORY_BYTES = 256 * 1024 * 1024;
/** Bytes counted per stored message besides its JSON: the message object, its ring slot, string headers. */
export const MESSAGE_OVERHEAD_BYTES = 96;
/** Slots of a channel's first history buffer; it doubles up to `historySize`. */
const FIRST_RING = 4;
/** Seconds a client refused with `channel_limit` is told to wait. */
const CHANNEL_LIMIT_RETRY_AFTER = "5";

function cost(m: StoredMessage): number {
  return Buffer.byteLength(m.json) + MESSAGE_OVERHEAD_BYTES;
}

class Channel {
  offset = 0;
  /** Clock time of the last read or publish. */
  touchedAt: number;
  /** Clock time of the last publish; meaningful once `offset` > 0 (the channel has been published to). */
  publishedAt = 0;
  /** History: `count` messages ending at `offset`, the oldest at `head`; null while none is kept. */
  ring: Array<StoredMessage | undefined> | null = null;
  head = 0;
  count = 0;
  /** Bytes of the messages held, counted as {@link cost}. */
  bytes = 0;
  /** Neighbours in the broker's list of channels holding messages, least recently published first. */
  older: Channel | null = null;
  newer: Channel | null = null;

  constructor(
    readonly epoch: string,
    now: number,
  ) {
    this.touchedAt = now;
  }

  /** Messages with offset > after, at most `limit`. Requires after ≥ first retained − 1. */
  slice(after: number, limit: number): StoredMessage[] {
    const ring = this.ring;
    const first = this.offset - this.count + 1;
    const from = after + 1 - first;
    const n = ring ? Math.min(this.count - from, limit) : 0;
    const out = new Array<StoredMessage>(Math.max(n, 0));
    for (let i = 0; i < n; i++) out[i] = ring![(this.head + from + i) % ring!.length]!;
    return out;
  }

  /** Moves the `count` messages into a buffer of `size` slots, oldest first. */
  resize(size: number): void {
    const old = this.ring!;
    const ring = new Array<StoredMessage | undefined>(size);
    for (let i = 0; i < this.count; i++) ring[i] = old[(this.head + i) % old.length];
    this.ring = ring;
    this.head = 0;
  }
}

export class MemoryBroker implements Broker {
  private readonly channels = new Map<string, Channel>();
  private listener: (message: StoredMessage) => void = () => {};
  private readonly ttlMs: number;
  private readonly readTtlMs: number;
  private readonly maxChannels: number;
  private readonly maxBytes: number;
  /** Bytes of every channel's history. */
  private bytes = 0;
  /** Channels holding messages, least recently published first. */
  private oldest: Channel | null = null;
  private newest: Channel | null = null;
  /** Epochs are this broker's random prefix plus a counter: unique without a random draw per channel. */
  private readonly epochSeed = randomBytes(6).toString("base64url");
  private epochCounter = 0;
  /** Messages dropped to stay within `maxHistoryBytes`. */
  evictedMessages = 0;
  /** First results of publishes made with an idempotency key. */
  private readonly keys: IdempotencyKeys;
  /** Presence, occupancy and the event feed's clients: one process holds them all. */
  readonly holds = new MemoryHolds();
  private signalListener: (payload: string) => void = () => {};

  constructor(private readonly options: MemoryBrokerOptions) {
    this.ttlMs = options.historyTtl * 1000;
    this.readTtlMs = (options.readTtl ?? Math.min(options.historyTtl, 60)) * 1000;
    this.maxChannels = options.maxChannels ?? DEFAULT_MAX_CHANNELS;
    this.maxBytes = options.maxHistoryBytes ?? DEFAULT_MAX_HISTORY_BYTES;
    this.keys = new IdempotencyKeys((options.idempotencyTtl ?? 300) * 1000, options.maxIdempotencyKeys ?? DEFAULT_MAX_IDEMPOTENCY_KEYS);
  }

  /** The channel's state, created (as a small record) when it has none. Throws `channel_limit` past `maxChannels`. */
  private state(channel: string, now: number): Channel {
    let s = this.channels.get(channel);
    if (s) return s;
    if (this.channels.size >= this.maxChannels) {
      throw new HeartlineError("channel_limit", `the server holds its maximum of ${this.maxChannels} channels (--max-channels); retry later`, {
        headers: { "Retry-After": CHANNEL_LIMIT_RETRY_AFTER },
      });
    }
    s = new Channel(this.epochSeed + (this.epochCounter++).toString(36), now);
    this.channels.set(channel, s);
    return s;
  }

  async publish(channel: string, dataJson: string, idempotencyKey?: string): Promise<StoredMessage> {
    return this.publishSync(channel, dataJson, idempotencyKey);
  }

  /** One node: a signal reaches this node's listener, in a microtask. */
  async signal(payload: string): Promise<void> {
    queueMicrotask(() => this.signalListener(payload));
  }

  onSignal(listener: (payload: string) => void): void {
    this.signalListener = listener;
  }

  /** Forgets the channel's state: the next read or publish starts a new epoch. Its idempotency keys stay. */
  async removeHistory(channel: string): Promise<void> {
    const s = this.channels.get(channel);
    if (s) this.forget(channel, s);
  }

  /** Synchronous publish; the memory broker never waits. */
  publishSync(channel: string, dataJson: string, idempotencyKey?: string): StoredMessage {
    const now = this.options.clock.now();
    if (idempotencyKey !== undefined) {
      const first = this.keys.get(channel, idempotencyKey, now);
      if (first) return { channel, epoch: first.epoch, offset: first.offset, json: encodeMessage(channel, first.offset, dataJson), repeated: true };
    }
    const s = this.state(channel, now);
    const offset = ++s.offset;
    const msg: StoredMessage = { channel, epoch: s.epoch, offset, json: encodeMessage(channel, offset, dataJson) };
    s.touchedAt = s.publishedAt = now;
    if (this.options.historySize > 0) {
      this.store(s, msg);
      if (this.bytes > this.maxBytes) this.evict(s);
    }
    if (idempotencyKey !== undefined) this.keys.set(channel, idempotencyKey, msg, now);
    this.listener(msg);
    return msg;
  }

  async read(channel: string, since?: Position, limit = Infinity): Promise<ReadResult> {
    return this.readSync(channel, since, limit);
  }

  readSync(channel: string, since?: Position, limit = Infinity): ReadResult {
    const now = this.options.clock.now();
    const s = this.state(channel, now);
    s.touchedAt = now;
    const result: ReadResult = { epoch: s.epoch, offset: s.offset, messages: [], recovered: false };
    if (!since || since.epoch !== s.epoch || since.offset > s.offset) return result;
    const firstRetained = s.offset - s.count + 1;
    if (since.offset < firstRetained - 1) return result;
    result.recovered = true;
    if (since.offset < s.offset) result.messages = s.slice(since.offset, limit);
    return result;
  }

  onMessage(listener: (message: StoredMessage) => void): void {
    this.listener = listener;
  }

  isReady(): boolean {
    return true;
  }

  /**
   * Forgets a published channel `historyTtl` after its last message (a new
   * epoch follows, as before), and a channel only read `readTtl` after its
   * last read unless `inUse` says this node still serves it.
   */
  sweep(now: number, inUse?: (channel: string) => boolean): void {
    this.keys.sweep(now);
    for (const [channel, s] of this.channels) {
      if (s.offset > 0) {
        if (now - s.publishedAt >= this.ttlMs) this.forget(channel, s);
      } else if (now - s.touchedAt >= this.readTtlMs && !inUse?.(channel)) {
        this.channels.delete(channel);
      }
    }
  }

  usage(): BrokerUsage {
    return { channels: this.channels.size, historyBytes: this.bytes };
  }

  /** Number of channels with state; for tests and metrics. */
  get channelCount(): number {
    return this.channels.size;
  }

  /** Idempotency keys remembered; for tests. */
  get idempotencyKeyCount(): number {
    return this.keys.size;
  }

  /** Bytes of stored history, counted as described above; for tests and metrics. */
  get historyBytes(): number {
    return this.bytes;
  }

  async close(): Promise<void> {
    this.channels.clear();
    this.keys.clear();
    this.oldest = this.newest = null;
    this.bytes = 0;
  }

  // ---- history storage ----

  /** Appends `msg` to the channel's history and makes the channel the most recently published. */
  private store(s: Channel, msg: StoredMessage): void {
    const size = this.options.historySize;
    let ring = s.ring;
    if (ring === null) ring = s.ring = new Array<StoredMessage | undefined>(Math.min(size, FIRST_RING));
    else if (s.count === ring.length && ring.length < size) {
      s.resize(Math.min(size, ring.length * 2));
      ring = s.ring!;
    }
    const b = cost(msg);
    if (s.count === ring.length) {
      // Full at historySize: the new message takes the oldest one's slot.
      const dropped = cost(ring[s.head]!);
      s.bytes -= dropped;
      this.bytes -= dropped;
      ring[s.head] = msg;
      s.head = (s.head + 1) % ring.length;
    } else {
      ring[(s.head + s.count) % ring.length] = msg;
      s.count++;
    }
    s.bytes += b;
    this.bytes += b;
    this.touchList(s);
  }

  /** Drops the oldest messages of the least recently published channels until history fits `maxBytes`; never `current`'s newest. */
  private evict(current: Channel): void {
    while (this.bytes > this.maxBytes) {
      const s = this.oldest;
      if (s === null || (s === current && s.count <= 1)) return;
      this.dropOldest(s);
    }
  }

  private dropOldest(s: Channel): void {
    const ring = s.ring!;
    const m = ring[s.head]!;
    ring[s.head] = undefined;
    s.head = (s.head + 1) % ring.length;
    s.count--;
    const b = cost(m);
    s.bytes -= b;
    this.bytes -= b;
    this.evictedMessages++;
    if (s.count === 0) this.release(s);
    else if (ring.length > FIRST_RING * 2 && s.count <= ring.length / 4) s.resize(Math.ceil(ring.length / 2));
  }

  /** Frees a channel's history buffer and takes it off the list. */
  private release(s: Channel): void {
    this.bytes -= s.bytes;
    s.bytes = 0;
    s.ring = null;
    s.head = s.count = 0;
    this.unlist(s);
  }

  private forget(channel: string, s: Channel): void {
    if (s.ring !== null) this.release(s);
    this.channels.delete(channel);
  }

  /** Moves `s` to the most recently published end of the list. */
  private touchList(s: Channel): void {
    if (this.newest === s) return;
    if (s.older !== null || this.oldest === s) this.unlist(s);
    s.older = this.newest;
    s.newer = null;
    if (this.newest) this.newest.newer = s;
    else this.oldest = s;
    this.newest = s;
  }

  private unlist(s: Channel): void {
    if (s.older) s.older.newer = s.newer;
    else if (this.oldest === s) this.oldest = s.newer;
    else return;
    if (s.newer) s.newer.older = s.older;
    else this.newest = s.older;
    s.older = s.newer = null;
  }
}
