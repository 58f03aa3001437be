/**
 * A minimal typed event emitter: enough for the client's few events, with
 * no dependency on Node's `events` or the DOM's `EventTarget`.
 */

/** A listener of one event type. */
export type Listener<T> = (value: T) => void;

/** Emits the events of the map `E` (event name → value passed to listeners). */
export class Emitter<E> {
  #listeners: { [K in keyof E]?: Set<Listener<E[K]>> } = {};

  /** Adds `fn` for `type`; returns `this` for chaining. */
  on<K extends keyof E>(type: K, fn: Listener<E[K]>): this {
    (this.#listeners[type] ??= new Set()).add(fn);
    return this;
  }

  /** Removes `fn` for `type`. */
  off<K extends keyof E>(type: K, fn: Listener<E[K]>): this {
    this.#listeners[type]?.delete(fn);
    return this;
  }

  /**
   * Calls every listener of `type` with `value`. A listener that throws does
   * not stop the others; its error is rethrown asynchronously, where the
   * platform reports uncaught errors.
   */
  protected emit<K extends keyof E>(type: K, value: E[K]): void {
    const set = this.#listeners[type];
    if (!set) return;
    for (const fn of [...set]) safely(() => fn(value));
  }

  /** Drops every listener. */
  protected removeAllListeners(): void {
    this.#listeners = {};
  }
}

/**
 * Calls `fn`; an error it throws is rethrown asynchronously, where the
 * platform reports uncaught errors, so one failing handler does not stop the
 * client or the other handlers.
 */
export function safely(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}
