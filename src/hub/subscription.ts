/**
 * What the hub hands to subscribers: the {@link Subscriber} interface a
 * connection implements, a {@link Subscription} (its position and state), and
 * {@link Outgoing}, a message encoded at most once per wire format.
 */
import type { StoredMessage } from "../broker/broker.js";
import type { HoldChange } from "../broker/holds.js";
import { CURSOR_VERSION } from "../cursor-layout.js";
import { sseMessageEvent, ssePresenceEvent, wsMessagePayload, wsTextFrame } from "../wire.js";
import { channelKey, cursorSegment, type Position } from "./cursor.js";
import type { Member } from "./presence.js";

/**
 * A message on its way out, encoded at most once per wire format and shared
 * by every subscriber; the formats themselves are in wire.ts.
 */
export class Outgoing {
  private wsPayload: Buffer | undefined;
  private wsWire: Buffer | undefined;
  private sseEvent: Buffer | undefined;
  private soloKey: string | undefined;
  private soloEvent: Buffer | undefined;
  constructor(readonly message: StoredMessage) {}

  /** WebSocket text payload `{"type":"message",…}`. */
  get ws(): Buffer {
    return (this.wsPayload ??= wsMessagePayload(this.message.json));
  }

  /** The whole WebSocket frame (server frames are unmasked), ready for the socket. */
  get wsFrame(): Buffer {
    return (this.wsWire ??= wsTextFrame(this.ws));
  }

  /** SSE event body `data: {…}\n\n` (the per-connection `id:` line goes before it). */
  get sse(): Buffer {
    return (this.sseEvent ??= sseMessageEvent(this.message.json));
  }

  /**
   * The whole SSE event, `id:` line included, for a stream whose one channel
   * is this message's (its key in cursors `key`): such a stream's cursor
   * names only this message's position, so every one of them gets these
   * same bytes, built once.
   */
  sseSolo(key: string): Buffer {
    if (this.soloKey !== key || this.soloEvent === undefined) {
      this.soloKey = key;
      this.soloEvent = sseMessageEvent(this.message.json, CURSOR_VERSION + cursorSegment(key, this.message));
    }
    return this.soloEvent;
  }
}

/** A presence object on its way out (a snapshot, a join or a leave), encoded at most once per wire format. */
export class PresenceOut {
  private wsPayload: Buffer | undefined;
  private wsWire: Buffer | undefined;
  private sseEvent: string | undefined;
  constructor(
    readonly type: "presence" | "join" | "leave",
    /** The SPEC §9 object. */
    readonly json: string,
  ) {}

  /** WebSocket text payload. */
  get ws(): Buffer {
    return (this.wsPayload ??= Buffer.from(this.json));
  }

  /** The whole WebSocket frame, ready for the socket. */
  get wsFrame(): Buffer {
    return (this.wsWire ??= wsTextFrame(this.ws));
  }

  /** `event: <type>` with the object as data (no `id:`: the position does not move). */
  get sse(): string {
    return (this.sseEvent ??= ssePresenceEvent(this.type, this.json));
  }
}

/** What a connection implements to receive from the hub. */
export interface Subscriber {
  /** A message of `sub`'s channel, in order, exactly once. */
  deliver(sub: Subscription, out: Outgoing): void;
  /** Loss announced: `sub` now stands at `offset` of `epoch`. */
  reset(sub: Subscription, epoch: string, offset: number): void;
  /** The subscription is established (sent before its replay). */
  subscribed(sub: Subscription, epoch: string, latest: number, recovered: boolean): void;
  /**
   * On a presence channel: the snapshot (`type` "presence", after the
   * subscription is established and the subscriber's own member is held),
   * then each join and leave; `json` is the SPEC §9 object.
   */
  presence(sub: Subscription, out: PresenceOut): void;
}

/** A subscription's part in presence: its member, and the changes held back until its snapshot is sent. */
export interface SubPresence {
  readonly member: Member;
  /** Changes that arrived before the snapshot was sent; null once it is. */
  pending: HoldChange[] | null;
  /** The set's version the subscriber stands at. */
  version: number;
  /** The member was counted in (Presence.enter called and not failed): unsubscribing lets it go. */
  entered: boolean;
}

export const RECOVERING = 0;
export const LIVE = 1;
export const CLOSED = 2;

export class Subscription {
  state = RECOVERING;
  /** Epoch and last offset handed to the subscriber. */
  epoch = "";
  offset = 0;
  /** Live messages that arrived while history was being read. */
  pending: StoredMessage[] | null = [];
  /** The channel's key inside cursors. */
  readonly key: string;
  /** Settles once history is delivered and the subscription is live. */
  ready: Promise<void> = Promise.resolve();
  /** On a presence channel, with a member: its presence state; else null. */
  presence: SubPresence | null = null;
  constructor(
    readonly subscriber: Subscriber,
    readonly channel: string,
    key?: string,
  ) {
    this.key = key ?? channelKey(channel);
  }

  get live(): boolean {
    return this.state === LIVE;
  }

  get closed(): boolean {
    return this.state === CLOSED;
  }

  get position(): Position {
    return { epoch: this.epoch, offset: this.offset };
  }
}
