/**
 * Publishing: `POST /api/publish`, client publish over a WebSocket frame, and
 * the library's `publish()`. All go through `publish()`, which validates the
 * channel, size and idempotency key and resolves only once the broker has
 * stored the message (or, for a repeated idempotency key, answers the first
 * result without storing anything).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { isPublicChannel } from "../auth/permissions.js";
import type { TokenClaims } from "../auth/tokens.js";
import type { CoreContext } from "../context.js";
import { IDEMPOTENCY_KEY_RE } from "../broker/broker.js";
import { HeartlineError, httpError } from "../errors.js";
import { assertChannelName, ChannelPatterns } from "../hub/channel-name.js";
import { assertJsonContentType, parseJson, readBody, requestUrl } from "./body.js";
import type { Session } from "../hooks/runner.js";
import { clientAddress, isLoopbackRequest } from "./client-address.js";
import { InFlight } from "./in-flight.js";

export interface PublishResult {
  channel: string;
  epoch: string;
  offset: number;
}

export interface PublishOptions {
  /**
   * 1–128 URL-unreserved characters (`A-Z a-z 0-9 - . _ ~`). A publish
   * repeated with the same key on the same channel within `--idempotency-ttl`
   * answers the first result and stores nothing.
   */
  idempotencyKey?: string;
}

/** Validates an `idempotencyKey` as sent (absent is fine); throws 400 `bad_request` naming what is wrong. */
export function checkIdempotencyKey(key: unknown): string | undefined {
  if (key === undefined) return undefined;
  if (typeof key !== "string") throw httpError("bad_request", `idempotencyKey must be a string, not ${key === null ? "null" : typeof key}`);
  if (!IDEMPOTENCY_KEY_RE.test(key)) {
    const what = key.length === 0 ? "is empty" : key.length > 128 ? `has ${key.length} characters` : "holds a character outside A-Z a-z 0-9 - . _ ~";
    throw httpError("bad_request", `idempotencyKey ${what}; it must be 1 to 128 of the characters A-Z a-z 0-9 - . _ ~`);
  }
  return key;
}

/** Room for the envelope around `data` in a publish body. */
const ENVELOPE_BYTES = 4096;

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

export class Publisher {
  private readonly clientPatterns: ChannelPatterns;
  private readonly apiKeyDigest: Buffer | undefined;
  /** Messages being stored; drain waits for them to be answered. */
  readonly storing = new InFlight();

  constructor(private readonly ctx: CoreContext) {
    this.clientPatterns = new ChannelPatterns(ctx.config.clientPublish);
    this.apiKeyDigest = ctx.config.apiKey ? digest(ctx.config.apiKey) : undefined;
  }

  /** Validates and stores one message. `data` is any JSON value. */
  async publish(channel: unknown, data: unknown, idempotencyKey?: unknown): Promise<PublishResult> {
    const name = assertChannelName(channel);
    const key = checkIdempotencyKey(idempotencyKey);
    return this.store(name, this.encode(data), key);
  }

  /** `data` as JSON, checked against `--max-message-bytes`; throws 400 / 413. */
  encode(data: unknown): string {
    if (data === undefined) throw httpError("bad_request", 'the message needs a "data" field (any JSON value)');
    let dataJson: string;
    try {
      dataJson = JSON.stringify(data);
    } catch (err) {
      throw httpError("bad_request", `data cannot be encoded as JSON: ${(err as Error).message}`);
    }
    const size = Buffer.byteLength(dataJson);
    const max = this.ctx.config.maxMessageBytes;
    if (size > max) throw httpError("message_too_large", `data is ${size} bytes as JSON; the limit is ${max} (--max-message-bytes)`);
    return dataJson;
  }

