/**
 * The services the server hands to the layers above the hub (HTTP handlers
 * and transports), as one object: types only. It lives here, below both, so
 * that neither imports the other for it; the transports add their connection
 * registry to it (`ServerContext` in transports/connection.ts).
 */
import type { Auth } from "./auth/auth.js";
import type { Clock } from "./clock.js";
import type { HeartlineConfig } from "./config.js";
import type { HookRunner } from "./hooks/runner.js";
import type { Hub } from "./hub/hub.js";
import type { Logger, LogLimiter } from "./log.js";
import type { Stats } from "./stats.js";

export interface CoreContext {
  readonly config: HeartlineConfig;
  readonly hub: Hub;
  readonly clock: Clock;
  readonly log: Logger;
  /** Log lines clients can cause, limited per kind. */
  readonly logs: LogLimiter;
  readonly stats: Stats;
  /** Subscriber tokens and channel permissions. */
  readonly auth: Auth;
  /** The application's hooks (connect, subscribe, publish, rpc, disconnect); `enabled` is false without any. */
  readonly hooks: HookRunner;
  /** Coarse time, refreshed by the ticker; cheap to read on the hot path. */
  now: number;
  draining: boolean;
}
