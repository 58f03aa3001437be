/**
 * Who the client is, in one place: the address the per-address limits count,
 * and whether a request counts as coming from this machine (loopback), which
 * lets it publish without `--api-key`.
 *
 * - The client address is the TCP peer. With `--trust-proxy` it is the last
 *   hop of `X-Forwarded-For` (the address the proxy nearest to Heartline
 *   saw), parsed strictly: a port is dropped (`203.0.113.7:5555`,
 *   `[2001:db8::1]:443`), an IPv4-mapped IPv6 address becomes IPv4, and a
 *   last hop that is not an IP address (`unknown`, `127.1`) is refused with
 *   400: a proxy that appends the peer it saw never sends one.
 * - A request is loopback only when its TCP peer is loopback and it carries
 *   no `X-Forwarded-For`, `Forwarded` or `X-Real-IP` header at all, with or
 *   without `--trust-proxy`: a proxy on the same machine never makes the
 *   world loopback, and a forwarded `127.0.0.1` never does either.
 */
import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import { httpError } from "../errors.js";

/**
 * An address as written by a peer or a proxy, in the one form the limits
 * count: without a port or brackets, IPv4-mapped IPv6 as IPv4. Undefined when
 * it is not an IP address.
 */
export function normalizeAddress(value: string): string | undefined {
  let s = value.trim();
  if (s.startsWith("[")) {
    // [v6] or [v6]:port
    const close = s.indexOf("]");
    if (close < 0) return undefined;
    const rest = s.slice(close + 1);
    if (rest !== "" && !/^:\d{1,5}$/.test(rest)) return undefined;
    s = s.slice(1, close);
    if (isIP(s) !== 6) return undefined;
  } else if (isIP(s) === 0) {
    // v4:port (one colon; a bare v6 address has several)
    const m = /^([0-9.]+):\d{1,5}$/.exec(s);
    if (!m || isIP(m[1]!) !== 4) return undefined;
    s = m[1]!;
  }
  return isIP(s) === 6 ? (mappedIpv4(s) ?? s.toLowerCase()) : s;
}

/** The IPv4 address of an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, `::ffff:102:304`), else undefined. */
function mappedIpv4(v6: string): string | undefined {
  const g = groups(v6);
  for (let i = 0; i < 5; i++) if (g[i] !== 0) return undefined;
  if (g[5] !== 0xffff) return undefined;
  return `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`;
}

/** The eight 16-bit groups of a valid IPv6 address (an embedded IPv4 tail counts as two). */
function groups(v6: string): number[] {
  const parse = (part: string): number[] => {
    if (part === "") return [];
    const out: number[] = [];
    for (const p of part.split(":")) {
      if (p.includes(".")) {
        const [a, b, c, d] = p.split(".").map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else out.push(parseInt(p, 16));
    }
    return out;
  };
  const gap = v6.indexOf("::");
  if (gap < 0) return parse(v6);
  const head = parse(v6.slice(0, gap));
  const tail = parse(v6.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/**
 * Whether an address (as {@link normalizeAddress} gives it) is loopback:
 * 127.0.0.0/8 or ::1, in any spelling. Plain string checks: it runs for
 * every publish without an API key (a BlockList check builds a SocketAddress
 * object each time, a few percent of such a publish's CPU).
 */
export function isLoopbackAddress(address: string): boolean {
  const v = isIP(address);
  if (v === 4) return address.startsWith("127.");
  if (v !== 6) return false;
  if (address === "::1") return true;
  const g = groups(address);
  return g.length === 8 && g[7] === 1 && g.every((x, i) => i === 7 || x === 0);
}

/** The TCP peer's address, normalised; "unknown" once the socket is gone. */
export function peerAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress;
  return (a !== undefined && normalizeAddress(a)) || "unknown";
}

/** The client address (see the module comment); throws 400 bad_request for a last hop that is not an IP address. */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const xff = req.headers["x-forwarded-for"];
    if (xff !== undefined) {
      const value = Array.isArray(xff) ? xff.join(",") : xff;
      const hops = value.split(",");
      const last = hops[hops.length - 1]!.trim();
      const address = normalizeAddress(last);
      if (address === undefined) {
        throw httpError("bad_request", `the last X-Forwarded-For hop ${JSON.stringify(last.slice(0, 64))} is not an IP address`);
      }
      return address;
    }
  }
  return peerAddress(req);
}

/** Whether the request comes from this machine and through no proxy (see the module comment). */
export function isLoopbackRequest(req: IncomingMessage): boolean {
  const h = req.headers;
  if (h["x-forwarded-for"] !== undefined || h.forwarded !== undefined || h["x-real-ip"] !== undefined) return false;
  return isLoopbackAddress(peerAddress(req));
}
