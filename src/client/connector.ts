/**
 * The client's connection state machine:
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
 * This file is the machine: attempts over the transports in order, the open
 * timeout, the backoff between rounds, the heartbeat watchdog, and the switch
 * back to a better transport. It is the base of the client (heartline.ts),
 * which keeps the positions and the publishes and takes what arrives on the
 * connection through the abstract methods below.
 */
import { FINAL_CLOSE_CODES, shouldReconnect } from "../close-codes.js";
import { Backoff } from "./backoff.js";
import type { Cut, DiagnosticsSnapshot, Fallback, FallbackReason } from "./diagnostics.js";
import { postJson } from "./post.js";
import type { TimerHandle } from "./clock.js";
import { HeartlineError, tokenError } from "./errors.js";
import { Emitter } from "./emitter.js";
import type { HeartlineEvents } from "./options.js";
import { FACTORIES, type Settings } from "./settings.js";
import type { ClientTransport, CloseInfo, ReplyFrame, TransportContext, TransportSink } from "./transport.js";
import type { ClientState, Message, Position, PresenceFrame, ResetInfo } from "./types.js";

/** One transport the client opened: the connection, or an attempt to get one. */
export interface Attempt {
  /** Index in the transport order. */
  i: number;
  /** An attempt to switch to a better transport while connected. */
  upgrade: boolean;
  t?: ClientTransport;
  openTimer?: TimerHandle;
  /** Anything arrived on it. */
  got: boolean;
}

export abstract class Connector extends Emitter<HeartlineEvents> {
  protected st: ClientState = "disconnected";
  /** The connection, once an attempt worked. */
  protected cur: Attempt | undefined;
  /** The attempt under way, if any. */
  protected att: Attempt | undefined;
  /** Index of the transport to start the next attempt with: the last that worked. */
  protected best = 0;
  // The settings (see settings.ts), copied onto the client by the constructor.
  protected declare readonly base: Settings["base"];
  protected declare readonly env: Settings["env"];
  protected declare readonly order: Settings["order"];
  protected declare readonly tok: Settings["tok"];
  protected declare readonly ms: Settings["ms"];
  protected declare readonly clk: Settings["clk"];
  /** The client id sent as `client=` (in a tab sharing a connection, the hub's once it says). */
  protected declare cid: Settings["cid"];
  protected declare readonly rep: Settings["rep"];
  /** Why it fell back and why connections ended (`diagnostics()`). */
  protected readonly dg: DiagnosticsSnapshot = { fallbacks: [], cuts: [] };
  /** How many of the last fallbacks and cuts are not reported yet. */
  #nr = [0, 0];
  readonly #backoff: Backoff;
  #upgradeFailures = 0;
  #upSince = 0;
  #lastRecv = 0;
  #retryTimer: TimerHandle | undefined;
  #watchTimer: TimerHandle | undefined;
  #upgradeTimer: TimerHandle | undefined;

  constructor(settings: Settings, random: (() => number) | undefined) {
    super();
    Object.assign(this, settings);
    this.#backoff = new Backoff({ base: this.ms.backoffBase, cap: this.ms.backoffMax, random });
  }

  // What arrives on the connection, and what the connection needs, from the client:
  /** A message; `cursor` as a transport's sink gives it. */
  protected abstract deliver(m: Message, cursor: string | undefined): void;
  /** WebSocket: a subscription is set up. */
  protected abstract subscribedAt(channel: string, epoch: string, offset: number, recovered: boolean): void;
  protected abstract resetTo(r: ResetInfo, cursor: string | undefined): void;
  protected abstract setCursor(cursor: string): void;
  protected abstract answer(f: ReplyFrame): void;
  /** Presence: a snapshot, join or leave. */
  protected abstract present(f: PresenceFrame): void;
  /** The server removed the subscription to `channel`. */
  protected abstract ended(channel: string): void;
  /** The subscribed channels and their positions, for a transport's requests. */
  protected abstract positions(): Array<[string, Position | undefined]>;
  /** The cursor to resume SSE and polling from. */
  protected abstract resume(): string | undefined;
  /** Fails the publishes waiting on `a`'s transport. */
  protected abstract lost(a: Attempt): void;
  /** Closes for good (a final close code). */
  abstract close(): void;

