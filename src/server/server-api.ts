/**
 * The server API of SPEC §10 beyond broadcast: disconnect, unsubscribe,
 * revoke, the channel list and a channel's figures counted on every node,
 * history read and removed. Each operation checks its input here once, for
 * the HTTP endpoints (which also need the server's credential, as
 * `POST /api/broadcast` does) and for the library's methods alike; the work
 * on every node is ServerActions' (actions.ts).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { CHANNEL_CHARS, CHANNEL_PREFIX_RE } from "../channel-rules.js";
import type { StoredMessage } from "../broker/broker.js";
import { HeartlineError, httpError } from "../errors.js";
import { assertChannelName } from "../hub/channel-name.js";
import { assertJsonContentType, parseJson, readBody, requestUrl } from "../http/body.js";
import type { Publisher } from "../http/publish.js";
import { sendJson } from "../http/respond.js";
import type { ServerContext } from "../transports/connection.js";
import { MAX_ID_LENGTH, MAX_LISTED_CHANNELS, type ServerActions } from "./actions.js";

/** Messages one history read answers when `limit` is not given, and the most it may ask. */
export const DEFAULT_HISTORY_LIMIT = 100;
export const MAX_HISTORY_LIMIT = 1000;
/** A body of these endpoints holds a few short fields. */
const BODY_BYTES = 8192;
/** A prefix of channel names: the characters of a name, at most as many. */

export interface DisconnectOptions {
  /** Only the connection(s) of this client id (see README); without it, every connection of the user. */
  client?: string;
  /** Whether the client should come back (default true): WS 4002, else 4403 and the client gives up. */
  reconnect?: boolean;
}

export interface ChannelCount {
  channel: string;
  subscribers: number;
}

export interface ChannelList {
  /** By name; at most 1,000. */
  channels: ChannelCount[];
  /** Present (true) when more channels matched than are listed. */
  more?: true;
}

export interface ChannelInfo {
  channel: string;
  epoch: string;
  offset: number;
  subscribers: number;
}

export interface HistoryOptions {
  /** The offset (in the channel's current epoch) after which to read; without it, the latest `limit` messages. */
  since?: number;
  /** At most this many messages, 1–1000 (default 100). */
  limit?: number;
}

/** A history read: the channel's position and the messages, oldest first. */
export interface History<M> {
  channel: string;
  epoch: string;
  /** The channel's latest offset. */
  offset: number;
  /** False when `since` was given and history no longer holds every message after it (or it is past `offset`). */
  recovered: boolean;
  messages: M[];
}

/** A message of a history read, as every transport delivers it. */
export interface HistoryMessage {
  channel: string;
  offset: number;
  data: unknown;
}

export class ServerApi {
  constructor(
    private readonly ctx: ServerContext,
    private readonly actions: ServerActions,
    private readonly publisher: Publisher,
  ) {}

  /** Closes `user`'s connections (or one client's) on every node; how many were closed, on the nodes that answered in time. */
  async disconnect(user: unknown, options: unknown = {}): Promise<{ disconnected: number }> {
    const u = checkId(user, "user");
    if (options === null || typeof options !== "object") throw httpError("bad_request", "the options must be an object");
    const { client, reconnect } = options as Record<string, unknown>;
    const c = client === undefined ? undefined : checkId(client, "client");
    if (reconnect !== undefined && typeof reconnect !== "boolean") throw httpError("bad_request", '"reconnect" must be true or false');
    const t = await this.actions.run({ t: "disconnect", user: u, client: c, reconnect: reconnect !== false });
    return { disconnected: t.n };
  }

  /** Removes `user`'s subscription to `channel` on every node; how many connections had it. */
  async unsubscribe(user: unknown, channel: unknown): Promise<{ unsubscribed: number }> {
    const u = checkId(user, "user");
    const t = await this.actions.run({ t: "unsubscribe", user: u, channel: assertChannelName(channel) });
    return { unsubscribed: t.n };
  }

  /** Refuses `user`'s tokens issued before `before` (unix seconds) on every node; how many connections and held polls were closed. */
  async revoke(user: unknown, before: unknown): Promise<{ closed: number }> {
    const u = checkId(user, "user");
    if (typeof before !== "number" || !Number.isFinite(before) || before < 0) {
      throw httpError("bad_request", '"before" must be a number of seconds since 1970 (the iat before which tokens are refused)');
    }
    const now = Math.ceil(this.ctx.auth.now() / 1000);
    if (before > now) throw httpError("bad_request", `"before" is in the future (${before} > ${now}); tokens cannot be refused before they are issued`);
    const t = await this.actions.run({ t: "revoke", user: u, before });
    return { closed: t.n };
  }

