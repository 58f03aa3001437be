/**
 * Time as a dependency of the client. Every timer of the client (backoff
 * waits, open timeouts, the heartbeat watchdog, publish acknowledgements)
 * goes through a {@link ClientClock}, so tests can move time by hand instead
 * of sleeping.
 */

/** Opaque handle of a scheduled callback. */
export type TimerHandle = unknown;

/** A `setTimeout`-like scheduler plus a monotonic `now()`, in milliseconds. */
export interface ClientClock {
  /** Milliseconds, monotonic enough for deadlines. */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a callback scheduled by {@link ClientClock.setTimeout}; a stale handle is ignored. */
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock: the platform's timers and `performance.now()`. */
export const realClock: ClientClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};
