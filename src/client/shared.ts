/**
 * Cross-tab sharing (browsers): the tabs of an origin hold one server
 * connection between them. A SharedWorker runs this same module and, in it, one
 * ordinary client (`shared: false`) that serves every tab over a MessagePort.
 * A tab's client keeps its own positions and checks every message against
 * them, as it does on a connection of its own.
 *
 * Where SharedWorker is missing (or cannot start, e.g. the bundle comes from
 * another origin than the page), each tab connects on its own.
 *
 * Messages are arrays `[operation, ...arguments]` (plain data: they cross
 * postMessage). Tab → worker: init, sub, unsub, pub, tok, wake, bye. Worker →
 * tab: the {@link LinkHooks} (state, message, reset, error) plus ack and tok.
 */
import { HeartlineError } from "./errors.js";
import { Heartline } from "./heartline.js";
import { setLinker, type Link, type LinkHooks } from "./link.js";
import type { HeartlineOptions } from "./options.js";
import type { Subscription } from "./subscription.js";
import type { Position, PublishResult } from "./types.js";

type Msg = [op: string, ...args: unknown[]];
type Port = { postMessage(m: Msg): void };
type Handlers = Record<string, (...args: never[]) => void>;

/** Calls the handler named by `m[0]` with the rest of `m`; unknown names are ignored. */
function dispatch(handlers: Handlers, [op, ...args]: Msg): void {
  (handlers[op] as ((...a: unknown[]) => void) | undefined)?.(...args);
}

/**
 * The worker's side: one client shared by every port. Returns the handler of
 * what the ports send. The client closes when the last port says bye.
 */
export function createHub(): (port: Port, m: Msg) => void {
  let hl: Heartline | undefined;
  const ports = new Map<Port, Map<string, Subscription>>();
  const asks: Array<(token: string) => void> = [];
  const all = (m: Msg): void => ports.forEach((_, p) => p.postMessage(m));
  const state = (): Msg => ["state", hl!.state, hl!.transport];
  return (port, m) => {
    const subs = ports.get(port) ?? new Map<string, Subscription>();
    const handlers = {
      init(url: string, options: HeartlineOptions, tokens: boolean) {
        ports.set(port, subs);
        // Tokens come from the tabs: every tab is asked, the first answer counts.
        const getToken = tokens ? (): Promise<string> => new Promise((r) => all(["tok", asks.push(r) - 1])) : undefined;
        hl ??= new Heartline(url, { ...options, getToken, shared: false })
          .on("state", () => all(state()))
          .on("transport", () => all(state()))
          .on("error", (e) => all(["error", e.code, e.message]));
        port.postMessage(state());
      },
      sub(c: string, since?: Position) {
        subs.get(c)?.unsubscribe();
        const sub = hl!.subscribe(c, (msg) => port.postMessage(["message", msg]), since);
        sub.on("reset", (r) => port.postMessage(["reset", r])).on("error", (e) => port.postMessage(["error", e.code, e.message, c]));
        subs.set(c, sub);
      },
      unsub(c: string) {
        subs.get(c)?.unsubscribe();
        subs.delete(c);
      },
      pub(id: number, c: string, data: unknown) {
        hl!.publish(c, data).then(
          (r) => port.postMessage(["ack", id, r]),
          (e: HeartlineError) => port.postMessage(["ack", id, undefined, e.code, e.message]),
        );
      },
      tok(id: number, token: string) {
        asks[id]?.(token);
      },
      wake() {
        hl!.reconnectNow();
      },
      bye() {
        subs.forEach((s) => s.unsubscribe());
        ports.delete(port);
        if (!ports.size) {
          hl!.close();
          hl = undefined;
        }
      },
    };
    if (m[0] === "init" || ports.has(port)) dispatch(handlers, m);
  };
}

/** The tab's side: links a client to the worker, or returns undefined when it cannot share. */
function link(base: string, options: HeartlineOptions, hooks: LinkHooks): Link | undefined {
  const g = globalThis as typeof globalThis & { SharedWorker?: typeof SharedWorker };
  // Injected constructors, clocks and the like cannot cross to the worker.
  if (!g.SharedWorker || Object.entries(options).some(([k, v]) => typeof v === "function" && k !== "getToken")) return undefined;
  let port: MessagePort;
  try {
    // Tabs share a worker only when they ask for the same options (getToken aside).
    const name = "heartline " + base + JSON.stringify(options, (_, v) => (typeof v === "function" ? undefined : v));
    port = new g.SharedWorker(import.meta.url, { type: "module", name }).port;
  } catch {
    return undefined;
  }
  const acks: Array<[(r: PublishResult) => void, (e: HeartlineError) => void]> = [];
  let closed = false;
  const send = (m: Msg): void => port.postMessage(m);
  const handlers = {
    ...hooks,
    ack(id: number, r: PublishResult | undefined, code: string, message: string) {
      const [resolve, reject] = acks[id]!;
      delete acks[id];
      if (r) resolve(r);
      else reject(new HeartlineError(code, message));
    },
    tok(id: number) {
      if (options.getToken) void Promise.resolve(options.getToken()).then((token) => send(["tok", id, token]));
    },
  };
  port.onmessage = (e: MessageEvent<Msg>) => {
    if (!closed) dispatch(handlers, e.data);
  };
  /** Introduces this tab to the worker, with every subscription from its position. */
  const hello = (): void => {
    send(["init", base, JSON.parse(JSON.stringify(options)), !!options.getToken]);
    for (const [c, since] of hooks.channels()) send(["sub", c, since]);
  };
  // A page leaving (or entering the back/forward cache) says bye; coming back, hello again.
  const bye = (): void => send(["bye"]);
  const back = (e: PageTransitionEvent): void => {
    if (e.persisted) hello();
  };
  hello();
  g.addEventListener?.("pagehide", bye);
  g.addEventListener?.("pageshow", back);

  return {
    sub: (c, since) => send(["sub", c, since]),
    unsub: (c) => send(["unsub", c]),
    pub: (c, data) => new Promise((res, rej) => send(["pub", acks.push([res, rej]) - 1, c, data])),
    wake: () => send(["wake"]),
    close() {
      bye();
      closed = true;
      g.removeEventListener?.("pagehide", bye);
      g.removeEventListener?.("pageshow", back);
      for (const ack of acks) ack?.[1](new HeartlineError("closed", "the client is closed"));
    },
  };
}

/** Turns sharing on for clients made without `shared: false`; inside a SharedWorker, serves the tabs. */
export function installSharing(): void {
  setLinker(link);
  const g = globalThis as { onconnect?: unknown; document?: unknown };
  if ("onconnect" in g && !g.document) {
    const hub = createHub();
    g.onconnect = (e: MessageEvent) => {
      const port = e.ports[0]!;
      port.onmessage = (m: MessageEvent<Msg>) => hub(port, m.data);
    };
  }
}
