/**
 * Time as a dependency. Everything timed in Heartline (heartbeats, poll holds,
 * history expiry) reads `now()` and is driven by one `every()` ticker, so tests
 * can substitute {@link ManualClock} and advance time instead of sleeping.
 */
export interface Clock {
  /** Milliseconds, monotonic enough for deadlines. */
  now(): number;
  /** Calls `fn` every `ms` milliseconds until the returned function is called. */
  every(ms: number, fn: () => void): () => void;
}

/** The real clock. The ticker is unref'd so it never keeps a process alive. */
export const systemClock: Clock = {
  now: () => performance.now(),
  every(ms, fn) {
    const handle = setInterval(fn, ms);
    handle.unref();
    return () => clearInterval(handle);
  },
};

/** A clock that moves only when told to; for tests. */
export class ManualClock implements Clock {
  private time = 0;
  private tickers = new Set<{ ms: number; next: number; fn: () => void }>();

  now(): number {
    return this.time;
  }

  every(ms: number, fn: () => void): () => void {
    const t = { ms, next: this.time + ms, fn };
    this.tickers.add(t);
    return () => {
      this.tickers.delete(t);
    };
  }

  /** Moves time forward by `ms`, firing every ticker that comes due, in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let due: { ms: number; next: number; fn: () => void } | undefined;
      for (const t of this.tickers) if (t.next <= end && (!due || t.next < due.next)) due = t;
      if (!due) break;
      this.time = due.next;
      due.next += due.ms;
      due.fn();
    }
    this.time = end;
  }
}
