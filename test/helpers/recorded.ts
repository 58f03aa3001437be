/**
 * Waiting without fixed sleeps, and the recorded stream that the WebSocket
 * and event-stream readers of the tests are built on.
 */

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 5000, what = "condition"): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Everything a stream delivered, in order, with a read cursor: `next` takes
 * the first item after those already taken that matches a predicate, waiting
 * for it when it has not arrived yet. Items it passes over stay in `items`.
 */
export class Recorded<T> {
  /** Every item received so far, taken or not. */
  readonly items: T[] = [];
  private taken = 0;

  /** `what` names an item in the timeout message ("a WebSocket frame"). */
  constructor(private readonly what: string) {}

  /** Records an item (the reader calls this for each one it receives). */
  protected record(item: T): void {
    this.items.push(item);
  }

  /** The next recorded item (after those already taken) matching `pred`. */
  next(pred: (item: T) => boolean = () => true, timeoutMs = 5000): Promise<T> {
    return waitFor(
      () => {
        for (let i = this.taken; i < this.items.length; i++) {
          if (pred(this.items[i]!)) {
            this.taken = i + 1;
            return { item: this.items[i]! };
          }
        }
        return undefined;
      },
      timeoutMs,
      this.what,
    ).then((found) => found.item);
  }
}
