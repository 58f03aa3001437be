/**
 * Write batching: the first write to a socket in a turn of the event loop
 * corks it, and one `setImmediate` uncorks every corked socket at the end of
 * the turn. A burst of messages to one subscriber then leaves in one writev
 * instead of one syscall each; a single message waits at most until the
 * current I/O callbacks are done. One batch per server (its connection
 * registry holds it), so servers in one process share nothing.
 */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

export class WriteBatch {
  private readonly corked: Corkable[] = [];
  private scheduled = false;
  /** Bound once: scheduling the flush allocates no closure. */
  private readonly flush = (): void => {
    this.scheduled = false;
    // New writes during the loop below start a new batch.
    const list = this.corked.splice(0, this.corked.length);
    for (let i = 0; i < list.length; i++) list[i]!.uncork();
  };

  /** Corks `target` until the end of this turn. Call once per turn per target (track it with a flag). */
  corkUntilTurnEnds(target: Corkable): void {
    target.cork();
    this.corked.push(target);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }
}
