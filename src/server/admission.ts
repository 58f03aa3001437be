/**
 * Admission: the one step that turns a `/ws`, `/sse` or `/poll` request into
 * a subscribe request, whichever way it came in (node:http's request and
 * response, the bare socket of a stream or poll taken out of node:http, or a
 * WebSocket upgrade). Every check a subscriber passes is here, in the order
 * the protocol answers them; the transports take the result and check
 * nothing more about the request.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { TokenClaims } from "../auth/tokens.js";
import type { Session } from "../hooks/runner.js";
import type { TransportName } from "../config.js";
import { httpError } from "../errors.js";
import { assertChannelName } from "../hub/channel-name.js";
import { CursorCache, type Position, type SharedCursor } from "../hub/cursor.js";
import { clientAddress } from "../http/client-address.js";
import { queryOf } from "../http/request-path.js";
import type { OriginPolicy } from "../http/origin.js";
import type { Publisher } from "../http/publish.js";
import { carrierOf, isResponse, responseGone } from "../http/h2.js";
import { socketAdmitted } from "../http/socket-limits.js";
import { feedDenied } from "../auth/permissions.js";
import { userOf, type ServerContext } from "../transports/connection.js";

/** An admitted subscriber: what its transport needs, checked. One object per connection or poll. */
export interface SubscribeRequest {
  readonly kind: TransportName;
  /** The channels asked for, without repeats, each a valid name the token allows. */
  readonly channels: string[];
  /** The cursor's positions (shared: read them, never change them). */
  readonly cursor: ReadonlyMap<string, Position> | undefined;
  /** The same cursor with its text. */
  readonly shared: SharedCursor | undefined;
  /** The verified token, if any. */
  readonly claims: TokenClaims | undefined;
  /** The client address (the last trusted hop behind a proxy). */
  readonly ip: string;
  /** Seconds a poll may be held (`timeout=`, capped by --poll-timeout); 0 for streams. */
  readonly hold: number;
  /** What the application's hooks know of the client; undefined when no hook is configured. */
  readonly session: Session | undefined;
  /**
   * The client id: `client=` when given, else (WebSocket and SSE) one the
   * server makes when hooks, presence or the event feed need it.
   */
  readonly client: string | undefined;
  /** Admitted with the server's credential (the event feed's reader): may subscribe to the feed later too. */
  readonly asServer: boolean;
}

export class Admission {
  private readonly cursors = new CursorCache();

  constructor(
    private readonly ctx: ServerContext,
    private readonly origins: OriginPolicy,
    private readonly publisher: Publisher,
  ) {}

