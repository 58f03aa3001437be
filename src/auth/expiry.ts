/**
 * Token deadlines of live connections, swept by the server's one ticker next
 * to the heartbeats: no timer per connection, only two fields read per tick.
 *
 * - At `refreshAt` a WebSocket is sent `{"type":"refresh"}` once; a valid
 *   refresh frame from the client moves both deadlines.
 * - At the last tick before `tokenExp` the connection is closed with
 *   `token_expired` (WebSocket close 4001; SSE `event: error`, then the end).
 */
import type { TokenHolder } from "./auth.js";

/** A connection as the token sweep sees it. */
export interface ExpiringConnection extends TokenHolder {
  close(reason: "token_expired"): void;
  requestRefresh(): void;
}

export function sweepTokens(conns: Iterable<ExpiringConnection>, nowMs: number, marginMs: number): void {
  for (const c of conns) {
    if (c.tokenExp === 0) continue;
    if (nowMs + marginMs >= c.tokenExp) {
      c.close("token_expired");
      continue;
    }
    if (c.refreshAt !== 0 && nowMs >= c.refreshAt) {
      c.refreshAt = 0;
      c.requestRefresh();
    }
  }
}
