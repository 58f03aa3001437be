/**
 * The server's side of subscriber tokens: which token a request carries,
 * whether it may subscribe or publish, and the deadlines a connection keeps
 * for its token (expiry, and on WebSocket the moment to ask for a fresh one).
 * With neither `--jwt-secret` nor `--jwt-public-key`, `enabled` is false and
 * every channel is public.
 */
import type { IncomingMessage } from "node:http";
import { systemClock, type Clock } from "../clock.js";
import type { HeartlineConfig } from "../config.js";
import { HeartlineError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Stats } from "../stats.js";
import { publishDenied, subscribeDenied } from "./permissions.js";
import { Revocations } from "./revocations.js";
import { createTokenVerifier, MIN_SECRET_BYTES, tokenOf, type TokenClaims, type TokenVerifier } from "./tokens.js";

/** The longest lead of a `refresh` request before `exp`; shorter tokens get a third of their lifetime. */
export const REFRESH_LEAD_MS = 30_000;

/**
 * What a connection keeps of its token: the claims its frames are checked
 * against and the deadlines the token sweep reads. Persistent connections
 * implement it; the auth layer needs nothing else of them.
 */
export interface TokenHolder {
  readonly kind: "ws" | "sse";
  claims: TokenClaims | undefined;
  /** When the token expires, in wall-clock ms; 0 = no token. */
  tokenExp: number;
  /** When to ask the client for a fresh token, in wall-clock ms; 0 = nothing to ask. */
  refreshAt: number;
}

export interface AuthOptions {
  clock: Clock;
  /** Wall-clock milliseconds since the epoch; see {@link wallClockFor}. */
  wallClock?: (() => number) | undefined;
  /** The ticker's period: connections are closed at the last tick before `exp`. */
  tickMs: number;
  log: Logger;
  stats: Stats;
}

export class Auth {
  /** Whether tokens are checked at all. */
  readonly enabled: boolean;
  /** Wall-clock milliseconds since the epoch, the time base of `exp`. */
  readonly now: () => number;
  /**
   * A connection is closed once `now + marginMs` reaches its token's `exp`,
   * i.e. at the last tick before it, so it never receives a message after
   * `exp` while waiting for the next tick.
   */
  readonly marginMs: number;
  private readonly verifier: TokenVerifier | undefined;
  private readonly stats: Stats;
  private readonly log: Logger;
  /** Users whose tokens issued before a moment are refused (POST /api/revoke). */
  private readonly revocations = new Revocations();

  /** Reads and checks the keys; throws `ConfigError` for a bad `--jwt-public-key` file. */
  constructor(config: Pick<HeartlineConfig, "jwtSecret" | "jwtPublicKey">, options: AuthOptions) {
    this.verifier = createTokenVerifier(config);
    this.enabled = this.verifier !== undefined;
    this.now = wallClockFor(options.clock, options.wallClock);
    this.marginMs = options.tickMs;
    this.stats = options.stats;
    this.log = options.log;
    if (this.verifier?.weakSecret) {
      options.log.warn(`--jwt-secret is shorter than ${MIN_SECRET_BYTES} bytes; use a long random secret`);
    }
  }

  /** Verifies a token now, revocations included. Throws 401 `unauthorized` / `token_expired` / `token_revoked`. */
  async verify(token: string): Promise<TokenClaims> {
    if (!this.verifier) throw new HeartlineError("bad_request", "this server does not use tokens (no --jwt-secret or --jwt-public-key)");
    const claims = await this.verifier.verify(token, this.now());
    if (this.isRevoked(claims)) throw new HeartlineError("token_revoked", "this token was revoked (issued before a revocation of its user); get a new one");
    return claims;
  }

  /**
   * Refuses `user`'s tokens issued (`iat`, unix seconds) before `before` from
   * now on, on this node (see revocations.ts for how long it is kept).
   */
  revoke(user: string, before: number): void {
    const forgotten = this.revocations.add(user, before, this.now());
    if (forgotten !== undefined) this.log.warn({ user: forgotten }, "too many token revocations kept; the oldest was forgotten");
  }

  /** Whether `claims` (a verified token) was revoked since it was verified. */
  isRevoked(claims: TokenClaims): boolean {
    return this.revocations.revoked(claims.sub, claims.iat, this.now());
  }

  /**
   * Checks a subscribe request (WebSocket upgrade, SSE, poll): verifies its
   * token, if any, and every channel against it. Resolves with the claims
   * (undefined without a token, or when tokens are off); throws 401 / 403.
   * A token that is present is always verified, even for public channels.
   */
  async authorizeSubscribe(req: IncomingMessage, url: Pick<URL, "searchParams">, channels: readonly string[]): Promise<TokenClaims | undefined> {
    if (!this.enabled) return undefined;
    try {
      const token = tokenOf(req, url);
      const claims = token === undefined ? undefined : await this.verify(token);
      const now = this.now();
      for (const channel of channels) {
        const denied = subscribeDenied(claims, channel, now);
        if (denied) throw denied;
      }
      return claims;
    } catch (err) {
      if (err instanceof HeartlineError && (err.code === "unauthorized" || err.code === "token_expired" || err.code === "token_revoked" || err.code === "forbidden")) {
        this.stats.countRejected(err.code);
      }
      throw err;
    }
  }

  /** The token a request carries (Bearer header or `token=`), when tokens are on. */
  tokenOf(req: IncomingMessage, url: Pick<URL, "searchParams">): string | undefined {
    return this.enabled ? tokenOf(req, url) : undefined;
  }

  /** Why `claims` may not subscribe to `channel` now, or undefined. */
  subscribeDenied(claims: TokenClaims | undefined, channel: string): HeartlineError | undefined {
    return this.enabled ? subscribeDenied(claims, channel, this.now()) : undefined;
  }

  /** Why `claims` may not publish to `channel` now (`--client-publish` already checked), or undefined. */
  publishDenied(claims: TokenClaims | undefined, channel: string): HeartlineError | undefined {
    return this.enabled ? publishDenied(claims, channel, this.now()) : undefined;
  }

  /**
   * Gives `conn` its token: the claims its frames are checked against, its
   * expiry, and (WebSocket) when to send `{"type":"refresh"}`: a third of
   * the remaining lifetime before `exp`, at most {@link REFRESH_LEAD_MS}.
   */
  bind(conn: TokenHolder, claims: TokenClaims | undefined): void {
    conn.claims = claims;
    conn.tokenExp = claims ? claims.expMs : 0;
    conn.refreshAt = 0;
    if (claims && conn.kind === "ws") {
      const life = claims.expMs - this.now();
      conn.refreshAt = claims.expMs - Math.min(REFRESH_LEAD_MS, Math.max(life, 0) / 3);
    }
  }

  /** A held poll may wait at most this many seconds for a token that expires at `expMs`. */
  holdLimit(claims: TokenClaims | undefined): number {
    if (!claims) return Infinity;
    return Math.max(0, (claims.expMs - this.now() - this.marginMs) / 1000);
  }
}

/**
 * The wall clock behind `exp`: `wallClock` when given, `Date.now` with the
 * system clock, and otherwise the given clock anchored to `Date.now()` once,
 * so a `ManualClock` moves token expiry along with everything else.
 */
export function wallClockFor(clock: Clock, wallClock?: () => number): () => number {
  if (wallClock) return wallClock;
  if (clock === systemClock) return Date.now;
  const offset = Date.now() - clock.now();
  return () => clock.now() + offset;
}