  /**
   * Admits a subscriber, or throws the SPEC error that refuses it. In order:
   * Origin (for a WebSocket after the two checks below, as its upgrade
   * always answered), transport offered (`--transports`), not draining,
   * parameters (`channel=`, the cursor from `cursor=`, `lastEventId=` or for
   * SSE `Last-Event-ID`, a poll's `timeout=`), token, the application's
   * connect hook and, for channels neither public nor allowed by the token
   * nor granted by connect, its subscribe hook; not draining again (the
   * token check and the hooks may have waited), then the connection
   * slot (per IP and in total) for a stream or WebSocket; a poll takes its
   * slot only when it is held (`PollTransport.serve`).
   *
   * `out` is node:http's response (the front door checked the Origin then,
   * as it does for every route) or the socket. Undefined when the client of
   * a poll or WebSocket left while its token was checked: nothing to answer.
   */
  async admit(kind: TransportName, req: IncomingMessage, out: ServerResponse | Duplex): Promise<SubscribeRequest | undefined> {
    const ctx = this.ctx;
    const config = ctx.config;
    if (kind !== "ws" && !isResponse(out)) this.assertOrigin(req);
    this.offered(kind);
    this.notDraining();
    if (kind === "ws") this.assertOrigin(req);
    const url = queryOf(req.url);
    const params = url.searchParams;
    const channels = [...new Set(params.getAll("channel"))];
    if (kind !== "ws" && channels.length === 0) throw httpError("bad_request", "give at least one channel= parameter");
    const max = config.maxChannelsPerConnection;
    if (channels.length > max) throw httpError("too_many_channels", `at most ${max} channels per connection (--max-channels-per-connection)`);
    for (const c of channels) assertChannelName(c);
    const raw = (kind === "sse" ? headerCursor(req) : undefined) ?? params.get("lastEventId") ?? params.get("cursor") ?? undefined;
    const shared = raw === undefined || raw === "" ? undefined : this.cursors.decode(raw);
    const hold = kind === "poll" ? pollHold(params.get("timeout"), config.pollTimeout) : 0;
    const given = clientParam(params.get("client"));
    const auth = ctx.auth;
    const ip = clientAddress(req, config.trustProxy);
    const hooks = ctx.hooks;
    let claims: TokenClaims | undefined;
    let session: Session | undefined;
    const feed = config.eventsChannel;
    // The event feed is the server's: the API key (or this machine without one), or a token naming it.
    const asServer = feed !== undefined && channels.includes(feed) && this.publisher.actsAsServer(req);
    if (asServer) {
      // The backend: no token to verify, no hook to ask; every channel is its to read.
    } else if (!hooks.enabled) {
      // A poll without tokens goes on without waiting.
      claims = kind === "poll" && !auth.enabled ? undefined : await auth.authorizeSubscribe(req, url, channels);
    } else {
      // The token, if any, is verified here; the channels are the hooks' to decide.
      claims = await auth.authorizeSubscribe(req, url, []);
      // A client over its limits is refused before it costs the application a call (the slot is taken below).
      if (kind !== "poll") ctx.registry.assertRoom(ip);
      session = hooks.session(kind, req, url, ip, claims, given);
      await hooks.connect(session);
      for (const c of session.granted ?? []) if (!channels.includes(c)) channels.push(c);
      if (channels.length > max) throw httpError("too_many_channels", `at most ${max} channels per connection (--max-channels-per-connection)`);
      const asked = channels.map((c) => hooks.checkChannel(session!, claims, c)).filter((p) => p !== undefined);
      if (asked.length > 0) await Promise.all(asked);
    }
    if (feed !== undefined && !asServer && channels.includes(feed)) {
      const denied = feedDenied(claims, feed, auth.now());
      if (denied) throw denied;
    }
    // The client may have gone while its token was checked (an SSE stream notices when it opens).
    if (kind !== "sse" && (isResponse(out) ? responseGone(out) : out.destroyed)) return undefined;
    this.notDraining();
    if (kind !== "poll") {
      ctx.registry.admit(kind, ip, userOf(claims, session));
      // The socket the subscriber holds: the upgraded (or taken out) one, else the request's (or its HTTP/2 stream).
      socketAdmitted(isResponse(out) ? carrierOf(req) : out);
    }
    const client = given ?? session?.client ?? (kind !== "poll" && (ctx.hub.presence.enabled || ctx.hub.occupancy !== undefined) ? randomUUID() : undefined);
    return { kind, channels, cursor: shared?.positions, shared, claims, ip, hold, session, client, asServer };
  }

  /** The decoded cursor of `text`, as admission decodes a request's. Throws `bad_cursor`. */
  cursor(text: string): SharedCursor {
    return this.cursors.decode(text);
  }

  /** CORS answer headers for the request (see OriginPolicy). */
  corsHeaders(req: IncomingMessage): Record<string, string> {
    return this.origins.corsHeaders(req);
  }

  /** Whether the request's Origin may use Heartline (see OriginPolicy). */
  allows(req: IncomingMessage): boolean {
    return this.origins.allows(req);
  }

  /** Refuses (and counts) a request whose Origin is not allowed. */
  assertOrigin(req: IncomingMessage): void {
    if (this.origins.allows(req)) return;
    this.ctx.stats.rejected.origin_not_allowed++;
    throw httpError("origin_not_allowed", "this Origin is not in --allowed-origins");
  }

  /** Refuses a transport left out of `--transports`. */
  offered(t: TransportName): void {
    if (!this.ctx.config.transports.includes(t)) throw httpError("transport_disabled", `the ${t} transport is disabled on this server (--transports)`);
  }

  private notDraining(): void {
    if (this.ctx.draining) throw httpError("shutting_down", "the server is draining; reconnect to another node", { "Retry-After": "1" });
  }
}

/** A client id: 1–64 URL-unreserved characters. */
export const CLIENT_ID_RE = /^[A-Za-z0-9._~-]{1,64}$/;

/** The `client=` parameter, checked; undefined when absent. */
function clientParam(c: string | null): string | undefined {
  if (c === null) return undefined;
  if (!CLIENT_ID_RE.test(c)) throw httpError("bad_request", "client must be 1–64 characters of A-Z a-z 0-9 . _ ~ -");
  return c;
}

/** A poll's `timeout=` in seconds, capped by `--poll-timeout` (`max`, also the default). */
function pollHold(t: string | null, max: number): number {
  if (t === null) return max;
  const n = Number(t);
  if (t.trim() === "" || !Number.isFinite(n) || n < 0) throw httpError("bad_request", "timeout must be a number of seconds ≥ 0");
  return Math.min(n, max);
}

function headerCursor(req: IncomingMessage): string | undefined {
  const h = req.headers["last-event-id"];
  return typeof h === "string" && h !== "" ? h : undefined;
}
