/**
 * Publishes waiting for their own fan-out notification to reach this node's
 * listener (see redis.ts): a publish resolves once its message was handed
 * over, so a publisher sees the same order on a node as with the memory
 * broker, or after a short wait when the notification is slow. Expiry runs
 * on the injected clock's ticker, started with the first waiter and stopped
 * with the last.
 */
import type { Clock } from "../clock.js";
import type { StoredMessage } from "./broker.js";

/** Longest a publish waits for its own notification before it resolves anyway. */
export const FANOUT_WAIT_MS = 1000;

interface Waiter {
  epoch: string;
  offset: number;
  deadline: number;
  resolve: () => void;
}

export class FanoutWaiters {
  private readonly byChannel = new Map<string, Waiter[]>();
  /** Waiters in all lists; 0 lets the fan-out path skip {@link release}. */
  count = 0;
  private stopTicker: (() => void) | undefined;

  constructor(private readonly clock: Clock) {}

  /** Resolves once `m` is released, or after {@link FANOUT_WAIT_MS}. */
  wait(m: StoredMessage): Promise<void> {
    return new Promise<void>((resolve) => {
      let list = this.byChannel.get(m.channel);
      if (!list) this.byChannel.set(m.channel, (list = []));
      list.push({ epoch: m.epoch, offset: m.offset, deadline: this.clock.now() + FANOUT_WAIT_MS, resolve });
      this.count++;
      this.stopTicker ??= this.clock.every(FANOUT_WAIT_MS / 4, () => this.expire());
    });
  }

  /** `m` reached the listener: releases the publishes of its channel up to it. */
  release(m: StoredMessage): void {
    const list = this.byChannel.get(m.channel);
    if (!list) return;
    let kept = 0;
    for (const w of list) {
      if (w.epoch === m.epoch && w.offset <= m.offset) w.resolve();
      else list[kept++] = w;
    }
    this.count -= list.length - kept;
    list.length = kept;
    if (kept === 0) this.byChannel.delete(m.channel);
    this.stopWhenEmpty();
  }

  /** Releases every waiter (the fan-out connection dropped, or the broker closes). */
  releaseAll(): void {
    for (const list of this.byChannel.values()) for (const w of list) w.resolve();
    this.byChannel.clear();
    this.count = 0;
    this.stopWhenEmpty();
  }

  private expire(): void {
    const now = this.clock.now();
    for (const [channel, list] of this.byChannel) {
      let kept = 0;
      for (const w of list) {
        if (w.deadline <= now) w.resolve();
        else list[kept++] = w;
      }
      this.count -= list.length - kept;
      list.length = kept;
      if (kept === 0) this.byChannel.delete(channel);
    }
    this.stopWhenEmpty();
  }

  private stopWhenEmpty(): void {
    if (this.count === 0 && this.stopTicker) {
      this.stopTicker();
      this.stopTicker = undefined;
    }
  }
}
