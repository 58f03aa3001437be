/**
 * Per-connection rate limits (SPEC §11: `--client-publish-rate`,
 * `--client-rpc-rate`) as a token bucket with a burst of twice the rate,
 * kept in one plain number per limit and connection: the bucket's
 * "theoretical arrival time" (the generic cell rate algorithm). No timer,
 * no object, nothing allocated per connection.
 */

/**
 * Takes one token at `now` (ms) from the bucket whose state is `tat`, for
 * `rate` per second with a burst of `2 × rate`. Returns the bucket's new
 * state, or -1 when it is empty (the request is over the limit and the
 * state stays as it was). A rate of 0 means unlimited.
 */
export function takeToken(tat: number, now: number, rate: number): number {
  if (rate <= 0) return tat;
  const interval = 1000 / rate;
  const start = tat > now ? tat : now;
  // Up to a burst of 2 × rate requests may be ahead of the steady pace.
  if (start - now > (2 * rate - 1) * interval) return -1;
  return start + interval;
}
