/**
 * The Heartline client. Its connection state machine (the states, the
 * attempts over the transports, backoff, fallback and the switch back) is
 * connector.ts, its base class; the options are read in settings.ts. This
 * file is the public API, the positions, presence and the publishes.
 *
 * Positions are kept per channel and by cursor, so a subscription resumes
 * from where it was on whichever transport it lands on; every message is
 * checked against its channel's last offset, so a handler never sees a
 * message twice or out of order, whatever the transports do.
 */
import { CHANNEL_NAME_RE } from "../channel-rules.js";
import { Connector, type Attempt } from "./connector.js";
import { buildCursor, readCursor } from "./cursor.js";
import type { DiagnosticsSnapshot } from "./diagnostics.js";
import { safely } from "./emitter.js";
import { closedError, HeartlineError, lostError, tokenError } from "./errors.js";
import { sharing, type Link } from "./link.js";
import type { HeartlineOptions, RpcOptions } from "./options.js";
import { postJson } from "./post.js";
import { applyPresence, type Members } from "./presence.js";
import { readSettings } from "./settings.js";
import { Requests } from "./requests.js";
import { Subscription, type SubscriptionOwner } from "./subscription.js";
import type { ReplyFrame } from "./transport.js";
import type { ClientState, Message, Position, PresenceFrame, PresenceMember, PublishResult, ResetInfo, TransportName } from "./types.js";

/** What the client knows about one channel. */
interface ChannelState {
  /** Epoch of `offset`; undefined until a frame, reset or cursor names it. */
  epoch: string | undefined;
  /** Last offset delivered (or the position the subscription started at); -1 when unknown. */
  offset: number;
  subs: Set<Subscription<never>>;
  /** Presence: the members, once a snapshot came. */
  members?: Members;
}

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
export class Heartline extends Connector implements SubscriptionOwner {
  readonly #chans = new Map<string, ChannelState>();
  /** The latest cursor from SSE or polling, while nothing newer came over WebSocket. */
  #cursor: string | undefined;
  #cursorRead = true;
  readonly #reqs: Requests;
  readonly #unlisten: () => void;
  readonly #link: Link | undefined;
  #remote: TransportName | undefined;

  /**
   * @param url - the server's HTTP(S) base URL, e.g. `https://push.example.com` (relative URLs resolve against the page).
   * @param options - see {@link HeartlineOptions}; invalid values throw a `TypeError` naming the option.
   */
  constructor(url: string, options: HeartlineOptions = {}) {
    const s = readSettings(url, options);
    super(s, options.random);
    this.#reqs = new Requests(this.clk);
    this.#unlisten = this.#listenToPage();
    // A link calls none of these after close().
    this.#link =
      options.shared === false
        ? undefined
        : sharing.linker?.(s.base, options, {
            state: (to, transport, id) => {
              this.#remote = transport;
              this.cid = id;
              this.setState(to);
            },
            message: (m) => this.deliver(m, undefined),
            reset: (r) => this.resetTo(r, undefined),
            pres: (f) => this.present(f),
            gone: (c) => this.ended(c),
            id: () => this.cid,
            error: (code, message, channel) => {
              const e = new HeartlineError(code, message);
              if (channel === undefined) this.emit("error", e);
              else this.#chans.get(channel)?.subs.forEach((sub) => sub.notify("error", e));
            },
            channels: () => this.positions(),
            pos: (c, p) => {
              const s = this.#chans.get(c);
              if (!s) return;
              if (s.epoch === undefined) {
                // Started live: this is where.
                s.epoch = p.epoch;
                s.offset = Math.max(s.offset, p.offset);
              } else if (s.epoch !== p.epoch || s.offset < p.offset) {
                // The hub's subscription started after this tab's position: what lies between is not coming.
                this.resetTo({ channel: c, ...p }, undefined);
              }
            },
          });
    // Connect after the current task, so subscriptions made right after construction go into the first request.
    if (!this.#link) {
      queueMicrotask(() => {
        if (this.st !== "closed") this.attempt(this.best, false);
      });
    }
  }

  /** The connection state. */
  get state(): ClientState {
    return this.st;
  }

