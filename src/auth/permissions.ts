/**
 * Channel permissions (SPEC §5), as pure functions of a token's claims.
 *
 * - A channel in namespace `public` (`public:…`) needs no token.
 * - Any other channel needs a token whose `channels` claim matches it
 *   (subscribe) or whose `publish` claim matches it (client publish, which
 *   `--client-publish` must allow as well).
 * - No token → `unauthorized` (401); a token past its `exp` →
 *   `token_expired` (401); a token that does not cover the channel →
 *   `forbidden` (403).
 *
 * Each check returns the error instead of throwing, so callers on hot or
 * asynchronous paths decide how to report it.
 */
import { HeartlineError } from "../errors.js";
import type { TokenClaims } from "./tokens.js";

/** The namespace whose channels anyone may subscribe to. */
export const PUBLIC_NAMESPACE = "public";

/** Whether `channel` is in the `public` namespace. */
export function isPublicChannel(channel: string): boolean {
  return channel.startsWith(PUBLIC_NAMESPACE + ":");
}

/** Why `claims` may not subscribe to `channel` at wall time `nowMs`, or undefined when it may. */
export function subscribeDenied(claims: TokenClaims | undefined, channel: string, nowMs: number): HeartlineError | undefined {
  if (isPublicChannel(channel)) return undefined;
  if (!claims) return new HeartlineError("unauthorized", `channel ${channel} needs a token (Authorization: Bearer <jwt> or token=)`);
  if (nowMs >= claims.expMs) return expired();
  if (!claims.channels.matches(channel)) return new HeartlineError("forbidden", `the token does not allow subscribing to ${channel}`);
  return undefined;
}

/**
 * Why `claims` may not publish to `channel` at wall time `nowMs`, or
 * undefined when it may. The caller has already checked `--client-publish`.
 */
export function publishDenied(claims: TokenClaims | undefined, channel: string, nowMs: number): HeartlineError | undefined {
  if (claims && nowMs >= claims.expMs) return expired();
  if (isPublicChannel(channel)) return undefined;
  if (!claims) return new HeartlineError("unauthorized", `publishing to ${channel} needs a token (Authorization: Bearer <jwt> or token=)`);
  if (!claims.publish.matches(channel)) return new HeartlineError("forbidden", `the token does not allow publishing to ${channel}`);
  return undefined;
}

function expired(): HeartlineError {
  return new HeartlineError("token_expired", "the token has expired; get a new one");
}

/**
 * Why `claims` may not read the event feed `channel` (SPEC §9), or undefined:
 * only a token whose `channels` claim names it (the server's credential is
 * checked before, by the caller) — never because the channel is public.
 */
export function feedDenied(claims: TokenClaims | undefined, channel: string, nowMs: number): HeartlineError | undefined {
  if (!claims) return new HeartlineError("unauthorized", `the event feed ${channel} needs the API key (Authorization: Bearer <key>) or a token naming it`);
  if (nowMs >= claims.expMs) return expired();
  if (!claims.channels.matches(channel)) return new HeartlineError("forbidden", `the token does not name the event feed ${channel}`);
  return undefined;
}
