/**
 * Cross-tab sharing (browsers): the tabs of an origin hold one server
 * connection between them. One hub, running one ordinary client
 * (`shared: false`), serves every tab:
 *
 * - in a SharedWorker that runs this same module, over MessagePorts;
 * - where SharedWorker is missing, in one of the tabs, the *leader*: the tab
 *   holding a Web Lock named after the connection. The tabs talk to it over a
 *   BroadcastChannel. When the leader goes, the lock passes to another tab,
 *   which starts a hub and says `lead`; every tab then introduces itself again
 *   with every subscription from its position.
 *
 * A tab's client keeps its own positions and checks every message against
 * them, as it does on a connection of its own. So that a channel that has
 * delivered nothing yet can resume too, the hub tells each tab the position
 * its subscription started from (`pos`) as soon as it knows it; a tab whose
 * own position is behind that learns of the gap as a reset.
 *
 * Where neither way is available (or the worker cannot start, e.g. the
 * bundle comes from another origin than the page), each tab connects on its own.
 *
 * Messages are arrays `[operation, ...arguments]` (plain data: they cross
 * postMessage). Tab → hub: init, sub, unsub, pub, rpc, tok, wake, bye. Hub →
 * tab: the {@link LinkHooks} (state, message, reset, error, pos, pres, gone)
 * plus ack (the answer to a pub or an rpc), tok and lead.
 *
 * Presence: the tabs share the hub's connection, so they are one member, with
 * the hub's client id; `state` tells every tab that id. A tab introduces itself
 * with the id it knows (its own, or the last hub's), and a new hub takes the
 * first it hears, so a leader tab leaving is no leave and join for the others
 * (within the server's `--presence-grace`).
 */
import { closedError, HeartlineError, lostError } from "./errors.js";
import { Heartline } from "./heartline.js";
import { setLinker, type Link, type LinkHooks } from "./link.js";
import type { HeartlineOptions } from "./options.js";
import type { Subscription } from "./subscription.js";
import type { Position } from "./types.js";