  /** Channels with subscribers on any node, their names starting with `prefix`, by name (at most 1,000). */
  async channels(prefix: unknown = ""): Promise<ChannelList> {
    if (typeof prefix !== "string" || !CHANNEL_PREFIX_RE.test(prefix)) {
      throw httpError("bad_request", `the prefix must be at most 255 of the characters ${CHANNEL_CHARS}`);
    }
    const t = await this.actions.run({ t: "list", prefix });
    const names = [...(t.channels?.keys() ?? [])].sort();
    const channels = names.slice(0, MAX_LISTED_CHANNELS).map((channel) => ({ channel, subscribers: t.channels!.get(channel)! }));
    return t.more === true || names.length > MAX_LISTED_CHANNELS ? { channels, more: true } : { channels };
  }

  /** A channel's position and its WebSocket and SSE subscribers on every node. */
  async channel(name: unknown): Promise<ChannelInfo> {
    const channel = assertChannelName(name);
    const [{ epoch, offset }, t] = await Promise.all([this.ctx.hub.position(channel), this.actions.run({ t: "count", channel })]);
    return { channel, epoch, offset, subscribers: t.n };
  }

  /** Messages of `channel`'s history: after `since` in its current epoch, or the latest ones. */
  async history(channel: unknown, options: unknown = {}): Promise<History<HistoryMessage>> {
    const h = await this.readHistory(channel, options);
    return { ...h, messages: h.messages.map((m) => JSON.parse(m.json) as HistoryMessage) };
  }

  /** Drops `channel`'s history (a new epoch follows); every node's subscribers get a reset at once. */
  async removeHistory(name: unknown): Promise<{ channel: string; epoch: string; offset: number }> {
    const channel = assertChannelName(name);
    const hub = this.ctx.hub;
    try {
      await hub.removeHistory(channel);
    } catch (err) {
      if (err instanceof HeartlineError) throw err;
      throw new HeartlineError("not_available", "this broker cannot remove history", { cause: err });
    }
    const { epoch, offset } = await hub.position(channel);
    await this.actions.run({ t: "reset", channel }, false);
    return { channel, epoch, offset };
  }

  // ── HTTP ───────────────────────────────────────────────────────────────

  /** `POST /api/disconnect` `{"user"[, "client"][, "reconnect"]}`. */
  async handleDisconnect(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
    const body = await this.body(req, "POST /api/disconnect", '{"user": "…"}');
    sendJson(res, 200, await this.disconnect(body.user, { client: body.client, reconnect: body.reconnect }), cors);
  }

  /** `POST /api/unsubscribe` `{"user","channel"}`. */
  async handleUnsubscribe(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
    const body = await this.body(req, "POST /api/unsubscribe", '{"user": "…", "channel": "…"}');
    sendJson(res, 200, await this.unsubscribe(body.user, body.channel), cors);
  }

  /** `POST /api/revoke` `{"user","before"}`. */
  async handleRevoke(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
    const body = await this.body(req, "POST /api/revoke", '{"user": "…", "before": <unix seconds>}');
    sendJson(res, 200, await this.revoke(body.user, body.before), cors);
  }

  /** `GET /api/channels[?prefix=p]`. */
  async handleChannels(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>): Promise<void> {
    this.publisher.assertServer(req);
    sendJson(res, 200, await this.channels(requestUrl(req).searchParams.get("prefix") ?? ""), cors);
  }

  /** `GET /api/channels/<name>`. */
  async handleChannel(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>, path: string): Promise<void> {
    this.publisher.assertServer(req);
    sendJson(res, 200, await this.channel(channelOfPath(path, "/api/channels/")), cors);
  }

