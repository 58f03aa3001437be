/**
 * A subscription handle: what `hl.subscribe()` returns. Messages go to the
 * handler given there; resets (announced loss) and errors about the channel
 * are events of the handle.
 */
import { Emitter } from "./emitter.js";
import type { HeartlineError } from "./errors.js";
import type { Message, Position, ResetInfo } from "./types.js";

/** Events of a {@link Subscription}. */
export interface SubscriptionEvents {
  /** Messages may have been lost; the channel now stands at `offset` of `epoch`. Reload state built from messages. */
  reset: ResetInfo;
  /** The server refused the subscription (e.g. `forbidden`, `too_many_channels`). */
  error: HeartlineError;
}

/** What a subscription needs from its client. */
export interface SubscriptionOwner {
  positionOf(channel: string): Position | undefined;
  remove(sub: Subscription<never>): void;
}

/** One `subscribe()` call: a handler on a channel until {@link Subscription.unsubscribe}. */
export class Subscription<T = unknown> extends Emitter<SubscriptionEvents> {
  /** Whether {@link Subscription.unsubscribe} was called (or the client closed). */
  closed = false;
  readonly #owner: SubscriptionOwner;

  constructor(
    /** The channel. */
    readonly channel: string,
    /** Receives every message of the channel once, in offset order. */
    readonly handler: (message: Message<T>) => void,
    owner: SubscriptionOwner,
  ) {
    super();
    this.#owner = owner;
  }

  /** The channel's current position (last offset received, inside its epoch), once known. */
  get position(): Position | undefined {
    return this.#owner.positionOf(this.channel);
  }

  /** Stops the handler and events. The channel is left on the server when no other subscription holds it. Safe twice. */
  unsubscribe(): void {
    if (this.closed) return;
    this.closed = true;
    this.#owner.remove(this);
    this.removeAllListeners();
  }

  /** Emits `type` to this handle's listeners; used by the client. */
  notify<K extends keyof SubscriptionEvents>(type: K, value: SubscriptionEvents[K]): void {
    this.emit(type, value);
  }
}
