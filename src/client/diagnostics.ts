/**
 * What `hl.diagnostics()` answers: why the client fell back from one
 * transport to the next, and why each connection it had ended; the last 20
 * of each, oldest first. With the `report` option, the entries not yet
 * reported go to the server (`POST /api/diagnostics`) once the next
 * connection opens; the server keeps only their transports and reasons.
 */
import type { TransportName } from "./types.js";

/**
 * Why a transport did not open: `timeout` (nothing arrived within
 * `openTimeout`), `refused` (an error status or close code came back),
 * `failed` (it broke without one: an EventSource never shows its status),
 * `unsupported` (the platform refused to open it).
 */
export type FallbackReason = "timeout" | "refused" | "failed" | "unsupported";
/** Why a connection ended: `silent` (no traffic within the heartbeat interval and grace), `server` (closed with a code), `network` (broke with none). */
export type CutCause = "silent" | "server" | "network";

export interface Fallback {
  /** The client clock's time (ms). */
  at: number;
  from: TransportName;
  to: TransportName;
  reason: FallbackReason;
  /** The HTTP status or close code, when one came. */
  code?: number;
}

export interface Cut {
  at: number;
  transport: TransportName;
  cause: CutCause;
  code?: number;
  /** Milliseconds the connection had been up. */
  after: number;
}

export interface DiagnosticsSnapshot {
  fallbacks: Fallback[];
  cuts: Cut[];
}
