/**
 * Calls the application's hooks, whichever form they have: one timeout, one
 * check of what they answer, one way to fail (closed, as `503
 * hook_unavailable`, logged with the hook and the cause), counted in
 * `/metrics`. Called from the admission step and from client requests
 * (frames, `/api/rpc`, a client's `/api/publish`), never from fan-out.
 *
 * A `Session` is what the hooks know of one client: made at admission for a
 * WebSocket or SSE connection and kept with it; made per request for a poll
 * or a plain request, whose connect and subscribe answers are reused for a
 * few seconds (see {@link STATELESS_REUSE_MS}).
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { Counter, Histogram } from "prom-client";
import { Agent } from "undici";
import type { Auth } from "../auth/auth.js";
import { isPublicChannel } from "../auth/permissions.js";
import type { TokenClaims } from "../auth/tokens.js";
import type { HeartlineConfig } from "../config.js";
import { HookError, httpError, type HeartlineError } from "../errors.js";
import { isChannelName } from "../hub/channel-name.js";
import type { Logger, LogLimiter } from "../log.js";
import type { Stats } from "../stats.js";
import { HookFailure, hookUrls, httpHooks } from "./http.js";
import { MAX_USER_LENGTH, RPC_METHOD_RE, type HookContext, type HookName, type Hooks, type HookTransport } from "./types.js";

/** How long a poll's or plain request's connect and subscribe answers are reused for the same credentials. */
export const STATELESS_REUSE_MS = 5000;
/** Reused answers kept at most; the oldest go first. */
const REUSE_MAX = 10_000;
/** Headers that differ on every request by design: given to hooks, not part of the reuse key. */
const PER_REQUEST_HEADERS = new Set(["x-request-id"]);
/** Query parameters that change from one request of a client to the next, or carry the token: not part of the reuse key, not given to hooks. */
const VOLATILE_PARAMS = new Set(["cursor", "lastEventId", "timeout", "token", "channel"]);

/** What the hooks know of one client. */
export interface Session {
  readonly transport: HookTransport;
  readonly ip: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The cookies of `headers.cookie`, parsed once for every hook the client meets. */
  readonly cookies: Readonly<Record<string, string>>;
  readonly query: Readonly<Record<string, string>>;
  readonly client: string | undefined;
  user: string | undefined;
  info: unknown;
  /** What `subscribe` answered as `info`, by channel (the member's info in presence); undefined until one does. */
  channelInfo: Map<string, unknown> | undefined;
  /** Channels `connect` subscribed the client to: allowed without asking `subscribe`. */
  granted: readonly string[] | undefined;
  /** `connect`'s `expireAt` in wall-clock ms; 0 = none. */
  expireAt: number;
  /** For a poll or plain request: the key its reused answers are kept under. */
  readonly reuseKey: string | undefined;
}

export interface HookDeps {
  config: HeartlineConfig;
  auth: Auth;
  log: Logger;
  logs: LogLimiter;
  stats: Stats;
  /** Coarse milliseconds (the server's ticker time), for reused answers. */
  now: () => number;
}

type Outcome = "ok" | "refused" | "unavailable";

export class HookRunner {
  /** Whether any hook is configured: without one, nothing here is called and no session is made. */
  readonly enabled: boolean;
  readonly requests: Counter<"hook" | "outcome">;
  readonly reuseHits: Counter<"hook">;
  readonly duration: Histogram<"hook">;
  private readonly hooks: Hooks;
  private readonly timeoutMs: number;
  private readonly reuse = new Map<string, { until: number; value: unknown }>();
  private readonly agent: Agent | undefined;

  constructor(
    private readonly deps: HookDeps,
    library: Hooks | undefined,
  ) {
    const config = deps.config;
    const maxAnswer = Math.max(1 << 20, config.maxMessageBytes * 2 + 4096);
    // A hook given to the library wins over the same hook's URL.
    const urls = hookUrls(config);
    // Connections to the backend stay open between calls (keep-alive), a bounded number per origin.
    this.agent = Object.keys(urls).length > 0 ? new Agent({ keepAliveTimeout: 30_000, connections: 64 }) : undefined;
    this.hooks = { ...(this.agent ? httpHooks(urls, maxAnswer, this.agent) : {}), ...definedOnly(library) };
    this.enabled = Object.keys(this.hooks).length > 0;
    this.timeoutMs = config.proxyTimeout * 1000;
    this.requests = new Counter({ name: "heartline_hook_requests_total", help: "Calls of the application's hooks, by hook and outcome (ok, refused, unavailable).", labelNames: ["hook", "outcome"], registers: [] });
    this.reuseHits = new Counter({ name: "heartline_hook_reused_total", help: "Connect and subscribe answers reused for a poll or plain request instead of calling the hook.", labelNames: ["hook"], registers: [] });
    this.duration = new Histogram({
      name: "heartline_hook_duration_seconds",
      help: "Time the application's hooks took to answer, by hook.",
      labelNames: ["hook"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [],
    });
  }

  has(name: HookName): boolean {
    return this.hooks[name] !== undefined;
  }

  /** A client's session, before any hook is called, with the client id it gave (a WebSocket or SSE connection gets one if not). */
  session(transport: HookTransport, req: IncomingMessage, url: Pick<URL, "searchParams">, ip: string, claims: TokenClaims | undefined, client?: string): Session {
    const headers: Record<string, string> = {};
    for (const name of this.deps.config.proxyHeaders) {
      const v = req.headers[name];
      if (v !== undefined) headers[name] = Array.isArray(v) ? v.join(", ") : v;
    }
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) if (!VOLATILE_PARAMS.has(k) && !(k in query)) query[k] = v;
    const persistent = transport === "ws" || transport === "sse";
    return {
      transport,
      ip,
      headers,
      cookies: cookiesOf(headers.cookie),
      query,
      client: client ?? (persistent ? randomUUID() : undefined),
      user: claims?.sub,
      info: undefined,
      channelInfo: undefined,
      granted: undefined,
      expireAt: 0,
      reuseKey: persistent ? undefined : reuseKey(transport, ip, headers, query, claims?.sub),
    };
  }

