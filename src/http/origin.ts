/**
 * `--allowed-origins`: which web pages may use Heartline from a browser (CORS
 * on HTTP routes, the `Origin` check of `/sse`, `/poll`, `/api/publish` and
 * WebSocket upgrades).
 *
 * With a list (not `*`), an `Origin` is allowed when it is listed, or when it
 * is the request's own origin (`Origin` host and port equal to `Host`'s, the
 * default port of the scheme filled in on both sides) and `Host` names an IP
 * address or `localhost`. A page served under a DNS name is not let in by
 * matching `Host` alone: a DNS-rebinding page (`http://evil.example:8080`
 * whose name now resolves to this server) sends exactly such a pair. So a
 * deployment lists its own public origins.
 */
import { isIP } from "node:net";
import type { IncomingMessage } from "node:http";

/** Shared, never changed: most requests carry no Origin, and a held poll keeps its headers. */
const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;
const ANY_ORIGIN: Record<string, string> = Object.freeze({ "Access-Control-Allow-Origin": "*" });

/** `scheme://host[:port]` with the default port dropped and the host lower-cased; undefined for anything else. */
function normalizeOrigin(origin: string): URL | undefined {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return undefined;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return undefined;
  if (u.username !== "" || u.password !== "" || u.pathname !== "/" || u.search !== "" || u.hash !== "") return undefined;
  return u;
}

export class OriginPolicy {
  private readonly any: boolean;
  private readonly listed: Set<string>;

  constructor(allowedOrigins: readonly string[]) {
    this.any = allowedOrigins.includes("*");
    this.listed = new Set(allowedOrigins.map((o) => normalizeOrigin(o)?.origin ?? o));
  }

  /** Whether the request's Origin (if any) may use Heartline. */
  allows(req: IncomingMessage): boolean {
    const origin = originOf(req);
    if (origin === undefined || this.any) return true;
    if (this.listed.has(origin)) return true;
    const o = normalizeOrigin(origin);
    if (o === undefined) return false;
    // HTTP/2 names the host in `:authority`.
    return this.listed.has(o.origin) || ownOrigin(o, req.headers.host ?? (req.headers[":authority"] as string | undefined));
  }

  /** CORS answer headers for the request. */
  corsHeaders(req: IncomingMessage): Record<string, string> {
    const origin = originOf(req);
    if (origin === undefined) return NO_HEADERS;
    if (this.any) return ANY_ORIGIN;
    if (this.allows(req)) return { "Access-Control-Allow-Origin": origin, Vary: "Origin" };
    return NO_HEADERS;
  }
}

/**
 * Whether `o` is the origin the request was sent to: `Host` under `o`'s scheme
 * names the same host and port, and that host is an IP address or
 * `localhost` (no DNS name, so no DNS rebinding).
 */
function ownOrigin(o: URL, host: string | undefined): boolean {
  if (host === undefined || !/^[A-Za-z0-9.\-:[\]]+$/.test(host)) return false;
  let h: URL;
  try {
    h = new URL(o.protocol + "//" + host);
  } catch {
    return false;
  }
  if (h.host !== o.host) return false;
  const name = h.hostname.startsWith("[") ? h.hostname.slice(1, -1) : h.hostname;
  return name === "localhost" || isIP(name) !== 0;
}

/**
 * The Origin header (several are joined with ", ", as node:http does), read
 * from the raw list: `req.headers` is built on first use, and most requests
 * need no other header.
 */
export function originOf(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders;
  let origin: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 6 && name.toLowerCase() === "origin") origin = origin === undefined ? raw[i + 1] : origin + ", " + raw[i + 1];
  }
  return origin;
}
