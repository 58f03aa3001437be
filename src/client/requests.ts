/**
 * Publishes and RPCs waiting for their answer, by the id the client gave
 * them. Each ends exactly once, through {@link Requests.settle}: answered,
 * refused, timed out, lost with the WebSocket it was sent on, or failed when
 * the client closes. Settling forgets it, clears its timer and aborts its
 * HTTP request, so nothing stays behind whichever way it ends.
 */
import type { ClientClock, TimerHandle } from "./clock.js";
import type { Attempt } from "./connector.js";
import { HeartlineError, lostError } from "./errors.js";

/** One request waiting for its answer. */
export interface Waiting {
  /** The WebSocket it was sent on (lost with it); undefined over HTTP or through a link. */
  a: Attempt | undefined;
  /** An RPC (answered by an `rpc` frame), not a publish (answered by `published`). */
  rpc: boolean;
  resolve(r: unknown): void;
  reject(e: HeartlineError): void;
  timer: TimerHandle;
  /** Aborts its HTTP request. */
  abort?: () => void;
}

export class Requests {
  readonly #waiting = new Map<number, Waiting>();
  #nextId = 1;

  constructor(private readonly clk: ClientClock) {}

  /**
   * Registers a request, failing it with the code `timeout` after `ms`, and
   * has `send` send it (or settle it at once); resolves with its answer.
   */
  pend<T>(rpc: boolean, ms: number, timeout: string, send: (id: number, w: Waiting) => void): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = this.clk.setTimeout(() => this.settle(id, new HeartlineError(timeout, `no answer within ${ms} ms`)), ms);
      const w: Waiting = { a: undefined, rpc, resolve: resolve as (r: unknown) => void, reject, timer };
      this.#waiting.set(id, w);
      try {
        send(id, w);
      } catch {
        this.settle(id, lostError());
      }
    });
  }

  /** The request waiting under `id`, if any (`id` as a server frame gives it). */
  entry(id: unknown): Waiting | undefined {
    return typeof id === "number" ? this.#waiting.get(id) : undefined;
  }

  /** Ends request `id`, once: a HeartlineError rejects it, anything else is its answer. */
  settle(id: number, result: unknown): void {
    const w = this.#waiting.get(id);
    if (!w) return;
    this.#waiting.delete(id);
    this.clk.clearTimeout(w.timer);
    w.abort?.();
    if (result instanceof HeartlineError) w.reject(result);
    else w.resolve(result);
  }

  /** Fails the requests sent on `a` (every request, when `a` is undefined) with `err()`. */
  lose(err: () => HeartlineError, a?: Attempt): void {
    for (const [id, w] of this.#waiting) if (!a || w.a === a) this.settle(id, err());
  }
}
