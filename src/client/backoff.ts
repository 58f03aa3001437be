/**
 * Reconnection delays: exponential growth with full jitter (a uniformly random
 * wait between 0 and the exponential bound), so a fleet of clients dropped at
 * the same moment does not come back at the same moment.
 */

/** Settings of {@link Backoff}, in milliseconds. */
export interface BackoffOptions {
  /** Bound of the first wait. Default 250 ms. */
  base?: number;
  /** Largest bound. Default 30 000 ms. */
  cap?: number;
  /** A source of numbers in [0, 1); `Math.random` by default. */
  random?: () => number;
}

/**
 * The n-th call of {@link Backoff.next} (counting from 0) returns a wait in
 * `[0, min(cap, base × 2^n))`. {@link Backoff.reset} starts over; the client
 * calls it once a connection has stayed up long enough to count as stable.
 */
export class Backoff {
  /** Waits handed out since the last reset. */
  attempt = 0;
  readonly #base: number;
  readonly #cap: number;
  readonly #random: () => number;

  constructor({ base = 250, cap = 30_000, random = Math.random }: BackoffOptions = {}) {
    this.#base = base;
    this.#cap = cap;
    this.#random = random;
  }

  /** The current bound: `min(cap, base × 2^attempt)`. */
  get bound(): number {
    return Math.min(this.#cap, this.#base * 2 ** Math.min(this.attempt, 30));
  }

  /** The next wait, in milliseconds. */
  next(): number {
    const wait = Math.floor(this.#random() * this.bound);
    this.attempt++;
    return wait;
  }

  /** Starts over from the first, shortest bound. */
  reset(): void {
    this.attempt = 0;
  }
}