type Msg = [op: string, ...args: unknown[]];
type Port = { postMessage(m: Msg): void };
/** What crosses a BroadcastChannel: a tab's id, its message, and whether it goes up to the hub. */
type Envelope = [tab: string, m: Msg, up?: 1];
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
  /** Subscriptions whose tab has not been told yet the position they started from, with the tab's port. */
  const untold = new Map<Subscription, Port>();
  const asks: Array<(token: string) => void> = [];
  const all = (m: Msg): void => ports.forEach((_, p) => p.postMessage(m));
  const state = (): Msg => ["state", hl!.state, hl!.transport, hl!.clientId];
  /** Tells the tabs the positions the hub has come to know; usually there is nobody left to tell. */
  const tell = (): void =>
    untold.forEach((port, sub) => {
      const p = !sub.closed && sub.position;
      if (p) port.postMessage(["pos", sub.channel, p]);
      if (p || sub.closed) untold.delete(sub);
    });
  return (port, m) => {
    const subs = ports.get(port) ?? new Map<string, Subscription>();
    /** Sends the tab the outcome of its pub or rpc `id`: `[ack, id, result]`, or with an error's code, message and status. */
    const answer = (id: number, p: Promise<unknown>): void =>
      void p.then(
        (r) => port.postMessage(["ack", id, r]),
        (e: HeartlineError) => port.postMessage(["ack", id, 0, e.code || "error", e.message, e.status]),
      );
    const handlers = {
      init(url: string, options: HeartlineOptions, tokens: boolean) {
        ports.set(port, subs);
        // Tokens come from the tabs: every tab is asked, the first answer counts.
        const getToken = tokens ? (): Promise<string> => new Promise((r) => all(["tok", asks.push(r) - 1])) : undefined;
        hl ??= new Heartline(url, { ...options, getToken, shared: false })
          .on("state", () => all(state()))
          .on("transport", () => all(state()))
          .on("error", (e) => all(["error", e.code, e.message]))
          // Presence goes to the tabs on that channel.
          .on("pres", (f) => ports.forEach((subs, p) => subs.has(f.channel) && p.postMessage(["pres", f])))
          .on("pos", tell);
        port.postMessage(state());
      },
      sub(c: string, since?: Position) {
        subs.get(c)?.unsubscribe();
        const sub = hl!.subscribe(c, (msg) => port.postMessage(["message", msg]), since);
        sub
          .on("reset", (r) => port.postMessage(["reset", r]))
          .on("error", (e) => port.postMessage(["error", e.code, e.message, c]))
          .on("unsubscribed", () => {
            subs.delete(c);
            port.postMessage(["gone", c]);
          });
        subs.set(c, sub);
        // A channel the hub had already: this tab gets the members known so far.
        const members = sub.presence();
        if (members) port.postMessage(["pres", { type: "presence", channel: c, members }]);
        untold.set(sub, port);
        tell();
      },
      unsub(c: string) {
        subs.get(c)?.unsubscribe();
        subs.delete(c);
      },
      pub(id: number, c: string, data: unknown) {
        answer(id, hl!.publish(c, data));
      },
      rpc(id: number, method: string, params: unknown, timeout: number) {
        answer(id, hl!.rpc(method, params, { timeout }));
      },
      // Quoted: the bundle shortens the client's own `tok` property, and a handler's name is an operation on the wire.
      "tok"(id: number, token: string) {
        asks[id]?.(token);
      },
      wake() {
        hl!.reconnectNow();
      },
      /** A tab leaves; with `all`, the leader tab hands over: the client closes without unsubscribing, so the next hub's resubscriptions come within the presence grace. */
      bye(all?: 1) {
        if (all) ports.clear();
        else subs.forEach((s) => s.unsubscribe());
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

/**
 * Where SharedWorker is missing: elects one tab as the hub with a Web Lock and
 * links this tab to it over a BroadcastChannel. Returns how to send to the
 * hub and how to leave (giving up the lead, when this tab has it).
 */
function elect(name: string, receive: (m: Msg) => void): [send: (m: Msg) => void, quit: () => void] {
  const me = String(Math.random());
  const bc = new BroadcastChannel(name);
  const done = new AbortController();
  bc.onmessage = ({ data: [tab, m, up] }: MessageEvent<Envelope>) => {
    if (!up && (tab === me || !tab)) receive(m);
  };
  navigator.locks
    .request(name, { signal: done.signal }, () => {
      // This tab leads: a hub of its own, on a channel object of its own (a
      // BroadcastChannel does not hear itself, so this tab's messages reach it too).
      const hub = createHub();
      const out = new BroadcastChannel(name);
      const ports = new Map<string, Port>();
      let leading = true;
      // Answers that come after the lead was given up (publishes failing on close) go nowhere.
      const port = (tab: string): Port =>
        ports.get(tab) ?? ports.set(tab, { postMessage: (m) => leading && out.postMessage([tab, m] satisfies Envelope) }).get(tab)!;
      out.onmessage = ({ data: [tab, m, up] }: MessageEvent<Envelope>) => {
        if (up) hub(port(tab), m);
      };
      out.postMessage(["", ["lead"]]);
      return new Promise<void>((release) => {
        done.signal.onabort = () => {
          ports.forEach((p) => hub(p, ["bye", 1]));
          leading = false;
          out.close();
          release();
        };
      });
    })
    .catch(() => {});
  return [
    (m) => bc.postMessage([me, m, 1] satisfies Envelope),
    () => {
      done.abort();
      bc.close();
    },
  ];
}

/** The tab's side: links a client to the hub, or returns undefined when it cannot share. */
function link(base: string, options: HeartlineOptions, hooks: LinkHooks): Link | undefined {
  const g = globalThis as typeof globalThis & { SharedWorker?: typeof SharedWorker };
  // Injected constructors, clocks and the like cannot cross to the hub.
  if (Object.entries(options).some(([k, v]) => typeof v === "function" && k !== "getToken")) return undefined;
  // Tabs share a hub only when they ask for the same options (getToken aside).
  const name = "heartline " + base + JSON.stringify(options, (_, v) => (typeof v === "function" ? undefined : v));
  const acks: Array<[(r: never) => void, (e: HeartlineError) => void]> = [];
  let closed = false;
  let send: (m: Msg) => void;
  let quit = (): void => {};
  /** Fails the publishes still waiting for an answer. */
  const fail = (e: HeartlineError): void =>
    acks.forEach((ack, id) => {
      delete acks[id];
      ack[1](e);
    });
  const handlers = {
    ...hooks,
    ack(id: number, r: never, code?: string, message?: string, status?: number) {
      const ack = acks[id];
      delete acks[id];
      if (code === undefined) ack?.[0](r);
      else ack?.[1](new HeartlineError(code, message!, status));
    },
    // Quoted, as the hub's (the bundle shortens `tok` elsewhere).
    "tok"(id: number) {
      if (options.getToken) void Promise.resolve(options.getToken()).then((token) => send(["tok", id, token]));
    },
    lead() {
      // A new hub: the old one took the answers to pending publishes with it.
      fail(lostError());
      hello();
    },
  };
  const receive = (m: Msg): void => {
    if (!closed) dispatch(handlers, m);
  };
  try {
    if (g.SharedWorker) {
      const port = new g.SharedWorker(import.meta.url, { type: "module", name }).port;
      port.onmessage = (e: MessageEvent<Msg>) => receive(e.data);
      send = (m) => port.postMessage(m);
    } else if (g.BroadcastChannel && g.navigator?.locks) {
      [send, quit] = elect(name, receive);
    } else {
      return undefined;
    }
  } catch {
    return undefined;
  }
  /** Introduces this tab to the hub, with every subscription from its position. */
  const hello = (): void => {
    // The id makes a new hub (after a leader tab left) the same presence member as the last.
    send(["init", base, JSON.parse(JSON.stringify({ ...options, clientId: hooks.id() })), !!options.getToken]);
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
    rpc: (method, params, timeout) => new Promise((res, rej) => send(["rpc", acks.push([res, rej]) - 1, method, params, timeout])),
    wake: () => send(["wake"]),
    close() {
      bye();
      closed = true;
      quit();
      g.removeEventListener?.("pagehide", bye);
      g.removeEventListener?.("pageshow", back);
      fail(closedError());
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