  /** This client's id (`clientId` option, or random), sent as `client=`: its presence member's `client`. Tabs sharing a connection take the id of the client that holds it. */
  get clientId(): string {
    return this.cid;
  }

  /** The transport in use while connected; undefined otherwise. */
  get transport(): TransportName | undefined {
    if (this.st !== "connected") return undefined;
    return this.#link ? this.#remote : this.cur && this.order[this.cur.i];
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
    if (this.st === "closed") throw closedError();
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
    this.cur?.t?.subscribe(channel, since);
    this.att?.t?.subscribe(channel, since);
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
      if (this.st === "closed") throw closedError();
      checkChannel(channel);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#link) return this.#link.pub(channel, data);
    const a = this.cur;
    if (!a?.t?.send) return this.#publishHttp(channel, data);
    return this.#reqs.pend(false, this.ms.publishTimeout, "timeout", (id, w) => {
      w.a = a;
      if (!a.t!.send!({ type: "publish", channel, data, id })) this.#reqs.settle(id, lostError());
    });
  }

  /**
   * Calls `method` of the application (its `rpc` hook) with `params` (any
   * JSON value) and resolves with its result.
   *
   * On an open WebSocket it is an `rpc` frame with an id of the client's,
   * answered by the `rpc` frame of the same id (answers may come in any
   * order); otherwise (SSE, polling, or no WebSocket open yet) it is
   * `POST /api/rpc` with the client's token as a Bearer header (and the
   * page's cookies, as `fetch` sends them to its own origin). Tabs sharing a
   * connection call through the tab that holds it.
   *
   * Rejects with a {@link HeartlineError}: the server's code and message
   * (and, over HTTP, its status), e.g. `rpc_not_configured`,
   * `too_many_requests`, or the application's own code; `rpc_timeout` when
   * no answer came within the timeout; `disconnected` when the WebSocket it
   * was sent on went first; `closed` after {@link Heartline.close}. An RPC is
   * never sent twice: one lost with its WebSocket may have run on the server
   * already, so it is not retried (over HTTP or after the reconnection); the
   * application decides whether calling again is safe.
   *
   * @param options.timeout - milliseconds to wait for the answer; default the
   *   client's `rpcTimeout` option (10 s).
   */
  rpc<T = unknown>(method: string, params?: unknown, options: RpcOptions = {}): Promise<T> {
    const ms = options.timeout ?? this.ms.rpcTimeout;
    let p: unknown = null;
    try {
      if (this.st === "closed") throw closedError();
      if (typeof method !== "string" || !(ms >= 0 && ms < 2 ** 31)) throw new TypeError("Heartline: rpc() needs a method name, and a timeout in ms ≥ 0");
      // What JSON cannot carry fails here (a BigInt, a cycle), not on the way; what it drops is dropped here too.
      const json = JSON.stringify(params);
      if (json !== undefined) p = JSON.parse(json);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#reqs.pend(true, ms, "rpc_timeout", (id, w) => {
      const done = (r: Promise<unknown>): void =>
        void r.then(
          (v) => this.#reqs.settle(id, v),
          (e) => this.#reqs.settle(id, e instanceof HeartlineError ? e : tokenError(e)),
        );
      if (this.#link) return done(this.#link.rpc(method, p, ms));
      const a = this.cur;
      if (a?.t?.send?.({ type: "rpc", id, method, params: p })) {
        w.a = a;
        return;
      }
      const ctl = new AbortController();
      w.abort = () => ctl.abort();
      done(
        Promise.resolve()
          .then(this.tok)
          .then((token) => postJson(this.env.fetch, this.base + "/api/rpc", { method, params: p }, token, ctl.signal))
          // A 200 without a result is not the server's answer (a page served for any path, say).
          .then((body) => ("result" in body ? body.result : Promise.reject(new HeartlineError("bad_response", "not an RPC answer", 200)))),
      );
    });
  }

  /** Its last 20 fallbacks and ended connections, oldest first, as a copy (see diagnostics.ts); a sharing tab's leader has them. */
  diagnostics(): DiagnosticsSnapshot {
    return JSON.parse(JSON.stringify(this.dg));
  }

  /** Closes the connection and stops reconnecting; frees every timer and listener. Safe twice. */
  close(): void {
    if (this.st === "closed") return;
    this.#reqs.lose(closedError);
    this.stopAll();
    this.#unlisten();
    this.#link?.close();
    this.setState("closed");
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
    if (this.st === "disconnected") this.retryNow();
  }

  /** @internal The position of `channel`, once known. */
  positionOf(channel: string): Position | undefined {
    this.#readCursor();
    const s = this.#chans.get(channel);
    return s && s.epoch !== undefined && s.offset >= 0 ? { epoch: s.epoch, offset: s.offset } : undefined;
  }

  /** @internal The members of `channel`, once a presence snapshot came; a copy. */
  membersOf(channel: string): PresenceMember[] | undefined {
    const m = this.#chans.get(channel)?.members;
    return m && [...m.values()];
  }

  /** Every channel with its position, when known. */
  protected positions(): Array<[string, Position | undefined]> {
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
    this.cur?.t?.unsubscribe(sub.channel);
    this.att?.t?.unsubscribe(sub.channel);
  }

  // ── connection state (the machine itself is connector.ts) ────────────────

  protected resume(): string | undefined {
    return this.#cursor ?? buildCursor(this.positions());
  }

  /** Fails the publishes waiting on `a`'s transport. */
  protected lost(a: Attempt): void {
    this.#reqs.lose(lostError, a);
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

  protected deliver(m: Message, cursor: string | undefined): void {
    if (cursor === undefined) this.#readCursor();
    const s = this.#chans.get(m.channel);
    if (s && typeof m.offset === "number" && (s.offset < 0 || m.offset > s.offset)) {
      s.offset = m.offset;
      if (cursor === undefined) this.#dropCursor();
      for (const sub of s.subs) safely(() => sub.handler(m as Message<never>));
    }
    if (cursor !== undefined) this.setCursor(cursor);
  }

  protected subscribedAt(channel: string, epoch: string, offset: number, recovered: boolean): void {
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

  protected resetTo(r: ResetInfo, cursor: string | undefined): void {
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
    if (cursor !== undefined) this.setCursor(cursor);
  }

  protected answer(f: ReplyFrame): void {
    // The token runs out soon: hand the connection a new one in-band (on failure, 4001 and a reconnect follow).
    if (f.type === "refresh" && this.tok) {
      const t = this.cur?.t;
      Promise.resolve()
        .then(this.tok)
        .then((token) => t?.send?.({ type: "refresh", token }), () => {});
      return;
    }
    const err = new HeartlineError(f.code ?? "error", f.message ?? "");
    const w = this.#reqs.entry(f.id);
    if (w) {
      const id = f.id as number;
      const e = f.error;
      if (f.type === (w.rpc ? "rpc" : "published")) {
        return this.#reqs.settle(
          id,
          !w.rpc ? { channel: f.channel!, epoch: f.epoch!, offset: f.offset! } : e ? new HeartlineError((e.code as string) ?? "error", (e.message as string) ?? "") : f.result,
        );
      }
      if (f.type === "error") return this.#reqs.settle(id, err);
    }
    if (f.type === "error") {
      const s = f.channel === undefined ? undefined : this.#chans.get(f.channel);
      if (s) for (const sub of s.subs) sub.notify("error", err);
      this.emit("error", err);
    }
  }

  protected present(f: PresenceFrame): void {
    this.emit("pres", f);
    const s = this.#chans.get(f.channel);
    if (s) applyPresence(s, f, (type, value) => s.subs.forEach((sub) => sub.notify(type, value)));
  }

  protected ended(channel: string): void {
    // Each handle hears of it, then ends; the last one leaves the channel (its transports and the shared hub).
    for (const sub of [...(this.#chans.get(channel)?.subs ?? [])]) {
      sub.notify("unsubscribed", { channel });
      sub.unsubscribe();
    }
  }

  /** A cursor from SSE or polling: the position after everything reported so far. */
  protected setCursor(cursor: string): void {
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
    // The answer is the position: {channel, epoch, offset}.
    return (await postJson(this.env.fetch, this.base + "/api/publish", { channel, data }, await this.tok?.())) as unknown as PublishResult;
  }
}
