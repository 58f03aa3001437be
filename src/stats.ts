/**
 * Plain counters bumped on the hot path (a field increment, no label lookup);
 * `/metrics` reads them at scrape time.
 */
export class Stats {
  readonly delivered = { ws: 0, sse: 0, poll: 0 };
  readonly heartbeats = { ws: 0, sse: 0 };
  readonly slowConsumerDrops = { ws: 0, sse: 0 };
  heartbeatTimeouts = 0;
  readonly rejected = { too_many_connections: 0, too_many_connections_per_ip: 0, origin_not_allowed: 0, unauthorized: 0, token_expired: 0, token_revoked: 0, forbidden: 0 };
  /** Counts a refusal of a subscriber by its error code, when it is one of {@link rejected}'s. */
  countRejected(code: string): void {
    if (Object.hasOwn(this.rejected, code)) this.rejected[code as keyof Stats["rejected"]]++;
  }
  /** Long polls that had to wait for data. */
  pollWaits = 0;
  /** Long polls served as a repeat of the one before on their connection (server/poll-repeat.ts). */
  pollRepeats = 0;
  brokerErrors = 0;
  /** Publishes accepted through this node's API and WebSocket frames. */
  publishAccepted = 0;
  /** Collections run once a burst of new connections settled (server/settle-gc.ts). */
  settleCollections = 0;
}
