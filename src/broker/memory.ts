/**
 * The embedded broker: one process, history in a ring buffer per channel.
 * Its state lives and dies with the process, so each channel gets a fresh
 * random epoch whenever its state is created: a cursor from before a restart
 * is answered with a reset, never with silently wrong offsets.
 */
import { randomBytes } from "node:crypto";
import type { Clock } from "../clock.js";
import { encodeMessage, type Broker, type Position, type ReadResult, type StoredMessage } from "./broker.js";

export interface MemoryBrokerOptions {
  historySize: number;
  /** Seconds a channel's state is kept after its last message. */
  historyTtl: number;
  clock: Clock;
}

class ChannelHistory {
  readonly epoch = randomBytes(6).toString("base64url");
  offset = 0;
  /** Ring buffer: `count` messages ending at `offset`. */
  readonly ring: Array<StoredMessage | undefined>;
  head = 0;
  count = 0;
  touchedAt: number;

  constructor(size: number, now: number) {
    this.ring = new Array(size);
    this.touchedAt = now;
  }

  append(msg: StoredMessage): void {
    const size = this.ring.length;
    if (size === 0) return;
    this.ring[(this.head + this.count) % size] = msg;
    if (this.count < size) this.count++;
    else this.head = (this.head + 1) % size;
  }

  /** Messages with offset > after, at most `limit`. Requires after ≥ first retained − 1. */
  slice(after: number, limit: number): StoredMessage[] {
    const first = this.offset - this.count + 1;
    const from = after + 1 - first;
    const n = Math.min(this.count - from, limit);
    const out = new Array<StoredMessage>(Math.max(n, 0));
    for (let i = 0; i < n; i++) out[i] = this.ring[(this.head + from + i) % this.ring.length]!;
    return out;
  }
}

export class MemoryBroker implements Broker {
  private readonly channels = new Map<string, ChannelHistory>();
  private listener: (message: StoredMessage) => void = () => {};
  private readonly ttlMs: number;

  constructor(private readonly options: MemoryBrokerOptions) {
    this.ttlMs = options.historyTtl * 1000;
  }

  private state(channel: string): ChannelHistory {
    let s = this.channels.get(channel);
    if (!s) {
      s = new ChannelHistory(this.options.historySize, this.options.clock.now());
      this.channels.set(channel, s);
    }
    return s;
  }

  async publish(channel: string, dataJson: string): Promise<StoredMessage> {
    return this.publishSync(channel, dataJson);
  }

  /** Synchronous publish; the memory broker never waits. */
  publishSync(channel: string, dataJson: string): StoredMessage {
    const s = this.state(channel);
    const offset = ++s.offset;
    const msg: StoredMessage = { channel, epoch: s.epoch, offset, json: encodeMessage(channel, offset, dataJson) };
    s.append(msg);
    s.touchedAt = this.options.clock.now();
    this.listener(msg);
    return msg;
  }

  async read(channel: string, since?: Position, limit = Infinity): Promise<ReadResult> {
    return this.readSync(channel, since, limit);
  }

  readSync(channel: string, since?: Position, limit = Infinity): ReadResult {
    const s = this.state(channel);
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

  sweep(now: number): void {
    for (const [channel, s] of this.channels) {
      if (now - s.touchedAt >= this.ttlMs) this.channels.delete(channel);
    }
  }

  /** Number of channels with state; for tests and metrics. */
  get channelCount(): number {
    return this.channels.size;
  }

  async close(): Promise<void> {
    this.channels.clear();
  }
}
