/** Subscriber tokens and channel permissions. */
export { Auth, REFRESH_LEAD_MS, wallClockFor, type AuthOptions, type TokenHolder } from "./auth.js";
export { sweepTokens, type ExpiringConnection } from "./expiry.js";
export { isPublicChannel, publishDenied, subscribeDenied, PUBLIC_NAMESPACE } from "./permissions.js";
export { createTokenVerifier, loadPublicKey, tokenOf, TokenVerifier, type TokenAlgorithm, type TokenClaims } from "./tokens.js";