  /**
   * Runs `connect` for a session: always for a WebSocket or SSE connection,
   * for other requests only when no token has named the user. Its answer
   * names the user, keeps `info`, grants `channels`, sets `expireAt`.
   */
  async connect(s: Session): Promise<void> {
    if (!this.has("connect")) return;
    if (s.reuseKey !== undefined && s.user !== undefined) return;
    const answer = await this.reused("connect", s.reuseKey, () => this.call("connect", context(s), checkConnect));
    const r = answer as { user: string; info?: unknown; channels?: string[]; expireAt?: number };
    s.user = r.user;
    s.info = r.info;
    s.granted = r.channels;
    s.expireAt = r.expireAt === undefined ? 0 : r.expireAt * 1000;
    if (s.expireAt !== 0 && s.expireAt <= this.deps.auth.now()) throw httpError("token_expired", "the session's expireAt has passed");
  }

  /**
   * Whether the session may subscribe to `channel`: `public:` channels, a
   * token that allows it, and the channels `connect` granted need no hook;
   * otherwise the subscribe hook decides, and without one the token rules
   * of SPEC §5 do (everything is public when tokens are off). Undefined
   * when decided at once; a throw refuses.
   */
  checkChannel(s: Session, claims: TokenClaims | undefined, channel: string): Promise<void> | undefined {
    const auth = this.deps.auth;
    if (isPublicChannel(channel)) return undefined;
    if (auth.enabled && claims && auth.subscribeDenied(claims, channel) === undefined) return undefined;
    if (s.granted?.includes(channel)) return undefined;
    if (this.has("subscribe")) {
      const key = s.reuseKey === undefined ? undefined : s.reuseKey + "\n" + channel;
      return this.reused("subscribe", key, () => this.call("subscribe", { ...context(s), channel }, checkSubscribe)).then((r) => {
        const info = (r as { info?: unknown }).info;
        if (info !== undefined) (s.channelInfo ??= new Map()).set(channel, info);
      });
    }
    const denied = auth.subscribeDenied(claims, channel);
    if (denied) {
      this.deps.stats.countRejected(denied.code);
      throw denied;
    }
    return undefined;
  }

  /** The publish hook's decision on a client's publish: the data to store (as sent, or replaced). */
  async publish(s: Session, channel: string, data: unknown): Promise<unknown> {
    const r = (await this.call("publish", { ...context(s), channel, data }, checkPublish)) as { data?: unknown } | undefined;
    return r !== undefined && r !== null && "data" in r ? r.data : data;
  }

  /** The answer to an RPC on a server without an rpc hook, or undefined when there is one. */
  rpcUnavailable(): HeartlineError | undefined {
    return this.has("rpc") ? undefined : httpError("rpc_not_configured", "this server answers no RPC (no rpc hook, no --proxy-rpc-url)");
  }

  /** Calls the rpc hook; resolves with the result as JSON text. */
  async rpc(s: Session, method: unknown, params: unknown): Promise<string> {
    const unavailable = this.rpcUnavailable();
    if (unavailable) throw unavailable;
    assertMethod(method);
    return (await this.call("rpc", { ...context(s), method, params }, checkRpc)) as string;
  }

  /** Tells the disconnect hook, off the caller's path; what it answers or throws is only logged. */
  disconnected(s: Session, reason: string): void {
    if (!this.has("disconnect")) return;
    this.call("disconnect", { ...context(s), reason }, noCheck).catch(noop);
  }

  private async reused(hook: HookName, key: string | undefined, run: () => Promise<unknown>): Promise<unknown> {
    if (key === undefined) return run();
    const now = this.deps.now();
    const k = hook + "\n" + key;
    const hit = this.reuse.get(k);
    if (hit !== undefined && hit.until > now) {
      this.reuseHits.inc({ hook });
      return hit.value;
    }
    const value = await run();
    if (this.reuse.size >= REUSE_MAX) this.reuse.delete(this.reuse.keys().next().value!);
    const exp = (value as { expireAt?: number } | undefined)?.expireAt;
    const until = Math.min(now + STATELESS_REUSE_MS, exp === undefined ? Infinity : exp * 1000 - (this.deps.auth.now() - now));
    this.reuse.set(k, { until, value });
    return value;
  }

