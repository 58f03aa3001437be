/**
 * The Heartline client as a state machine:
 *
 * ```
 * disconnected ─▶ connecting ─▶ connected ─▶ disconnected ─(backoff)─▶ connecting …
 *                      └──(every transport failed)──▶ disconnected
 * any ─ close() or a final close code ─▶ closed
 * ```
 *
 * One connect attempt tries the transports in order (WebSocket, SSE, long
 * polling by default), starting from the one that worked last; a transport
 * that cannot open, or opens but delivers nothing within `openTimeout`, hands
 * over to the next at once. When every transport failed, the client waits a
 * full-jitter backoff and tries again. On a fallback transport it retries the
 * better ones now and then, and switches over once one works (the old
 * transport is closed only after the new one delivers).
 *
 * Positions are kept per channel and by cursor, so a subscription resumes
 * from where it was on whichever transport it lands on; every message is
 * checked against its channel's last offset, so a handler never sees a
 * message twice or out of order, whatever the transports do.
 */
import { CHANNEL_NAME_RE } from "../channel-rules.js";
import { FINAL_CLOSE_CODES, shouldReconnect } from "../close-codes.js";
import { Backoff } from "./backoff.js";
import { realClock, type ClientClock, type TimerHandle } from "./clock.js";
import { buildCursor, readCursor } from "./cursor.js";
import { Emitter, safely } from "./emitter.js";
import { closedError, HeartlineError, lostError } from "./errors.js";
import { sharing, type Link } from "./link.js";
import { SECONDS, type HeartlineEvents, type HeartlineOptions, type Seconds } from "./options.js";
import { pollTransport } from "./poll.js";
import { sseTransport } from "./sse.js";
import { Subscription, type SubscriptionOwner } from "./subscription.js";
import type { ClientTransport, CloseInfo, ReplyFrame, TransportContext, TransportFactory, TransportSink } from "./transport.js";
import type {
  ClientState,
  EventSourceConstructor,
  Message,
  Position,
  PublishResult,
  ResetInfo,
  TransportName,
  WebSocketConstructor,
} from "./types.js";
import { wsTransport } from "./ws.js";

const FACTORIES: Record<TransportName, TransportFactory> = { ws: wsTransport, sse: sseTransport, poll: pollTransport };

/** What the client knows about one channel. */
interface ChannelState {
  /** Epoch of `offset`; undefined until a frame, reset or cursor names it. */
  epoch: string | undefined;
  /** Last offset delivered (or the position the subscription started at); -1 when unknown. */
  offset: number;
  subs: Set<Subscription<never>>;
}

/** One transport the client opened: the connection, or an attempt to get one. */
interface Attempt {
  /** Index in the transport order. */
  i: number;
  /** An attempt to switch to a better transport while connected. */
  upgrade: boolean;
  t?: ClientTransport;
  openTimer?: TimerHandle;
  /** Anything arrived on it. */
  got: boolean;
}

interface PendingAck {
  a: Attempt;
  resolve(r: PublishResult): void;
  reject(e: HeartlineError): void;
  timer: TimerHandle;
}

const tokenError = (err: unknown): HeartlineError => new HeartlineError("token_error", "getToken() failed: " + String(err));

function checkChannel(channel: string): void {
  if (typeof channel !== "string" || !CHANNEL_NAME_RE.test(channel)) {
    throw new HeartlineError("bad_channel", `bad channel name ${JSON.stringify(channel)}`);
  }
}

/**
 * A Heartline client. It connects on its own (right after construction) and
 * keeps connecting until {@link Heartline.close}.
 *
 * ```ts
 * const hl = new Heartline("https://push.example.com");
 * const sub = hl.subscribe("chat:lobby", (m) => render(m.data));
 * sub.on("reset", () => reloadHistory());
 * hl.on("state", ({ to }) => showStatus(to));
 * await hl.publish("chat:lobby", { text: "hi" });
 * ```
 */
