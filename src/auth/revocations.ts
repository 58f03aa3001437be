/**
 * Token revocations (SPEC §10, `POST /api/revoke`): per user, the moment
 * before which that user's tokens were issued is refused. Checked where
 * tokens are verified (Auth.verify), so every way in (subscribe, resume,
 * refresh, HTTP publish, RPC, every poll) meets it.
 *
 * Bounded: a revocation is kept {@link REVOCATION_TTL_MS} after it was
 * applied here (by then the tokens it refuses are expected to have expired:
 * Heartline's tokens are short-lived and refreshed), and at most
 * {@link MAX_REVOCATIONS} users are kept; past that the oldest revocation is
 * forgotten first (the caller logs it). Kept in insertion order, so expiry
 * drops entries from the front without a scan.
 */

/** How long a revocation is kept after it was applied on this node: 24 hours. */
export const REVOCATION_TTL_MS = 24 * 3600 * 1000;
/** Most users with a revocation kept at once. */
export const MAX_REVOCATIONS = 100_000;

interface Revocation {
  /** Tokens with `iat` (seconds) below this are refused. */
  readonly before: number;
  /** Clock ms when the revocation is forgotten. */
  readonly until: number;
}

export class Revocations {
  private readonly byUser = new Map<string, Revocation>();

  constructor(
    private readonly ttlMs = REVOCATION_TTL_MS,
    private readonly max = MAX_REVOCATIONS,
  ) {}

  /**
   * Refuses `user`'s tokens issued before `before` (unix seconds) from `now`
   * (clock ms) on; an earlier `before` than one already kept changes nothing.
   * Returns the user whose revocation had to be forgotten to make room, if any.
   */
  add(user: string, before: number, now: number): string | undefined {
    this.expire(now);
    const old = this.byUser.get(user);
    if (old !== undefined) this.byUser.delete(user);
    this.byUser.set(user, { before: Math.max(before, old?.before ?? -Infinity), until: now + this.ttlMs });
    if (this.byUser.size <= this.max) return undefined;
    const oldest = this.byUser.keys().next().value!;
    this.byUser.delete(oldest);
    return oldest;
  }

  /**
   * Whether a token of `user` issued at `iat` (unix seconds; undefined when
   * the token has no `iat`) is revoked at `now`. A token without `iat` cannot
   * show it was issued after the revocation, so it is refused.
   */
  revoked(user: string, iat: number | undefined, now: number): boolean {
    if (this.byUser.size === 0) return false;
    const r = this.byUser.get(user);
    if (r === undefined || r.until <= now) return false;
    return iat === undefined || iat < r.before;
  }

  /** Users with a revocation kept. */
  get size(): number {
    return this.byUser.size;
  }

  /** Forgets revocations whose time is up (the oldest are first). */
  private expire(now: number): void {
    for (const [user, r] of this.byUser) {
      if (r.until > now) break;
      this.byUser.delete(user);
    }
  }
}