  /** Stores an encoded message on a checked channel; resolves once the broker has it. */
  async store(name: string, dataJson: string, key: string | undefined): Promise<PublishResult> {
    const stored = this.storing.begin();
    try {
      const m = await this.ctx.hub.publish(name, dataJson, key);
      if (!m.repeated) this.ctx.stats.publishAccepted++;
      return { channel: name, epoch: m.epoch, offset: m.offset };
    } catch (err) {
      if (err instanceof HeartlineError) throw err;
      this.ctx.stats.brokerErrors++;
      this.ctx.log.error({ err, channel: name }, "broker failed to store a message");
      throw new HeartlineError("broker_unavailable", "the broker could not store the message; nothing was published", {
        cause: err,
        headers: { "Retry-After": "1" },
      });
    } finally {
      stored();
    }
  }

  /**
   * A publish from a subscriber (WebSocket frame). With a publish hook, the
   * hook decides (and may replace the data). Without one: only on
   * `--client-publish` channels and, with tokens on, only where the
   * connection's token `publish` claim allows (or on `public:` channels).
   */
  publishFromClient(channel: string, data: unknown, hasData: boolean, claims?: TokenClaims, session?: Session): Promise<PublishResult> {
    if (this.ctx.draining) return Promise.reject(httpError("shutting_down", "the server is draining; publish to another node"));
    if (session !== undefined && this.ctx.hooks.has("publish")) {
      if (!hasData) return Promise.reject(httpError("bad_request", 'the publish frame needs a "data" field'));
      return this.ctx.hooks.publish(session, channel, data).then((d) => this.publish(channel, d));
    }
    if (!this.clientPatterns.matches(channel)) {
      return Promise.reject(httpError("forbidden", `clients may not publish to ${channel} (see --client-publish)`));
    }
    const denied = this.ctx.auth.publishDenied(claims, channel);
    if (denied) return Promise.reject(denied);
    if (!hasData) return Promise.reject(httpError("bad_request", 'the publish frame needs a "data" field'));
    return this.publish(channel, data);
  }

  /**
   * Refuses a request that may not act as the server (the server API of
   * SPEC §10): it needs the API key, or, without `--api-key`, to come from
   * this machine through no proxy without a client's credentials.
   */
  assertServer(req: IncomingMessage): void {
    if (!this.actsAsServer(req)) throw this.refusal(req.headers.authorization !== undefined);
  }

  /**
   * The API key; or, without `--api-key`, a request from this machine through
   * no proxy, unless it carries a client's credentials (a cookie, or a token)
   * for the hooks to decide (SPEC §8).
   */
  actsAsServer(req: IncomingMessage): boolean {
    if (this.hasApiKey(req)) return true;
    if (this.apiKeyDigest || !isLoopbackRequest(req)) return false;
    return !(this.clientHooks() && carriesClientCredentials(req));
  }

  /** Whether a client's HTTP publish goes through hooks (connect names it, or publish decides it). */
  private clientHooks(): boolean {
    return this.ctx.hooks.has("connect") || this.ctx.hooks.has("publish");
  }

  /** Whether the request carries the configured API key (compared in constant time). */
  private hasApiKey(req: IncomingMessage): boolean {
    if (!this.apiKeyDigest) return false;
    const h = req.headers.authorization;
    if (typeof h !== "string" || !/^Bearer\s+/i.test(h)) return false;
    return timingSafeEqual(digest(h.replace(/^Bearer\s+/i, "").trim()), this.apiKeyDigest);
  }