export class Heartline extends Emitter<HeartlineEvents> implements SubscriptionOwner {
  #st: ClientState = "disconnected";
  readonly #chans = new Map<string, ChannelState>();
  readonly #order: TransportName[];
  readonly #base: string;
  readonly #clock: ClientClock;
  readonly #backoff: Backoff;
  readonly #env: Pick<TransportContext, "WebSocket" | "EventSource" | "fetch">;
  readonly #getToken: (() => string | Promise<string>) | undefined;
  /** The durations of the options, in milliseconds. */
  readonly #ms: Record<Seconds, number>;
  #cur: Attempt | undefined;
  #att: Attempt | undefined;
  /** Index of the transport to start the next attempt with: the last that worked. */
  #best = 0;
  #upgradeFailures = 0;
  /** The latest cursor from SSE or polling, while nothing newer came over WebSocket. */
  #cursor: string | undefined;
  #cursorRead = true;
  #upSince = 0;
  #lastRecv = 0;
  #retryTimer: TimerHandle | undefined;
  #watchTimer: TimerHandle | undefined;
  #upgradeTimer: TimerHandle | undefined;
  readonly #acks = new Map<number, PendingAck>();
  #nextId = 1;
  readonly #unlisten: () => void;
  readonly #link: Link | undefined;
  #remote: TransportName | undefined;

