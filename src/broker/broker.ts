/**
 * The Broker stores messages and tells the hub about them. It knows nothing
 * about connections.
 *
 * Contract (every implementation, memory or Redis):
 * - `publish` assigns the next `offset` of the channel (previous + 1, starting
 *   at 1 in a new epoch), appends the message to the channel's history and
 *   resolves only after the message is stored: an acknowledged publish is
 *   never lost while its history lives. It rejects with
 *   `BrokerUnavailableError` when it cannot store.
 * - An `epoch` names one lifetime of a channel's history. It changes whenever
 *   the history is lost (expiry after `historyTtl`, a restart of the memory
 *   broker, a Redis without the data), and offsets restart with it.
 * - The listener given to `onMessage` is called once per stored message, in
 *   offset order per channel.
 * - `read` returns, in one consistent step, the channel's current position
 *   and, when asked from a position, the messages after it. History is bounded
 *   by `historySize` messages per channel.
 * - What a broker keeps in this process is bounded: a channel that is only
 *   read (never published in its epoch) costs a small record that lives
 *   {@link readRecordTtl} after its last read, never a history buffer; the
 *   memory broker also caps the number of channels (`--max-channels`, refusing
 *   a new one with `channel_limit`) and the bytes of stored history
 *   (`--max-history-bytes`, evicting the oldest messages, an announced loss).
 * - `publish` with an `idempotencyKey` (see {@link IDEMPOTENCY_KEY_RE}) is
 *   idempotent per channel: while the key is remembered (`--idempotency-ttl`
 *   after the publish that first used it), publishing again on the same
 *   channel with the same key stores nothing, notifies no one and answers the
 *   first result (its epoch and offset) with `repeated: true`. The check and
 *   the store are one atomic step (a Redis Lua script in cluster mode, so
 *   every node agrees). The same key on another channel is another key.
 * - `sweep(now, inUse)` forgets what has expired. `inUse(channel)` (a map
 *   lookup in the hub) says whether this node still has subscribers or waiting
 *   polls on the channel: the record of a channel that is only read is kept
 *   while it is in use, so a quiet channel's subscriber sees no epoch change.
 */
import type { Position } from "../cursor-layout.js";
import type { Holds } from "./holds.js";

export type { Position };

/** A stored message. `json` is the SPEC §3 message object, encoded once. */
export interface StoredMessage {
  readonly channel: string;
  readonly epoch: string;
  readonly offset: number;
  /** `{"channel":…,"offset":…,"data":…}` (for a repeated publish: built from the repeat's data, which was not stored) */
  readonly json: string;
  /** True when an idempotency key matched an earlier publish: nothing was stored, `epoch` and `offset` are the first result's. */
  readonly repeated?: boolean;
}

/** An idempotency key: 1–128 URL-unreserved characters. */
export const IDEMPOTENCY_KEY_RE = /^[A-Za-z0-9._~-]{1,128}$/;

/** What `read` returns. */
export interface ReadResult {
  /** The channel's current epoch. */
  epoch: string;
  /** The channel's latest offset (0 when never published in this epoch). */
  offset: number;
  /** Messages after `since`, oldest first, at most `limit`. */
  messages: StoredMessage[];
  /**
   * True when `since` was given and every message after it is available
   * (all of them are in `messages`, or `limit` cut them and the rest can be
   * read next). False when `since` is absent or its position is gone.
   */
  recovered: boolean;
}

export interface Broker {
  /**
   * Stores a message whose data is already valid JSON text. With an
   * `idempotencyKey` (already validated), a repeat within the key's lifetime
   * answers the first result and stores nothing.
   */
  publish(channel: string, dataJson: string, idempotencyKey?: string): Promise<StoredMessage>;
  /** The current position of `channel`, and the messages after `since`. */
  read(channel: string, since?: Position, limit?: number): Promise<ReadResult>;
  /**
   * The same read answered at once, by a broker that never waits (the memory
   * broker). Woken long polls use it to answer in the turn they are woken and
   * to share one answer among every poll waiting at the same cursor.
   */
  readSync?(channel: string, since?: Position, limit?: number): ReadResult;
  /** Sets the single fan-out listener. */
  onMessage(listener: (message: StoredMessage) => void): void;
  /**
   * Interest (SPEC §13): the hub calls `interest(channel, true)` when a
   * channel gains its first local subscription or waiting poll, and
   * `interest(channel, false)` when it loses its last. A broker shared by
   * several nodes hands the listener only the messages of channels this node
   * has interest in (it may go on for a few seconds after the interest ended),
   * and every message of them, including those published between the hub's
   * read and the interest taking effect. It must return at once: no network
   * wait on this call. A broker without it hands over every channel.
   */
  interest?(channel: string, wanted: boolean): void;
  /** Whether the broker can store messages right now (`/readyz`). */
  isReady(): boolean;
  /** When not ready: which of its parts cannot store (a sharded broker's shards that are down), for `/readyz`. */
  unavailable?(): string[];
  /**
   * Periodic upkeep (history expiry); called by the server's ticker with the
   * hub's `inUse`, which must stay a cheap lookup.
   */
  sweep(now: number, inUse?: (channel: string) => boolean): void;
  /** What this process holds, for `/metrics`: channels with state, and bytes of stored history when the broker keeps it here. */
  usage?(): BrokerUsage;
  /** Resolves whether the broker became ready within `timeoutMs` (one that connects, like Redis, at start). */
  waitReady?(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
  /**
   * The cluster-wide holds behind presence, occupancy and the event feed (see
   * holds.ts). A broker without them serves one node: the hub keeps them in memory.
   */
  readonly holds?: Holds;
  /**
   * Hands `payload` to the `onSignal` listener of every node of the cluster,
   * this one included, at most once each (a node that is cut off at that
   * moment misses it): the server API's actions. Resolves once sent; rejects
   * with `BrokerUnavailableError` when it cannot be. A broker without it
   * serves one node: the hub delivers to this node only.
   */
  signal?(payload: string): Promise<void>;
  /** Sets the single listener of signals. */
  onSignal?(listener: (payload: string) => void): void;
  /**
   * Drops `channel`'s history: the next read or publish starts a new epoch.
   * Resolves once done; subscribers are told by the server (a signal), not by the broker.
   */
  removeHistory?(channel: string): Promise<void>;
}

export interface BrokerUsage {
  channels: number;
  historyBytes?: number;
  /** Channels whose notifications this node subscribes to in a shared broker (interest, SPEC §13). */
  subscribedChannels?: number;
  /** Notifications of stored messages this node received from a shared broker, and their bytes: its fan-out ingress. */
  notifications?: number;
  notificationBytes?: number;
}

/**
 * Seconds the record of a channel that is only read lives after its last read:
 * long enough that a long poll repeated every `--poll-timeout` keeps it (two
 * poll timeouts, at least 60 s), never longer than the history of a published
 * channel (`--history-ttl`).
 */
export function readRecordTtl(historyTtl: number, pollTimeout: number): number {
  return Math.min(historyTtl, Math.max(60, 2 * pollTimeout));
}

/** Builds the message object JSON once. `dataJson` must already be valid JSON. */
export function encodeMessage(channel: string, offset: number, dataJson: string): string {
  return '{"channel":' + JSON.stringify(channel) + ',"offset":' + offset + ',"data":' + dataJson + "}";
}
