/**
 * A subscription handle: what `hl.subscribe()` returns. Messages go to the
 * handler given there; resets (announced loss), errors about the channel,
 * presence and the server's removal of the subscription are events of the
 * handle.
 */
import { Emitter } from "./emitter.js";
import type { HeartlineError } from "./errors.js";
import type { Message, Position, PresenceMember, ResetInfo } from "./types.js";

/** Events of a {@link Subscription}. */
export interface SubscriptionEvents {
  /** Messages may have been lost; the channel now stands at `offset` of `epoch`. Reload state built from messages. */
  reset: ResetInfo;
  /** The server refused the subscription (e.g. `forbidden`, `too_many_channels`). */
  error: HeartlineError;
  /**
   * Presence channels: the server's list of members, after every subscribe
   * and resubscribe (reconnection). It replaces the list kept so far; `join`
   * and `leave` then change it.
   */
  presence: PresenceMember[];
  /** Presence channels: a member joined (one already listed is replaced). */
  join: PresenceMember;
  /** Presence channels: a member left. */
  leave: PresenceMember;
  /** The server removed the subscription (`POST /api/unsubscribe`): it has ended, and is not resubscribed. */
  unsubscribed: { channel: string };
}

/** What a subscription needs from its client. */
export interface SubscriptionOwner {
  positionOf(channel: string): Position | undefined;
  membersOf(channel: string): PresenceMember[] | undefined;
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

  /**
   * The channel's members, as of the latest snapshot and the joins and leaves
   * after it: the same list as `GET /api/presence/<channel>` once the events
   * have arrived. `undefined` until the first snapshot, and on a channel that
   * does not track presence (`--presence`). After a reconnection the list
   * stays as last known until the new snapshot replaces it.
   */
  presence(): PresenceMember[] | undefined {
    return this.#owner.membersOf(this.channel);
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
