/**
 * The one heartbeat sweep for every persistent connection: deadlines are
 * plain fields on the connection, read by the server's single ticker.
 *
 * - Any connection the server has not written to for `interval` gets a
 *   heartbeat (WS: protocol ping + `{"type":"ping"}`; SSE: `event: ping`).
 * - A WebSocket peer must also show life: one that has sent nothing for
 *   `interval` is pinged, and one that stays silent for `timeout` after the
 *   ping is closed with 4000 and freed.
 */
import type { Connection } from "./connection.js";

export function sweepHeartbeats(conns: Iterable<Connection>, now: number, intervalMs: number, timeoutMs: number): void {
  for (const c of conns) {
    if (c.pingSentAt !== 0) {
      if (now - c.pingSentAt >= timeoutMs) {
        c.close("heartbeat_timeout");
        continue;
      }
      if (now - c.lastSendAt >= intervalMs) c.sendPing();
      continue;
    }
    const quietOut = now - c.lastSendAt >= intervalMs;
    const quietIn = c.kind === "ws" && now - c.lastRecvAt >= intervalMs;
    if (quietOut || quietIn) {
      c.sendPing();
      if (c.kind === "ws") c.pingSentAt = now;
    }
  }
}

/** Cuts sockets whose polite close the peer did not complete in time. */
export function sweepClosing(conns: Iterable<Connection>, now: number): void {
  for (const c of conns) if (now >= c.terminateAt) c.terminate();
}
