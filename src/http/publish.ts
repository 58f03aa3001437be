/**
 * Publishing: `POST /api/publish`, client publish over a WebSocket frame, and
 * the library's `publish()`. All go through `publish()`, which validates the
 * channel and size and resolves only once the broker has stored the message.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { isPublicChannel } from "../auth/permissions.js";
import type { TokenClaims } from "../auth/tokens.js";
import { HeartlineError, httpError } from "../errors.js";
import { assertChannelName, ChannelPatterns } from "../hub/channel-name.js";
import type { ServerContext } from "../transports/connection.js";
import { parseJson, readBody } from "./body.js";
import { InFlight } from "./in-flight.js";

export interface PublishResult {
  channel: string;
  epoch: string;
  offset: number;
}

/** Room for the envelope around `data` in a publish body. */
const ENVELOPE_BYTES = 4096;

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/** Whether `ip` is a loopback address (IPv4 127/8, ::1, or IPv4-mapped loopback). */
export function isLoopback(ip: string): boolean {
  return ip === "::1" || ip.startsWith("127.") || ip.startsWith("::ffff:127.");
}

export class Publisher {
  private readonly clientPatterns: ChannelPatterns;
  private readonly apiKeyDigest: Buffer | undefined;
  /** Messages being stored; drain waits for them to be answered. */
  readonly storing = new InFlight();

  constructor(private readonly ctx: ServerContext) {
    this.clientPatterns = new ChannelPatterns(ctx.config.clientPublish);
    this.apiKeyDigest = ctx.config.apiKey ? digest(ctx.config.apiKey) : undefined;
  }

  /** Validates and stores one message. `data` is any JSON value. */
  async publish(channel: unknown, data: unknown): Promise<PublishResult> {
    const name = assertChannelName(channel);
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
    const stored = this.storing.begin();
    try {
      const m = await this.ctx.hub.publish(name, dataJson);
      this.ctx.stats.publishAccepted++;
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
   * A publish from a subscriber (WebSocket frame): only on `--client-publish`
   * channels and, with tokens on, only where the connection's token `publish`
   * claim allows (or on `public:` channels).
   */
  publishFromClient(channel: string, data: unknown, hasData: boolean, claims?: TokenClaims): Promise<PublishResult> {
    if (this.ctx.draining) return Promise.reject(httpError("shutting_down", "the server is draining; publish to another node"));
    if (!this.clientPatterns.matches(channel)) {
      return Promise.reject(httpError("forbidden", `clients may not publish to ${channel} (see --client-publish)`));
    }
    const denied = this.ctx.auth.publishDenied(claims, channel);
    if (denied) return Promise.reject(denied);
    if (!hasData) return Promise.reject(httpError("bad_request", 'the publish frame needs a "data" field'));
    return this.publish(channel, data);
  }

  /** Whether the request carries the configured API key (compared in constant time). */
  private hasApiKey(req: IncomingMessage): boolean {
    if (!this.apiKeyDigest) return false;
    const h = req.headers.authorization;
    if (typeof h !== "string" || !/^Bearer\s+/i.test(h)) return false;
    return timingSafeEqual(digest(h.replace(/^Bearer\s+/i, "").trim()), this.apiKeyDigest);
  }

  /** `POST /api/publish`. */
  async handleHttp(req: IncomingMessage, ip: string): Promise<PublishResult> {
    const keyOk = this.hasApiKey(req);
    const body = await readBody(req, this.ctx.config.maxMessageBytes + ENVELOPE_BYTES);
    const parsed = parseJson(body);
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw httpError("bad_request", 'the body must be a JSON object {"channel": "…", "data": …}');
    }
    const { channel, data } = parsed as Record<string, unknown>;
    const name = assertChannelName(channel);
    if (!keyOk) await this.authorizeWithoutKey(req, ip, name);
    return this.publish(name, data);
  }

  /**
   * A publish without the API key. Without `--api-key`, loopback is trusted
   * (the backend on this machine). With tokens on, a request carrying a token
   * may publish where `--client-publish` and its `publish` claim both allow;
   * without a token, only to `public:` channels of `--client-publish`.
   */
  private async authorizeWithoutKey(req: IncomingMessage, ip: string, channel: string): Promise<void> {
    const auth = this.ctx.auth;
    if (auth.enabled) {
      if (!this.apiKeyDigest && isLoopback(ip)) return;
      const token = auth.tokenOf(req, new URL(req.url ?? "/", "http://heartline.invalid"));
      if (token !== undefined || (this.clientPatterns.matches(channel) && !isPublicChannel(channel))) {
        const claims = token === undefined ? undefined : await auth.verify(token);
        if (!this.clientPatterns.matches(channel)) throw httpError("forbidden", `clients may not publish to ${channel} (see --client-publish)`);
        const denied = auth.publishDenied(claims, channel);
        if (denied) throw denied;
        return;
      }
    }
    if (this.clientPatterns.matches(channel)) return;
    if (this.apiKeyDigest) {
      const given = req.headers.authorization !== undefined;
      throw httpError("unauthorized", given ? "the API key is not valid" : "publishing needs Authorization: Bearer <api-key>");
    }
    if (!isLoopback(ip)) {
      throw httpError("forbidden", "without --api-key, publishing over HTTP is accepted only from loopback addresses");
    }
  }
}
