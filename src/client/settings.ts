/**
 * The client's options read once, checked, and turned into what the client
 * and its connector use: the server's base URL, the platform's constructors,
 * the transport order, and the durations in milliseconds. An invalid value
 * throws a `TypeError` naming the option.
 */
import { realClock, type ClientClock } from "./clock.js";
import { SECONDS, type HeartlineOptions, type Seconds } from "./options.js";
import { pollTransport } from "./poll.js";
import { sseTransport } from "./sse.js";
import type { TransportContext, TransportFactory } from "./transport.js";
import type { EventSourceConstructor, TransportName, WebSocketConstructor } from "./types.js";
import { wsTransport } from "./ws.js";

export const FACTORIES: Record<TransportName, TransportFactory> = { ws: wsTransport, sse: sseTransport, poll: pollTransport };

export interface Settings {
  /** The server's base URL, without a trailing slash. */
  base: string;
  env: Pick<TransportContext, "WebSocket" | "EventSource" | "fetch">;
  /** The transports to try, in order: those asked for that this platform has. */
  order: TransportName[];
  /** `getToken`. */
  tok: (() => string | Promise<string>) | undefined;
  /** The durations of the options, in milliseconds. */
  ms: Record<Seconds, number>;
  /** `clock`. */
  clk: ClientClock;
  /** `clientId`, or a random one. */
  cid: string;
  /** `report`: send diagnostics to the server. */
  rep: boolean;
}

export function readSettings(url: string, options: HeartlineOptions): Settings {
  const g = globalThis as { location?: { href: string }; WebSocket?: WebSocketConstructor; EventSource?: EventSourceConstructor };
  const u = new URL(url, g.location?.href);
  const env: Settings["env"] = {
    WebSocket: options.WebSocket ?? g.WebSocket,
    EventSource: options.EventSource ?? g.EventSource,
    fetch: options.fetch ?? ((input, init) => fetch(input, init)),
  };
  const wanted = options.transports ?? ["ws", "sse", "poll"];
  if (!Array.isArray(wanted) || !wanted.length || wanted.some((t) => !(t in FACTORIES))) {
    throw new TypeError(`Heartline: option transports must list "ws", "sse" or "poll", got ${JSON.stringify(wanted)}`);
  }
  const order = [...new Set(wanted)].filter((t) => (t === "ws" ? env.WebSocket : t === "sse" ? env.EventSource : true));
  if (order.length === 0) {
    throw new TypeError(`Heartline: no WebSocket or EventSource here for transports ${wanted}`);
  }
  const ms = {} as Record<Seconds, number>;
  for (const k of Object.keys(SECONDS) as Seconds[]) {
    const v = options[k] ?? SECONDS[k];
    if (!(v >= 0 && v < Infinity)) throw new TypeError(`Heartline: option ${k} must be seconds ≥ 0, got ${String(v)}`);
    ms[k] = v * 1000;
  }
  // About 100 random bits: ids only have to differ, not to be secret (the server binds an id to its user).
  const cid = options.clientId ?? Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
  if (!/^[\w.~-]{1,64}$/.test(cid)) throw new TypeError(`Heartline: option clientId must be 1–64 of [\\w.~-], got ${JSON.stringify(cid)}`);
  return { base: u.origin + u.pathname.replace(/\/+$/, ""), env, order, tok: options.getToken, ms, clk: options.clock ?? realClock, cid, rep: !!options.report };
}