  /**
   * @param url - the server's HTTP(S) base URL, e.g. `https://push.example.com` (relative URLs resolve against the page).
   * @param options - see {@link HeartlineOptions}; invalid values throw a `TypeError` naming the option.
   */
  constructor(url: string, options: HeartlineOptions = {}) {
    super();
    const g = globalThis as { location?: { href: string }; WebSocket?: WebSocketConstructor; EventSource?: EventSourceConstructor };
    const u = new URL(url, g.location?.href);
    this.#base = u.origin + u.pathname.replace(/\/+$/, "");
    this.#env = {
      WebSocket: options.WebSocket ?? g.WebSocket,
      EventSource: options.EventSource ?? g.EventSource,
      fetch: options.fetch ?? ((input, init) => fetch(input, init)),
    };
    const wanted = options.transports ?? ["ws", "sse", "poll"];
    if (!Array.isArray(wanted) || !wanted.length || wanted.some((t) => !(t in FACTORIES))) {
      throw new TypeError(`Heartline: option transports must list "ws", "sse" or "poll", got ${JSON.stringify(wanted)}`);
    }
    this.#order = [...new Set(wanted)].filter((t) => (t === "ws" ? this.#env.WebSocket : t === "sse" ? this.#env.EventSource : true));
    if (this.#order.length === 0) {
      throw new TypeError(`Heartline: no WebSocket or EventSource here for transports ${wanted}`);
    }
    this.#getToken = options.getToken;
    const ms = {} as Record<Seconds, number>;
    for (const k of Object.keys(SECONDS) as Seconds[]) {
      const v = options[k] ?? SECONDS[k];
      if (!(v >= 0 && v < Infinity)) throw new TypeError(`Heartline: option ${k} must be seconds ≥ 0, got ${String(v)}`);
      ms[k] = v * 1000;
    }
    this.#ms = ms;
    this.#clock = options.clock ?? realClock;
    this.#backoff = new Backoff({ base: ms.backoffBase, cap: ms.backoffMax, random: options.random });
    this.#unlisten = this.#listenToPage();
    // A link calls none of these after close().
    this.#link =
      options.shared === false
        ? undefined
        : sharing.linker?.(this.#base, options, {
            state: (to, transport) => {
              this.#remote = transport;
              this.#setState(to);
            },
            message: (m) => this.#onMessage(m, undefined),
            reset: (r) => this.#onReset(r, undefined),
            error: (code, message, channel) => {
              const e = new HeartlineError(code, message);
              if (channel === undefined) this.emit("error", e);
              else this.#chans.get(channel)?.subs.forEach((sub) => sub.notify("error", e));
            },
            channels: () => this.#positions(),
            pos: (c, p) => {
              const s = this.#chans.get(c);
              if (!s) return;
              if (s.epoch === undefined) {
                // Started live: this is where.
                s.epoch = p.epoch;
                s.offset = Math.max(s.offset, p.offset);
              } else if (s.epoch !== p.epoch || s.offset < p.offset) {
                // The hub's subscription started after this tab's position: what lies between is not coming.
                this.#onReset({ channel: c, ...p }, undefined);
              }
            },
          });
    // Connect after the current task, so subscriptions made right after construction go into the first request.
    if (!this.#link) {
      queueMicrotask(() => {
        if (this.#st !== "closed") this.#open(this.#best, false);
      });
    }
  }

  /** The connection state. */
  get state(): ClientState {
    return this.#st;
  }

  /** The transport in use while connected; undefined otherwise. */
  get transport(): TransportName | undefined {
    if (this.#st !== "connected") return undefined;
    return this.#link ? this.#remote : this.#cur && this.#order[this.#cur.i];
  }

  /**
   * Subscribes `handler` to `channel`. It receives every message from now on
   * (and, across reconnects, every message after the last one it got) once,
   * in offset order. Throws `bad_channel` for an invalid name.
   *
   * @param since - a position to start from instead of now (e.g. one kept from
   *   an earlier session): the messages after it are replayed first, or a reset
   *   announces they are gone. Ignored when the channel is already subscribed.
   */
  subscribe<T = unknown>(channel: string, handler: (message: Message<T>) => void, since?: Position): Subscription<T> {
    if (this.#st === "closed") throw closedError();
    checkChannel(channel);
    if (typeof handler !== "function") throw new TypeError("Heartline: subscribe() needs a handler");
    const sub = new Subscription<T>(channel, handler, this);
    let s = this.#chans.get(channel);
    if (s) {
      s.subs.add(sub);
      return sub;
    }
    // A start position goes into the cursors built from positions from now on.
    if (since) this.#dropCursor();
    this.#chans.set(channel, (s = { epoch: since?.epoch, offset: since ? since.offset : -1, subs: new Set<Subscription<never>>([sub]) }));
    this.#link?.sub(channel, since);
    this.#cur?.t?.subscribe(channel, since);
    this.#att?.t?.subscribe(channel, since);
    return sub;
  }

  /**
   * Publishes `data` (any JSON value) to `channel`. Over WebSocket it is a
   * `publish` frame answered by `published` (the server must allow the
   * channel with `--client-publish`); otherwise `POST /api/publish`.
   * Resolves with where the message was stored; rejects with a
   * {@link HeartlineError} (`forbidden`, `timeout`, `disconnected`, …).
   */
  publish(channel: string, data: unknown): Promise<PublishResult> {
    try {
      if (this.#st === "closed") throw closedError();
      checkChannel(channel);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#link) return this.#link.pub(channel, data);
    const a = this.#cur;
    if (!a?.t?.send) return this.#publishHttp(channel, data);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => this.#settle(id, new HeartlineError("timeout", "no answer in time")), this.#ms.publishTimeout);
      this.#acks.set(id, { a, resolve, reject, timer });
      if (!a.t!.send!({ type: "publish", channel, data, id })) this.#settle(id, lostError());
    });
  }

  /** Closes the connection and stops reconnecting; frees every timer and listener. Safe twice. */
  close(): void {
    if (this.#st === "closed") return;
    for (const id of [...this.#acks.keys()]) this.#settle(id, closedError());
    this.#stop(this.#cur);
    this.#stop(this.#att);
    this.#cur = this.#att = undefined;
    for (const t of [this.#retryTimer, this.#watchTimer, this.#upgradeTimer]) this.#clock.clearTimeout(t);
    this.#unlisten();
    this.#link?.close();
    this.#setState("closed");
    for (const s of this.#chans.values()) for (const sub of s.subs) sub.closed = true;
    this.#chans.clear();
  }

  /**
   * Reconnects now when the client is waiting out a backoff; does nothing
   * otherwise. The client calls it itself when the page becomes visible or the
   * network comes back.
   */
  reconnectNow(): void {
    this.#link?.wake();
    if (this.#st !== "disconnected" || this.#retryTimer === undefined) return;
    this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#open(this.#best, false);
  }

  /** @internal The position of `channel`, once known. */
  positionOf(channel: string): Position | undefined {
    this.#readCursor();
    const s = this.#chans.get(channel);
    return s && s.epoch !== undefined && s.offset >= 0 ? { epoch: s.epoch, offset: s.offset } : undefined;
  }

  /** Every channel with its position, when known. */
  #positions(): Array<[string, Position | undefined]> {
    return [...this.#chans.keys()].map((c) => [c, this.positionOf(c)]);
  }

  /** @internal Ends one subscription; leaves the channel when it was the last. */
  remove(sub: Subscription<never>): void {
    const s = this.#chans.get(sub.channel);
    if (!s?.subs.delete(sub) || s.subs.size > 0) return;
    // Forget the channel's position for good: a later subscription to it starts live.
    this.#dropCursor();
    this.#chans.delete(sub.channel);
    this.#link?.unsub(sub.channel);
    this.#cur?.t?.unsubscribe(sub.channel);
    this.#att?.t?.unsubscribe(sub.channel);
  }

  // ── connection state machine ─────────────────────────────────────────────

  #setState(to: ClientState): void {
    const from = this.#st;
    if (from === to) return;
    this.#st = to;
    this.emit("state", { from, to });
  }

  /** Starts an attempt on transport `i`: a (re)connection, or a switch to a better transport. */
  #open(i: number, upgrade: boolean): void {
    const a: Attempt = { i, upgrade, got: false };
    this.#att = a;
    if (!upgrade) this.#setState("connecting");
    a.openTimer = this.#clock.setTimeout(() => this.#failed(a, {}), this.#ms.openTimeout);
    const go = (token: string | undefined): void => {
      if (this.#att !== a) return;
      const ctx: TransportContext = {
        ...this.#env,
        base: this.#base,
        token,
        hold: this.#ms.heartbeatInterval / 1000,
        channels: () => this.#positions(),
        cursor: () => this.#cursor ?? buildCursor(this.#positions()),
      };
      try {
        a.t = FACTORIES[this.#order[i]!](ctx, this.#sink(a));
      } catch {
        // The platform refused at once (e.g. ws:// from an https page): next transport.
        this.#failed(a, {});
      }
    };
    if (!this.#getToken) return go(undefined);
    Promise.resolve()
      .then(this.#getToken)
      .then(go, (err: unknown) => {
        if (this.#att !== a) return;
        this.emit("error", tokenError(err));
        this.#stop(a);
        this.#att = undefined;
        if (upgrade) this.#scheduleUpgrade(true);
        else this.#retry();
      });
  }

  /** The sink of one attempt; calls from a transport the client has let go are ignored. */
  #sink(a: Attempt): TransportSink {
    /** Wraps `fn` to do nothing once the client has let go of this attempt. */
    const live =
      <A extends unknown[]>(fn: (...args: A) => void) =>
      (...args: A): void => {
        if (a === this.#cur || a === this.#att) fn(...args);
      };
    return {
      open: () => {
        if (a === this.#att) this.#adopt(a);
      },
      alive: live(() => {
        a.got = true;
        if (a === this.#cur) this.#lastRecv = this.#clock.now();
      }),
      message: live((m, cursor) => this.#onMessage(m, cursor)),
      subscribed: live((channel, epoch, offset, recovered) => {
        this.#onSubscribed(channel, epoch, offset, recovered);
        this.emit("pos", undefined);
      }),
      reset: live((r, cursor) => this.#onReset(r, cursor)),
      cursor: live((c) => this.#setCursor(c)),
      reply: live((f) => this.#onReply(f)),
      closed: (info) => {
        if (a === this.#att) this.#failed(a, info);
        else if (a === this.#cur) this.#dropped(info, false);
      },
    };
  }

  /** An attempt works: it becomes the connection (closing the one it replaces). */
  #adopt(a: Attempt): void {
    this.#clock.clearTimeout(a.openTimer);
    this.#att = undefined;
    const old = this.#cur;
    this.#cur = a;
    this.#stop(old);
    if (a.upgrade) this.#upgradeFailures = 0;
    this.#best = a.i;
    this.#upSince = this.#lastRecv = this.#clock.now();
    this.#watch();
    this.#scheduleUpgrade(false);
    this.#setState("connected");
    this.emit("transport", this.#order[a.i]!);
  }

  /** An attempt failed before it worked: try the next transport, or wait and start over. */
  #failed(a: Attempt, info: CloseInfo): void {
    if (a !== this.#att) return;
    this.#att = undefined;
    this.#stop(a);
    const next = a.i + 1;
    if (a.upgrade) {
      if (this.#cur && next < this.#cur.i) this.#open(next, true);
      else this.#scheduleUpgrade(true);
    } else if (next < this.#order.length) {
      this.#open(next, false);
    } else {
      this.#best = 0;
      this.#retry(info.retryAfter);
    }
  }

  /** The connection was lost (closed, failed, or silent past the watchdog). */
  #dropped(info: CloseInfo, silent: boolean): void {
    const a = this.#cur!;
    this.#cur = undefined;
    this.#stop(a);
    this.#stop(this.#att);
    this.#att = undefined;
    this.#clock.clearTimeout(this.#watchTimer);
    this.#clock.clearTimeout(this.#upgradeTimer);
    if (info.code !== undefined && !shouldReconnect(info.code)) {
      this.emit("error", new HeartlineError(FINAL_CLOSE_CODES[info.code] ?? "closed", `the server closed the connection for good (code ${info.code})`));
      this.close();
      return;
    }
    // Opened but never delivered a thing before going silent: this path swallows the
    // transport (a buffering proxy, typically). Start the next attempt with the next one.
    if (silent && !a.got && a.i + 1 < this.#order.length) this.#best = a.i + 1;
    if (this.#clock.now() - this.#upSince >= this.#ms.stableAfter) this.#backoff.reset();
    this.#retry(info.retryAfter);
  }

  /** Waits a backoff (at least `retryAfter` ms), then starts an attempt with the best transport. */
  #retry(retryAfter = 0): void {
    this.#setState("disconnected");
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined;
      this.#open(this.#best, false);
    }, Math.max(this.#backoff.next(), retryAfter));
  }

  /** Replaces the connection when nothing at all arrived for heartbeat interval + grace. */
  #watch(): void {
    const limit = this.#ms.heartbeatInterval + this.#ms.heartbeatGrace;
    const check = (): void => {
      const idle = this.#clock.now() - this.#lastRecv;
      if (idle >= limit) this.#dropped({}, true);
      else this.#watchTimer = this.#clock.setTimeout(check, limit - idle);
    };
    this.#clock.clearTimeout(this.#watchTimer);
    this.#watchTimer = this.#clock.setTimeout(check, limit);
  }

  /** On a fallback transport: try the better ones later, less often while they keep failing. */
  #scheduleUpgrade(failedOnce: boolean): void {
    this.#clock.clearTimeout(this.#upgradeTimer);
    if (failedOnce) this.#upgradeFailures++;
    if (!this.#cur || this.#cur.i === 0) return;
    this.#upgradeTimer = this.#clock.setTimeout(
      () => {
        if (this.#cur && !this.#att) this.#open(0, true);
      },
      this.#ms.upgradeAfter * 2 ** Math.min(this.#upgradeFailures, 4),
    );
  }

  /** Closes an attempt's transport and fails the publishes waiting on it. */
  #stop(a: Attempt | undefined): void {
    if (!a) return;
    this.#clock.clearTimeout(a.openTimer);
    a.t?.close();
    for (const [id, ack] of this.#acks) if (ack.a === a) this.#settle(id, lostError());
  }

  #listenToPage(): () => void {
    type Target = { addEventListener?(t: string, f: () => void): void; removeEventListener?(t: string, f: () => void): void };
    const g = globalThis as Target & { document?: Target & { visibilityState?: string } };
    const onVisible = (): void => {
      if (g.document?.visibilityState === "visible") this.reconnectNow();
    };
    const onOnline = (): void => this.reconnectNow();
    g.document?.addEventListener?.("visibilitychange", onVisible);
    g.addEventListener?.("online", onOnline);
    return () => {
      g.document?.removeEventListener?.("visibilitychange", onVisible);
      g.removeEventListener?.("online", onOnline);
    };
  }

  // ── positions and delivery ───────────────────────────────────────────────

  #onMessage(m: Message, cursor: string | undefined): void {
    if (cursor === undefined) this.#readCursor();
    const s = this.#chans.get(m.channel);
    if (s && typeof m.offset === "number" && (s.offset < 0 || m.offset > s.offset)) {
      s.offset = m.offset;
      if (cursor === undefined) this.#dropCursor();
      for (const sub of s.subs) safely(() => sub.handler(m as Message<never>));
    }
    if (cursor !== undefined) this.#setCursor(cursor);
  }

  #onSubscribed(channel: string, epoch: string, offset: number, recovered: boolean): void {
    const s = this.#chans.get(channel);
    if (!s) return;
    this.#dropCursor();
    if (recovered) {
      s.epoch = epoch;
      return;
    }
    // Subscribed from a position that was lost: the server's reset follows.
    if (s.epoch !== undefined && s.offset >= 0) return;
    // Started live: anything between a position we could not name and now may be lost.
    const lost = s.offset >= 0;
    s.epoch = epoch;
    s.offset = offset;
    if (lost) for (const sub of s.subs) sub.notify("reset", { channel, epoch, offset });
  }

  #onReset(r: ResetInfo, cursor: string | undefined): void {
    const s = this.#chans.get(r.channel);
    if (s) {
      this.#readCursor();
      // The same reset twice (two transports during a switch) is announced once.
      if (s.epoch !== r.epoch || s.offset !== r.offset) {
        s.epoch = r.epoch;
        s.offset = r.offset;
        for (const sub of s.subs) sub.notify("reset", { channel: r.channel, epoch: r.epoch, offset: r.offset });
      }
      if (cursor === undefined) this.#dropCursor();
    }
    if (cursor !== undefined) this.#setCursor(cursor);
  }

  #onReply(f: ReplyFrame): void {
    // The token runs out soon: hand the connection a new one in-band (on failure, 4001 and a reconnect follow).
    if (f.type === "refresh" && this.#getToken) {
      const t = this.#cur?.t;
      Promise.resolve()
        .then(this.#getToken)
        .then((token) => t?.send?.({ type: "refresh", token }), () => {});
      return;
    }
    const err = new HeartlineError(f.code ?? "error", f.message ?? "");
    if (typeof f.id === "number" && this.#acks.has(f.id)) {
      if (f.type === "published") return this.#settle(f.id, { channel: f.channel!, epoch: f.epoch!, offset: f.offset! });
      if (f.type === "error") return this.#settle(f.id, err);
    }
    if (f.type === "error") {
      const s = f.channel === undefined ? undefined : this.#chans.get(f.channel);
      if (s) for (const sub of s.subs) sub.notify("error", err);
      this.emit("error", err);
    }
  }

  #settle(id: number, result: PublishResult | HeartlineError): void {
    const ack = this.#acks.get(id);
    if (!ack) return;
    this.#acks.delete(id);
    this.#clock.clearTimeout(ack.timer);
    if (result instanceof HeartlineError) ack.reject(result);
    else ack.resolve(result);
  }

  /** A cursor from SSE or polling: the position after everything reported so far. */
  #setCursor(cursor: string): void {
    this.#cursor = cursor;
    this.#cursorRead = false;
    this.emit("pos", undefined);
  }

  /**
   * Positions moved without a cursor (WebSocket): the stored cursor is stale.
   * Its epochs are read into the positions first, then it is dropped.
   */
  #dropCursor(): void {
    this.#readCursor();
    this.#cursor = undefined;
  }

  /** Learns epochs (and starting offsets) the stored cursor knows and the positions do not. */
  #readCursor(): void {
    if (this.#cursorRead || !this.#cursor) return;
    this.#cursorRead = true;
    for (const [channel, p] of readCursor(this.#cursor, this.#chans.keys())) {
      const s = this.#chans.get(channel)!;
      if (s.epoch === undefined || s.epoch === p.epoch) {
        s.epoch = p.epoch;
        if (p.offset > s.offset) s.offset = p.offset;
      }
    }
  }

  async #publishHttp(channel: string, data: unknown): Promise<PublishResult> {
    const token = await this.#getToken?.();
    const res = await this.#env
      .fetch(this.#base + "/api/publish", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...(token && { Authorization: "Bearer " + token }) },
        body: JSON.stringify({ channel, data }),
      })
      .catch(() => Promise.reject(lostError()));
    // The answer is the position ({channel, epoch, offset}) or an error body.
    const body = (await res.json().catch(() => ({}))) as PublishResult & { error?: { code: string; message: string } };
    if (!res.ok) throw new HeartlineError(body.error?.code ?? "http_error", body.error?.message ?? `HTTP ${res.status}`, res.status);
    return body;
  }
}