  /**
   * `POST /api/publish`. What the headers decide (content type, API key,
   * token, the loopback rule) is checked before a byte of the body is read;
   * only the checks that need the channel wait for it.
   */
  async handleHttp(req: IncomingMessage): Promise<PublishResult> {
    assertJsonContentType(req, "POST /api/publish");
    const grant = await this.authorizeHeaders(req);
    const body = await readBody(req, this.ctx.config.maxMessageBytes + ENVELOPE_BYTES);
    const parsed = parseJson(body);
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw httpError("bad_request", 'the body must be a JSON object {"channel": "…", "data": …}');
    }
    const { channel, data, idempotencyKey } = parsed as Record<string, unknown>;
    const name = assertChannelName(channel);
    const key = checkIdempotencyKey(idempotencyKey);
    if (grant === ANY_CHANNEL) return this.publish(name, data, key);
    if (grant.session !== undefined && this.ctx.hooks.has("publish")) {
      if (data === undefined) throw httpError("bad_request", 'the message needs a "data" field (any JSON value)');
      return this.publish(name, await this.ctx.hooks.publish(grant.session, name, data), key);
    }
    this.authorizeChannel(grant, name);
    return this.publish(name, data, key);
  }

  /**
   * The part of a publish's authorization that the headers decide. The API
   * key, or (without `--api-key`) a request from this machine through no
   * proxy (see client-address.ts), may publish anywhere. Otherwise only
   * `--client-publish` channels remain: with none configured the request is
   * refused here; a token, when sent, is verified here. With a connect or
   * publish hook, the request is a client's: connect names its user (unless
   * a token did), and the publish hook, when there is one, decides instead
   * of `--client-publish`.
   */
  private async authorizeHeaders(req: IncomingMessage): Promise<Grant> {
    if (this.actsAsServer(req)) return ANY_CHANNEL;
    const hooks = this.ctx.hooks;
    const auth = this.ctx.auth;
    const clientHooks = this.clientHooks();
    const url = auth.enabled || clientHooks ? requestUrl(req) : undefined;
    const token = url === undefined ? undefined : auth.tokenOf(req, url);
    const claims = token === undefined ? undefined : await auth.verify(token);
    const authorization = req.headers.authorization !== undefined;
    let session: Session | undefined;
    if (clientHooks) {
      session = hooks.session("http", req, url!, clientAddress(req, this.ctx.config.trustProxy), claims);
      await hooks.connect(session);
      if (hooks.has("publish")) return { token: token !== undefined, claims, authorization, session };
    }
    if (this.clientPatterns.size === 0) {
      if (token !== undefined) throw httpError("forbidden", "clients may not publish on this server (no --client-publish)");
      throw this.refusal(authorization);
    }
    return { token: token !== undefined, claims, authorization, session };
  }

  /**
   * The rest, once the channel is known: a channel of `--client-publish`
   * and, with tokens on, a token whose `publish` claim allows it (none needed
   * in the `public` namespace).
   */
  private authorizeChannel(grant: ClientGrant, channel: string): void {
    const auth = this.ctx.auth;
    const client = this.clientPatterns.matches(channel);
    if (auth.enabled && (grant.token || (client && !isPublicChannel(channel)))) {
      if (!client) throw httpError("forbidden", `clients may not publish to ${channel} (see --client-publish)`);
      const denied = auth.publishDenied(grant.claims, channel);
      if (denied) throw denied;
      return;
    }
    if (client) return;
    throw this.refusal(grant.authorization);
  }

  /** A publish without a credential that allows it: 401 with an API key configured, else 403. */
  private refusal(authorizationGiven: boolean): HeartlineError {
    if (this.apiKeyDigest) {
      return httpError("unauthorized", authorizationGiven ? "the API key is not valid" : "publishing needs Authorization: Bearer <api-key>");
    }
    return httpError(
      "forbidden",
      "without --api-key, publishing over HTTP is accepted only from this machine (a loopback address, through no proxy)",
    );
  }
}

/** Whether a request carries what a client authenticates with: a cookie, or an Authorization header or token= (not the API key, checked before). */
function carriesClientCredentials(req: IncomingMessage): boolean {
  return req.headers.cookie !== undefined || req.headers.authorization !== undefined || /[?&]token=/.test(req.url ?? "");
}

/** A publish that may go to any channel (the API key, or the loopback rule). */
const ANY_CHANNEL = Symbol("any channel");
/** A publish without the API key, left to the channel checks: whether a token was sent, and its verified claims. */
interface ClientGrant {
  token: boolean;
  claims: TokenClaims | undefined;
  /** Whether an Authorization header was sent (for the refusal's message). */
  authorization: boolean;
  /** The client's session, when a connect or publish hook is configured. */
  session: Session | undefined;
}
type Grant = typeof ANY_CHANNEL | ClientGrant;
