/**
 * Heartline as a library: `createHeartline(options)` gives a server that can
 * `listen()` on its own or `attach()` to an existing `http.Server`.
 *
 * ```ts
 * import { createHeartline } from "heartline";
 * const hl = createHeartline({ apiKey: "secret" });
 * await hl.listen(8080);
 * await hl.publish("chat:lobby", { text: "hi" }); // → { channel, epoch, offset }
 * await hl.close();
 * ```
 */
import type { HeartlineOptions } from "./config.js";
import { Heartline, type RuntimeOptions } from "./server.js";

export { Heartline, type RuntimeOptions } from "./server.js";
export { ConfigError, OPTION_DEFS, type HeartlineConfig, type HeartlineOptions, type TransportName } from "./config.js";
export { ERROR_CODES, HeartlineError, HookError, type ErrorCode } from "./errors.js";
export type {
  ConnectResult,
  DisconnectContext,
  HookContext,
  HookName,
  Hooks,
  HookTransport,
  PublishContext,
  PublishDecision,
  RpcContext,
  SubscribeContext,
  SubscribeResult,
} from "./hooks/types.js";
export { CLOSE_CODES, FINAL_CLOSE_CODES, shouldReconnect, type CloseReason } from "./close-codes.js";
export { ManualClock, systemClock, type Clock } from "./clock.js";
export { MemoryBroker } from "./broker/memory.js";
export { RedisBroker, type RedisBrokerOptions } from "./broker/redis.js";
export type { Broker, ReadResult, StoredMessage } from "./broker/broker.js";
export type { BroadcastEntry, BroadcastResult } from "./http/broadcast.js";
export type { PresenceMember, PresenceSnapshot } from "./server/presence-api.js";
export type { PublishOptions, PublishResult } from "./http/publish.js";
export type { ChannelCount, ChannelInfo, ChannelList, DisconnectOptions, History, HistoryMessage, HistoryOptions } from "./server/server-api.js";

/**
 * Creates a Heartline server. Options are the `serve` options in camelCase
 * (validated once; a bad value throws `ConfigError` naming it).
 */
export function createHeartline(options: HeartlineOptions = {}, runtime: RuntimeOptions = {}): Heartline {
  return new Heartline(options, runtime);
}
