/**
 * Write batching: the first write to a socket in a turn of the event loop
 * corks it, and one `setImmediate` uncorks every corked socket at the end of
 * the turn. A burst of messages to one subscriber then leaves in one writev
 * instead of one syscall each; a single message waits at most until the
 * current I/O callbacks are done.
 */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

const corked: Corkable[] = [];
let scheduled = false;

function flush(): void {
  scheduled = false;
  // New writes during the loop below start a new batch.
  const list = corked.splice(0, corked.length);
  for (let i = 0; i < list.length; i++) list[i]!.uncork();
}

/** Corks `target` until the end of this turn. Call once per turn per target (track it with a flag). */
export function corkUntilTurnEnds(target: Corkable): void {
  target.cork();
  corked.push(target);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}
