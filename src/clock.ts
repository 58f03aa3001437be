/**
 * Time as a dependency. Everything timed in Heartline (heartbeats, poll holds,
 * history expiry) reads `now()` and is driven by one `every()` ticker, and a
 * wait (the drain's) is a `sleep()`, so tests can substitute
 * {@link ManualClock} and advance time instead of sleeping.
 */
export interface Clock {
  /** Milliseconds, monotonic enough for deadlines. */
  now(): number;
  /** Calls `fn` every `ms` milliseconds until the returned function is called. */
  every(ms: number, fn: () => void): () => void;
  /**
   * Resolves after `ms` milliseconds of this clock. Optional, so that a clock
   * written before it still fits: without it a wait is a real timer (see
   * {@link sleepOn}), and `now()` must move by itself.
   */
  sleep?(ms: number): Promise<void>;
}

/** Waits `ms` on `clock`: its `sleep`, or a real timer when it has none. */
export function sleepOn(clock: Clock, ms: number): Promise<void> {
  return clock.sleep ? clock.sleep(ms) : realSleep(ms);
}

/**
 * A real wait. Not unref'd: a process waiting for a drain to finish stays
 * alive for it.
 */
function realSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The real clock. The ticker is unref'd so it never keeps a process alive. */
export const systemClock: Clock = {
  now: () => performance.now(),
  every(ms, fn) {
    const handle = setInterval(fn, ms);
    handle.unref();
    return () => clearInterval(handle);
  },
  sleep: realSleep,
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

  /**
   * A wait on a manual clock takes real time and moves the clock by as much
   * when it ends (firing the tickers that come due). So a server under test
   * drains as it would on the real clock, ticker included, and `close()`
   * ends within its timeout rather than waiting for an `advance()` that no
   * test will call.
   */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) =>
      setTimeout(() => {
        this.advance(ms);
        resolve();
      }, ms),
    );
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
