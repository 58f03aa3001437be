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
 *
 * What must follow a turn's writes (the answer to an HTTP publish: its
 * subscribers first, then the publisher) waits for the flush when one is due
 * at the end of the turn ({@link WriteBatch.afterThisTurn}); a flush held by
 * the delay holds nothing else.
 *
 * Two ways to batch. A {@link Corkable} target (an SSE stream) is corked and
 * written to as usual; the flush uncorks it, and node writes what it
 * buffered in one writev. A {@link Gathering} target (a WebSocket on the
 * pre-framed path) hands the batch its shared frames instead; the flush
 * gives it all of them as one buffer, and targets that were given the same
 * frames in the same order (every subscriber of one channel) get the same
 * buffer, joined once: one plain write each, no per-connection copy, no
 * chunk list for node to build and read back.
 */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

/** A target whose buffers the batch gathers until the flush (see {@link WriteBatch.gather}). */
export interface Gathering {
  /** Where its buffers of this batch start and end in the batch; -1 when it has none. Kept by the batch: start both at -1. */
  gatherFirst: number;
  gatherLast: number;
  /** The flush: what was gathered for it, in order, as one buffer. */
  writeGathered(bytes: Buffer): void;
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
  /** The flush is due at the end of this turn (not held by the delay). */
  private dueThisTurn = false;
  /** What runs after the flush due at the end of this turn. */
  private readonly after: Array<() => void> = [];
  /** When the last flush ended; -Infinity before the first. */
  private lastFlush = Number.NEGATIVE_INFINITY;
  /** The least time from the last flush to the next: `delayMs`, or what the last flush took when longer. */
  private hold: number;
  /** Bound once: scheduling the flush allocates no closure. */
  private readonly flush = (): void => {
    this.scheduled = false;
    this.dueThisTurn = false;
    const start = this.timers.now();
    // New writes during the loops below start a new batch.
    const list = this.corked.splice(0, this.corked.length);
    for (let i = 0; i < list.length; i++) list[i]!.uncork();
    this.writeGathered();
    if (this.after.length > 0) {
      const after = this.after.splice(0, this.after.length);
      for (let i = 0; i < after.length; i++) after[i]!();
    }
    const end = (this.lastFlush = this.timers.now());
    if (this.delayMs > 0) this.hold = Math.max(this.delayMs, Math.min(end - start, MAX_HOLD_MS));
  };

  /** Every gathered buffer of the batch, in order; `nexts[i]`: the index of the same target's next one, or -1. */
  private readonly bufs: Buffer[] = [];
  private readonly nexts: number[] = [];
  private readonly gathering: Gathering[] = [];

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
    this.schedule();
  }

  /** Keeps `bytes` for `target` until the next flush, after what it was given before. */
  gather(target: Gathering, bytes: Buffer): void {
    const i = this.bufs.length;
    this.bufs.push(bytes);
    this.nexts.push(-1);
    if (target.gatherLast < 0) {
      target.gatherFirst = i;
      this.gathering.push(target);
      this.schedule();
    } else this.nexts[target.gatherLast] = i;
    target.gatherLast = i;
  }

  /** What was gathered for `target`, as one buffer, now (the flush then skips it): for a write that must come after it. */
  take(target: Gathering): Buffer | undefined {
    const first = target.gatherFirst;
    if (first < 0) return undefined;
    target.gatherFirst = target.gatherLast = -1;
    return this.nexts[first]! < 0 ? this.bufs[first] : this.join(first);
  }

  /**
   * Runs `fn` right after the flush due at the end of this turn, and returns
   * true; returns false, running nothing, when no flush is due this turn
   * (nothing was written, or the delay holds it). `fn` must not throw.
   */
  afterThisTurn(fn: () => void): boolean {
    if (!this.dueThisTurn) return false;
    this.after.push(fn);
    return true;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const since = this.timers.now() - this.lastFlush;
    if (since < this.hold) this.timers.after(this.hold - since, this.flush);
    else {
      this.dueThisTurn = true;
      this.timers.endOfTurn(this.flush);
    }
  }

  private writeGathered(): void {
    const list = this.gathering.splice(0, this.gathering.length);
    const bufs = this.bufs;
    // The last joined run of buffers: the next target given the same ones in the same order shares it.
    let joinedFirst = -1;
    let joined: Buffer | undefined;
    for (let i = 0; i < list.length; i++) {
      const t = list[i]!;
      const first = t.gatherFirst;
      if (first < 0) continue;
      t.gatherFirst = t.gatherLast = -1;
      let bytes: Buffer;
      if (this.nexts[first]! < 0) bytes = bufs[first]!;
      else if (joined !== undefined && this.sameRun(joinedFirst, first)) bytes = joined;
      else {
        bytes = joined = this.join(first);
        joinedFirst = first;
      }
      t.writeGathered(bytes);
    }
    // Buffers gathered during the loop belong to the next flush: keep them.
    if (this.gathering.length === 0) {
      bufs.length = 0;
      this.nexts.length = 0;
    }
  }

  private sameRun(a: number, b: number): boolean {
    const bufs = this.bufs;
    const nexts = this.nexts;
    while (a >= 0 && b >= 0) {
      if (bufs[a] !== bufs[b]) return false;
      a = nexts[a]!;
      b = nexts[b]!;
    }
    return a === b;
  }

  /**
   * The run of buffers from `first`, joined (once per distinct run in a
   * flush, not per target). Copied here rather than through an array for
   * Buffer.concat, which counted about a tenth more instructions per
   * delivered message (callgrind, 100 WebSocket subscribers).
   */
  private join(first: number): Buffer {
    const bufs = this.bufs;
    const nexts = this.nexts;
    let length = 0;
    for (let i = first; i >= 0; i = nexts[i]!) length += bufs[i]!.length;
    const out = Buffer.allocUnsafe(length);
    let at = 0;
    for (let i = first; i >= 0; i = nexts[i]!) {
      out.set(bufs[i]!, at);
      at += bufs[i]!.length;
    }
    return out;
  }
}
