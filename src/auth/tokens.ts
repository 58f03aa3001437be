/**
 * Subscriber tokens (SPEC §5): JWTs verified with jose. The algorithm is
 * pinned to the key, never read from the token alone:
 *
 * - `--jwt-secret` verifies HS256 only;
 * - `--jwt-public-key` verifies RS256 (an RSA key of 2048 bits or more) or
 *   ES256 (an EC P-256 key), whichever the key file holds.
 *
 * A token's `alg` header only selects among the keys configured, so `none`,
 * an HS256 token "signed" with the public key's PEM text, or an ES256 token
 * against an RSA key are all refused. Keys are read and checked once, at
 * start, and a bad key file is a {@link ConfigError} naming the option.
 */
import { createPublicKey, createSecretKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { errors as joseErrors, jwtVerify, type JWTHeaderParameters } from "jose";
import { CHANNEL_PATTERN_RE } from "../channel-rules.js";
import { ConfigError, type HeartlineConfig } from "../config.js";
import { HeartlineError } from "../errors.js";
import { ChannelPatterns } from "../hub/channel-name.js";

/** What a verified token allows; immutable once made. */
export interface TokenClaims {
  /** The subject: who the token was issued to. A refresh must keep it. */
  readonly sub: string;
  /** Expiry, in wall-clock milliseconds since the epoch (`exp` × 1000). */
  readonly expMs: number;
  /** When the token was issued (`iat`, unix seconds), when it says; revocations compare it. */
  readonly iat?: number | undefined;
  /** Patterns of the channels the token may subscribe to (`channels`). */
  readonly channels: ChannelPatterns;
  /** Patterns of the channels the token may publish to (`publish`), within `--client-publish`. */
  readonly publish: ChannelPatterns;
}

export type TokenAlgorithm = "HS256" | "RS256" | "ES256";

/** Longer tokens are refused before any parsing. */
export const MAX_TOKEN_LENGTH = 8192;
/** Most patterns in one `channels` or `publish` claim. */
const MAX_PATTERNS = 1000;
const MIN_RSA_BITS = 2048;
/** HS256 secrets shorter than this are accepted, with a warning: they can be brute-forced offline. */
export const MIN_SECRET_BYTES = 32;

/** Verifies tokens against the keys of `--jwt-secret` and `--jwt-public-key`. */
export class TokenVerifier {
  private readonly keys = new Map<TokenAlgorithm, KeyObject>();
  /** The algorithms accepted, one per configured key. */
  readonly algorithms: TokenAlgorithm[];
  /** Whether the HS256 secret is shorter than {@link MIN_SECRET_BYTES}. */
  readonly weakSecret: boolean;

  constructor(keys: { secret?: string | undefined; publicKeyPath?: string | undefined }) {
    if (keys.secret !== undefined) {
      const bytes = Buffer.from(keys.secret, "utf8");
      this.keys.set("HS256", createSecretKey(bytes));
      this.weakSecret = bytes.length < MIN_SECRET_BYTES;
    } else {
      this.weakSecret = false;
    }
    if (keys.publicKeyPath !== undefined) {
      const { alg, key } = loadPublicKey(keys.publicKeyPath);
      this.keys.set(alg, key);
    }
    this.algorithms = [...this.keys.keys()];
  }

  /**
   * Verifies `token` at wall-clock time `nowMs` and returns its claims.
   * Throws `token_expired` (401) when `exp` has passed and the signature is
   * good, and `unauthorized` (401) for anything else wrong with it.
   */
  async verify(token: string, nowMs: number): Promise<TokenClaims> {
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw invalid("the token is empty or longer than " + MAX_TOKEN_LENGTH + " characters");
    let payload: Record<string, unknown>;
    try {
      const result = await jwtVerify(token, (header: JWTHeaderParameters) => this.keyFor(header), {
        algorithms: this.algorithms,
        currentDate: new Date(nowMs),
        requiredClaims: ["sub", "exp"],
      });
      payload = result.payload as Record<string, unknown>;
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw new HeartlineError("token_expired", "the token has expired; get a new one", { cause: err });
      if (err instanceof HeartlineError) throw err;
      const reason = err instanceof joseErrors.JOSEError ? err.message : "it could not be verified";
      throw invalid(`the token is not valid: ${reason}`, err);
    }
    const { sub, exp, iat } = payload;
    if (typeof sub !== "string" || sub.length === 0 || sub.length > 1024) throw invalid('the token needs a "sub" claim: a non-empty string');
    if (typeof exp !== "number" || !Number.isFinite(exp)) throw invalid('the token needs an "exp" claim: a number of seconds');
    if (iat !== undefined && (typeof iat !== "number" || !Number.isFinite(iat))) throw invalid('the token\'s "iat" claim must be a number of seconds');
    return {
      sub,
      expMs: exp * 1000,
      iat: iat as number | undefined,
      channels: patternsClaim(payload, "channels"),
      publish: patternsClaim(payload, "publish"),
    };
  }

  /** The key for the token's `alg`; jose has already refused any `alg` not in {@link algorithms}. */
  private keyFor(header: JWTHeaderParameters): KeyObject {
    const key = this.keys.get(header.alg as TokenAlgorithm);
    if (!key) throw invalid(`the token's algorithm ${JSON.stringify(header.alg)?.slice(0, 20)} is not accepted`);
    return key;
  }
}

/** The verifier for `config`, or undefined when no `--jwt-*` option is set (every channel public). Throws {@link ConfigError}. */
export function createTokenVerifier(config: Pick<HeartlineConfig, "jwtSecret" | "jwtPublicKey">): TokenVerifier | undefined {
  if (config.jwtSecret === undefined && config.jwtPublicKey === undefined) return undefined;
  return new TokenVerifier({ secret: config.jwtSecret, publicKeyPath: config.jwtPublicKey });
}

/** Reads a PEM public key and pins its algorithm: RSA → RS256, EC P-256 → ES256. */
export function loadPublicKey(path: string): { alg: TokenAlgorithm; key: KeyObject } {
  const fail = (why: string) => new ConfigError(`invalid value for --jwt-public-key: ${JSON.stringify(path)} ${why}`);
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (err) {
    throw fail(`cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); expected the path of a PEM public key`);
  }
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw fail("holds a private key; give the public key only (e.g. openssl pkey -in key.pem -pubout)");
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: "pem" });
  } catch {
    throw fail("is not a PEM public key; expected -----BEGIN PUBLIC KEY----- (RSA for RS256, EC P-256 for ES256)");
  }
  if (key.asymmetricKeyType === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) throw fail(`holds a ${bits}-bit RSA key; RS256 needs at least ${MIN_RSA_BITS} bits`);
    return { alg: "RS256", key };
  }
  if (key.asymmetricKeyType === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === "prime256v1") return { alg: "ES256", key };
    throw fail(`holds an EC key on curve ${curve ?? "unknown"}; ES256 needs P-256 (prime256v1)`);
  }
  throw fail(`holds a ${key.asymmetricKeyType ?? "unknown"} key; expected an RSA key (RS256) or an EC P-256 key (ES256)`);
}

/**
 * The token of a request: `Authorization: Bearer <jwt>`, else the `token`
 * query parameter (EventSource and browsers' WebSocket cannot set headers).
 */
export function tokenOf(req: IncomingMessage, url: Pick<URL, "searchParams">): string | undefined {
  const h = req.headers.authorization;
  if (typeof h === "string") {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(h);
    if (m) return m[1];
  }
  const q = url.searchParams.get("token");
  return q === null || q === "" ? undefined : q;
}

function patternsClaim(payload: Record<string, unknown>, name: "channels" | "publish"): ChannelPatterns {
  const v = payload[name];
  if (v === undefined) return EMPTY;
  if (!Array.isArray(v) || v.length > MAX_PATTERNS || !v.every((p) => typeof p === "string" && CHANNEL_PATTERN_RE.test(p))) {
    throw invalid(`the token's "${name}" claim must be an array of at most ${MAX_PATTERNS} channel patterns such as "chat:*"`);
  }
  return new ChannelPatterns(v as string[]);
}

const EMPTY = new ChannelPatterns([]);

function invalid(message: string, cause?: unknown): HeartlineError {
  return new HeartlineError("unauthorized", message, cause === undefined ? undefined : { cause });
}