  /** `GET /api/history/<channel>[?since=&limit=]` and `DELETE /api/history/<channel>`. */
  async handleHistory(req: IncomingMessage, res: ServerResponse, cors: Record<string, string>, path: string): Promise<void> {
    const method = req.method;
    if (method !== "GET" && method !== "HEAD" && method !== "DELETE") {
      throw httpError("method_not_allowed", "this endpoint accepts GET and DELETE", { Allow: "GET, DELETE" });
    }
    this.publisher.assertServer(req);
    const channel = channelOfPath(path, "/api/history/");
    if (method === "DELETE") {
      sendJson(res, 200, await this.removeHistory(channel), cors);
      return;
    }
    const q = requestUrl(req).searchParams;
    const since = q.get("since");
    const limit = q.get("limit");
    const h = await this.readHistory(channel, {
      since: since === null ? undefined : queryInt(since, "since", Number.MAX_SAFE_INTEGER),
      limit: limit === null ? undefined : queryInt(limit, "limit", MAX_HISTORY_LIMIT),
    });
    // The messages are already JSON: joined, not parsed and encoded again.
    let body = `{"channel":${JSON.stringify(h.channel)},"epoch":${JSON.stringify(h.epoch)},"offset":${h.offset},"recovered":${h.recovered},"messages":[`;
    for (let i = 0; i < h.messages.length; i++) body += (i ? "," : "") + h.messages[i]!.json;
    body += "]}";
    res.writeHead(200, { ...cors, "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), "Cache-Control": "no-store" });
    res.end(body);
  }

  /** The server's credential first, then a small JSON object body. */
  private async body(req: IncomingMessage, endpoint: string, shape: string): Promise<Record<string, unknown>> {
    assertJsonContentType(req, endpoint);
    this.publisher.assertServer(req);
    const body = parseJson(await readBody(req, BODY_BYTES));
    if (body === null || typeof body !== "object" || Array.isArray(body)) throw httpError("bad_request", `the body must be a JSON object ${shape}`);
    return body as Record<string, unknown>;
  }

  /**
   * Reads history: after `since` in the current epoch, else the latest
   * `limit` messages. When history no longer reaches back that far (trimmed
   * or expired), the oldest position it still serves is found by asking the
   * broker (a binary search, at most ~50 reads, usually none), and the read
   * starts there; `recovered` is false then when `since` was given.
   */
  private async readHistory(name: unknown, options: unknown): Promise<History<StoredMessage>> {
    const channel = assertChannelName(name);
    if (options === null || typeof options !== "object") throw httpError("bad_request", "the options must be an object");
    const o = options as Record<string, unknown>;
    const since = o.since === undefined ? undefined : checkInt(o.since, "since", 0, Number.MAX_SAFE_INTEGER);
    const limit = o.limit === undefined ? DEFAULT_HISTORY_LIMIT : checkInt(o.limit, "limit", 1, MAX_HISTORY_LIMIT);
    const hub = this.ctx.hub;
    // The epoch may change between reads (history expired or removed meanwhile): start over, a few times.
    for (let attempt = 0; attempt < 3; attempt++) {
      const head = await hub.history(channel);
      const epoch = head.epoch;
      if (since !== undefined && since > head.offset) {
        return { channel, epoch, offset: head.offset, recovered: false, messages: [] };
      }
      let from = since ?? Math.max(0, head.offset - limit);
      let r = await hub.history(channel, { epoch, offset: from }, limit);
      if (r.epoch !== epoch) continue;
      let recovered = true;
      if (!r.recovered) {
        recovered = since === undefined;
        // `from` is no longer served, the latest offset always is: find the first served one between.
        let lo = from;
        let hi = r.offset;
        let moved = false;
        while (hi - lo > 1) {
          const mid = lo + Math.floor((hi - lo) / 2);
          const probe = await hub.history(channel, { epoch, offset: mid }, 1);
          if (probe.epoch !== epoch) {
            moved = true;
            break;
          }
          if (probe.recovered) hi = mid;
          else lo = mid;
        }
        if (moved) continue;
        from = hi;
        r = await hub.history(channel, { epoch, offset: from }, limit);
        if (r.epoch !== epoch) continue;
      }
      return { channel, epoch, offset: r.offset, recovered, messages: r.messages };
    }
    throw new HeartlineError("broker_unavailable", "the channel's history kept changing while it was read; try again", { headers: { "Retry-After": "1" } });
  }
}

/** A user or client id: a non-empty string of at most 1024 characters. */
function checkId(v: unknown, field: string): string {
  if (typeof v !== "string" || v.length === 0 || v.length > MAX_ID_LENGTH) {
    throw httpError("bad_request", `"${field}" must be a non-empty string of at most ${MAX_ID_LENGTH} characters`);
  }
  return v;
}

function checkInt(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) {
    throw httpError("bad_request", `"${field}" must be a whole number from ${min} to ${max}`);
  }
  return v;
}

/** A query parameter holding a whole number (digits only), at most `max`; the range is checked by {@link checkInt}. */
function queryInt(text: string, field: string, max: number): number {
  if (!/^[0-9]{1,16}$/.test(text)) throw httpError("bad_request", `${field} must be a whole number, at most ${max}`);
  return Number(text);
}

/** The channel named by the rest of `path` after `prefix`, percent-decoded and checked. */
export function channelOfPath(path: string, prefix: string): string {
  let name: string;
  try {
    name = decodeURIComponent(path.slice(prefix.length));
  } catch {
    throw httpError("bad_channel", "the channel name is not valid percent-encoding");
  }
  return assertChannelName(name);
}