  protected setState(to: ClientState): void {
    const from = this.st;
    if (from === to) return;
    this.st = to;
    this.emit("state", { from, to });
  }

  /** Closes every transport and timer; the client has failed its publishes first. */
  protected stopAll(): void {
    this.#stop(this.cur);
    this.#stop(this.att);
    this.cur = this.att = undefined;
    for (const t of [this.#retryTimer, this.#watchTimer, this.#upgradeTimer]) this.clk.clearTimeout(t);
  }

  /** Reconnects now when waiting out a backoff; does nothing otherwise. */
  protected retryNow(): void {
    if (this.#retryTimer === undefined) return;
    this.clk.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.attempt(this.best, false);
  }

  /** Starts an attempt on transport `i`: a (re)connection, or a switch to a better transport. */
  protected attempt(i: number, upgrade: boolean): void {
    const a: Attempt = { i, upgrade, got: false };
    this.att = a;
    if (!upgrade) this.setState("connecting");
    a.openTimer = this.clk.setTimeout(() => this.#failed(a, {}, "timeout"), this.ms.openTimeout);
    const go = (token: string | undefined): void => {
      if (this.att !== a) return;
      const ctx: TransportContext = {
        ...this.env,
        base: this.base,
        token,
        client: this.cid,
        hold: this.ms.heartbeatInterval / 1000,
        channels: () => this.positions(),
        cursor: () => this.resume(),
      };
      try {
        a.t = FACTORIES[this.order[i]!](ctx, this.#sink(a));
      } catch {
        // The platform refused at once (e.g. ws:// from an https page): next transport.
        this.#failed(a, {}, "unsupported");
      }
    };
    if (!this.tok) return go(undefined);
    Promise.resolve()
      .then(this.tok)
      .then(go, (err: unknown) => {
        if (this.att !== a) return;
        this.emit("error", tokenError(err));
        this.#stop(a);
        this.att = undefined;
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
        if (a === this.cur || a === this.att) fn(...args);
      };
    return {
      open: () => {
        if (a === this.att) this.#adopt(a);
      },
      alive: live(() => {
        a.got = true;
        if (a === this.cur) this.#lastRecv = this.clk.now();
      }),
      message: live((m, cursor) => this.deliver(m, cursor)),
      subscribed: live((channel, epoch, offset, recovered) => {
        this.subscribedAt(channel, epoch, offset, recovered);
        this.emit("pos", undefined);
      }),
      reset: live((r, cursor) => this.resetTo(r, cursor)),
      cursor: live((c) => this.setCursor(c)),
      reply: live((f) => this.answer(f)),
      roster: live((f) => this.present(f)),
      ended: live((c) => this.ended(c)),
      closed: (info) => {
        if (a === this.att) this.#failed(a, info);
        else if (a === this.cur) this.#dropped(info, false);
      },
    };
  }

  /** An attempt works: it becomes the connection (closing the one it replaces). */
  #adopt(a: Attempt): void {
    this.clk.clearTimeout(a.openTimer);
    this.att = undefined;
    const old = this.cur;
    this.cur = a;
    this.#stop(old);
    if (a.upgrade) this.#upgradeFailures = 0;
    this.best = a.i;
    this.#upSince = this.#lastRecv = this.clk.now();
    this.#watch();
    this.#scheduleUpgrade(false);
    this.setState("connected");
    this.emit("transport", this.order[a.i]!);
    const [f, c] = this.#nr as [number, number];
    if (this.rep && f + c) {
      this.#nr = [0, 0];
      postJson(this.env.fetch, this.base + "/api/diagnostics", { fallbacks: f ? this.dg.fallbacks.slice(-f) : [], cuts: c ? this.dg.cuts.slice(-c) : [] }, undefined).catch(() => {});
    }
  }

  /** Keeps a fallback (0) or a cut (1): the last 20 of each. */
  #note(k: 0 | 1, e: Fallback | Cut): void {
    const l: unknown[] = k ? this.dg.cuts : this.dg.fallbacks;
    l.push(e) > 20 && l.shift();
    this.#nr[k] = Math.min(this.#nr[k]! + 1, 20);
  }

  /** An attempt failed before it worked: try the next transport, or wait and start over. */
  #failed(a: Attempt, info: CloseInfo, why?: FallbackReason): void {
    if (a !== this.att) return;
    this.att = undefined;
    this.#stop(a);
    const next = a.i + 1;
    const code = info.status ?? info.code;
    if (!a.upgrade && next < this.order.length) {
      this.#note(0, { at: this.clk.now(), from: this.order[a.i]!, to: this.order[next]!, reason: why ?? (code ? "refused" : "failed"), code });
    }
    if (a.upgrade) {
      if (this.cur && next < this.cur.i) this.attempt(next, true);
      else this.#scheduleUpgrade(true);
    } else if (next < this.order.length) {
      this.attempt(next, false);
    } else {
      this.best = 0;
      this.#retry(info.retryAfter);
    }
  }

  /** The connection was lost (closed, failed, or silent past the watchdog). */
  #dropped(info: CloseInfo, silent: boolean): void {
    const a = this.cur!;
    this.cur = undefined;
    this.#stop(a);
    this.#stop(this.att);
    this.att = undefined;
    this.clk.clearTimeout(this.#watchTimer);
    this.clk.clearTimeout(this.#upgradeTimer);
    const now = this.clk.now();
    this.#note(1, { at: now, transport: this.order[a.i]!, cause: silent ? "silent" : info.code !== undefined ? "server" : "network", code: info.code, after: now - this.#upSince });
    if (info.code !== undefined && !shouldReconnect(info.code)) {
      // Heartline sends 4403 only when it disconnects the user for good (POST /api/disconnect; 4403 `forbidden` is
      // reserved), and the SSE and poll transports report that disconnect as 4403 too: one error code for the three.
      this.emit("error", new HeartlineError(info.code === 4403 ? "disconnected" : (FINAL_CLOSE_CODES[info.code] ?? "closed"), `the server closed the connection for good (code ${info.code})`));
      this.close();
      return;
    }
    // Opened but never delivered a thing before going silent: this path swallows the
    // transport (a buffering proxy, typically). Start the next attempt with the next one.
    if (silent && !a.got && a.i + 1 < this.order.length) this.best = a.i + 1;
    if (now - this.#upSince >= this.ms.stableAfter) this.#backoff.reset();
    this.#retry(info.retryAfter);
  }

  /** Waits a backoff (at least `retryAfter` ms), then starts an attempt with the best transport. */
  #retry(retryAfter = 0): void {
    this.setState("disconnected");
    this.#retryTimer = this.clk.setTimeout(() => {
      this.#retryTimer = undefined;
      this.attempt(this.best, false);
    }, Math.max(this.#backoff.next(), retryAfter));
  }

  /** Replaces the connection when nothing at all arrived for heartbeat interval + grace. */
  #watch(): void {
    const limit = this.ms.heartbeatInterval + this.ms.heartbeatGrace;
    const check = (): void => {
      const idle = this.clk.now() - this.#lastRecv;
      if (idle >= limit) this.#dropped({}, true);
      else this.#watchTimer = this.clk.setTimeout(check, limit - idle);
    };
    this.clk.clearTimeout(this.#watchTimer);
    this.#watchTimer = this.clk.setTimeout(check, limit);
  }

  /** On a fallback transport: try the better ones later, less often while they keep failing. */
  #scheduleUpgrade(failedOnce: boolean): void {
    this.clk.clearTimeout(this.#upgradeTimer);
    if (failedOnce) this.#upgradeFailures++;
    if (!this.cur || this.cur.i === 0) return;
    this.#upgradeTimer = this.clk.setTimeout(
      () => {
        if (this.cur && !this.att) this.attempt(0, true);
      },
      this.ms.upgradeAfter * 2 ** Math.min(this.#upgradeFailures, 4),
    );
  }

  /** Closes an attempt's transport and fails the publishes waiting on it. */
  #stop(a: Attempt | undefined): void {
    if (!a) return;
    this.clk.clearTimeout(a.openTimer);
    a.t?.close();
    this.lost(a);
  }
}