  /** Closes the connections to the hook backend (server close). */
  async close(): Promise<void> {
    await this.agent?.destroy().catch(noop);
  }

  /** Drops reused answers that have run out (the server's ticker). */
  sweep(now: number): void {
    for (const [k, v] of this.reuse) if (v.until <= now) this.reuse.delete(k);
  }

  private async call(hook: HookName, ctx: HookContext & Record<string, unknown>, check: (v: unknown, config: HeartlineConfig) => unknown): Promise<unknown> {
    const fn = this.hooks[hook] as (c: HookContext) => unknown;
    const started = performance.now();
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        abort.abort();
        reject(new HookFailure(`no answer within ${this.timeoutMs / 1000} s (--proxy-timeout)`));
      }, this.timeoutMs);
    });
    let outcome: Outcome = "unavailable";
    try {
      const value = await Promise.race([Promise.resolve().then(() => fn({ ...ctx, signal: abort.signal } as HookContext)), timeout]);
      const checked = check(value, this.deps.config);
      outcome = "ok";
      return checked;
    } catch (err) {
      if (err instanceof HookError) {
        outcome = "refused";
        throw err;
      }
      const cause = err instanceof HookFailure ? err.message : err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      this.deps.logs.write(`hook_${hook}_failed`, "warn", { hook, cause, transport: ctx.transport }, `the ${hook} hook failed`);
      // The cause is the server's to read (logged above), not the client's.
      throw httpError("hook_unavailable", `the application's ${hook} hook is unavailable; nothing was let through`, { "Retry-After": "1" });
    } finally {
      clearTimeout(timer);
      this.requests.inc({ hook, outcome });
      this.duration.observe({ hook }, (performance.now() - started) / 1000);
    }
  }
}

function reuseKey(transport: HookTransport, ip: string, headers: Record<string, string>, query: Record<string, string>, sub: string | undefined): string {
  const kept: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (!PER_REQUEST_HEADERS.has(k)) kept[k] = v;
  return JSON.stringify([transport, ip, kept, query, sub ?? null]);
}

function context(s: Session): HookContext & Record<string, unknown> {
  return { transport: s.transport, ip: s.ip, headers: s.headers, cookies: s.cookies, query: s.query, user: s.user, info: s.info, client: s.client };
}

/** The `name=value` pairs of a Cookie header; a malformed pair is skipped. */
export function cookiesOf(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  if (!header) return out;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      value = decodeURIComponent(value);
    } catch {
      // Kept as sent.
    }
    if (name !== "" && !(name in out)) out[name] = value;
  }
  return out;
}

function assertMethod(method: unknown): asserts method is string {
  if (typeof method !== "string" || !RPC_METHOD_RE.test(method)) {
    throw httpError("bad_request", 'an RPC "method" must be 1 to 100 letters, digits or _ . : / -');
  }
}

function fail(what: string): never {
  throw new HookFailure(what);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function checkConnect(v: unknown, config: HeartlineConfig): unknown {
  if (!isObject(v)) fail('connect must answer an object {"user": …}');
  if (typeof v.user !== "string" || v.user.length > MAX_USER_LENGTH) fail(`connect's user must be a string of at most ${MAX_USER_LENGTH} characters`);
  if (v.channels !== undefined) {
    if (!Array.isArray(v.channels) || v.channels.length > config.maxChannelsPerConnection || !v.channels.every(isChannelName)) {
      fail(`connect's channels must be at most ${config.maxChannelsPerConnection} valid channel names`);
    }
  }
  if (v.expireAt !== undefined && (typeof v.expireAt !== "number" || !Number.isFinite(v.expireAt))) fail("connect's expireAt must be unix seconds");
  return { user: v.user, info: v.info, channels: v.channels === undefined ? undefined : [...new Set(v.channels as string[])], expireAt: v.expireAt };
}

function checkSubscribe(v: unknown): unknown {
  if (v !== undefined && v !== null && !isObject(v)) fail("subscribe must answer an object or nothing");
  return v ?? {};
}

function checkPublish(v: unknown): unknown {
  if (v !== undefined && v !== null && !isObject(v)) fail("publish must answer an object or nothing");
  return v;
}

function checkRpc(v: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(v === undefined ? null : v);
  } catch (err) {
    fail(`the rpc result cannot be encoded as JSON: ${(err as Error).message}`);
  }
  return json ?? "null";
}

function noCheck(): undefined {
  return undefined;
}

function noop(): void {}

function definedOnly(hooks: Hooks | undefined): Hooks {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(hooks ?? {})) {
    if (v === undefined) continue;
    if (typeof v !== "function") throw new TypeError(`hooks.${k} must be a function`);
    out[k] = v;
  }
  return out as Hooks;
}

