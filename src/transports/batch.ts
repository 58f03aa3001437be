/**
 * Write batching: the first write to a socket corks it, and one flush
 * uncorks every corked socket. A burst of messages to one subscriber then
 * leaves in one writev instead of one syscall each.
 *
 * When the flush goes: at the end of the current turn of the event loop
 * (`setImmediate`), unless the previous flush is less than `delayMs` old;
 * then `delayMs` after the previous one. A quiet server therefore writes
 * each message at once, and a busy one writes to each connection at most
 * once per `delayMs`, with every message that arrived meanwhile: under a
 * steady stream, that is what turns one write per delivered message into one
 * per several.
 *
 * A flush that itself took longer than `delayMs` (thousands of connections
 * written at once) holds the next one as long as it took, up to
 * {@link MAX_HOLD_MS}: writing then takes at most about half of the server's
 * time however many connections it fans out to, the messages that arrive
 * meanwhile leave together, and what a message waits more stays within what
 * the last flush took. With `delayMs` 0 nothing is held. One batch per server
 * (its connection registry holds it), so servers in one process share nothing.
 */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

/** How a batch schedules its flush: at the end of the turn, or after a delay. */
export interface FlushScheduler {
  now(): number;
  endOfTurn(fn: () => void): void;
  after(ms: number, fn: () => void): void;
}

const REAL: FlushScheduler = {
  now: () => performance.now(),
  endOfTurn: (fn) => void setImmediate(fn),
  after: (ms, fn) => void setTimeout(fn, ms),
};

/** The longest a long flush holds the next one, ms. */
export const MAX_HOLD_MS = 50;

export class WriteBatch {
  private readonly corked: Corkable[] = [];
  private scheduled = false;
  /** When the last flush ended; -Infinity before the first. */
  private lastFlush = Number.NEGATIVE_INFINITY;
  /** The least time from the last flush to the next: `delayMs`, or what the last flush took when longer. */
  private hold: number;
  /** Bound once: scheduling the flush allocates no closure. */
  private readonly flush = (): void => {
    this.scheduled = false;
    const start = this.timers.now();
    // New writes during the loop below start a new batch.
    const list = this.corked.splice(0, this.corked.length);
    for (let i = 0; i < list.length; i++) list[i]!.uncork();
    const end = (this.lastFlush = this.timers.now());
    if (this.delayMs > 0) this.hold = Math.max(this.delayMs, Math.min(end - start, MAX_HOLD_MS));
  };

  constructor(
    /** The least time between two flushes, ms (`--write-delay-ms`); 0: every turn's writes go at its end. */
    private readonly delayMs = 0,
    private readonly timers: FlushScheduler = REAL,
  ) {
    this.hold = delayMs;
  }

  /** Corks `target` until the next flush. Call once per flush per target (track it with a flag). */
  corkUntilFlush(target: Corkable): void {
    target.cork();
    this.corked.push(target);
    if (this.scheduled) return;
    this.scheduled = true;
    const since = this.timers.now() - this.lastFlush;
    if (since < this.hold) this.timers.after(this.hold - since, this.flush);
    else this.timers.endOfTurn(this.flush);
  }
}
