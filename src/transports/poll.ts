/**
 * Long polling (SPEC §3). Stateless: the cursor carries every position, so a
 * poll needs no session on the server and any node can answer it. A waiting
 * poll is a small object woken by the hub; its deadline is checked by the
 * shared ticker, not by a timer of its own.
 */
import type { ServerResponse } from "node:http";
import type { TokenClaims } from "../auth/tokens.js";
import type { StoredMessage } from "../broker/broker.js";
import { encodeCursor, positionIn, type Position } from "../hub/cursor.js";
import type { Waiter } from "../hub/hub.js";
import type { ServerContext } from "./connection.js";

/** Most messages in one answer; the client polls again at once for the rest. */
export const POLL_BATCH_LIMIT = 1000;

interface ResetInfo {
  channel: string;
  epoch: string;
  offset: number;
}

interface Collected {
  messages: StoredMessage[];
  resets: ResetInfo[];
  positions: Array<[string, Position]>;
}

/** Reads, for every channel, what comes after its position in `cursor`. */
async function collect(ctx: ServerContext, channels: string[], cursor: Map<string, Position> | undefined): Promise<Collected> {
  const out: Collected = { messages: [], resets: [], positions: [] };
  for (const channel of channels) {
    const since = positionIn(cursor, channel);
    const room = POLL_BATCH_LIMIT - out.messages.length;
    const r = await ctx.hub.broker.read(channel, since, Math.max(room, 0));
    if (since && !r.recovered) {
      out.resets.push({ channel, epoch: r.epoch, offset: r.offset });
      out.positions.push([channel, { epoch: r.epoch, offset: r.offset }]);
    } else if (since) {
      for (const m of r.messages) out.messages.push(m);
      const last = r.messages.length > 0 ? r.messages[r.messages.length - 1]!.offset : since.offset;
      out.positions.push([channel, { epoch: r.epoch, offset: last }]);
    } else {
      out.positions.push([channel, { epoch: r.epoch, offset: r.offset }]);
    }
  }
  return out;
}

function answer(res: ServerResponse, c: Collected, headers: Record<string, string>): void {
  let body = '{"messages":[';
  for (let i = 0; i < c.messages.length; i++) body += (i ? "," : "") + c.messages[i]!.json;
  body += '],"cursor":"' + encodeCursor(c.positions) + '","resets":' + JSON.stringify(c.resets) + "}";
  res.writeHead(200, { ...headers, "Content-Type": "application/json", "Cache-Control": "no-store" });
  res.end(body);
}

/**
 * Woken polls are read at the end of the turn, not at once: the messages of a
 * burst (several publishes handled in one turn) then leave in one answer
 * instead of one answer each, and the client's next poll has the rest.
 */
const woken: PendingPoll[] = [];

/** Held polls reach their state through a field of the response: one shared close handler, no closure each. */
const POLL = Symbol("heartline.poll");
type PollResponse = ServerResponse & { [POLL]?: PendingPoll };

function onPollClose(this: PollResponse): void {
  this[POLL]?.abandon();
}
let wakeScheduled = false;

function runWakes(): void {
  wakeScheduled = false;
  const list = woken.splice(0, woken.length);
  for (let i = 0; i < list.length; i++) {
    const p = list[i]!;
    p.queued = false;
    if (!p.done) void p.check();
  }
}

class PendingPoll implements Waiter {
  done = false;
  /** Waiting in the end-of-turn wake queue. */
  queued = false;
  private collecting = false;
  private dirty = false;

  constructor(
    readonly transport: PollTransport,
    readonly res: ServerResponse,
    readonly ip: string,
    readonly channels: string[],
    readonly cursor: Map<string, Position>,
    readonly deadline: number,
    readonly headers: Record<string, string>,
    /** The poll's token expiry in wall-clock ms (0 = none): nothing is delivered on an expired token. */
    readonly tokenExp = 0,
  ) {
    this.cursorChannels = channels.filter((ch) => positionIn(cursor, ch) !== undefined).length;
  }

  /** How many of `channels` the cursor holds a position for. */
  private readonly cursorChannels: number;

  wake(): void {
    if (this.done) return;
    if (this.collecting) {
      this.dirty = true;
      return;
    }
    if (this.queued) return;
    this.queued = true;
    woken.push(this);
    if (!wakeScheduled) {
      wakeScheduled = true;
      setImmediate(runWakes);
    }
  }

  /** Reads again; answers if anything is there. Re-reads when woken meanwhile. */
  async check(): Promise<void> {
    this.collecting = true;
    try {
      do {
        this.dirty = false;
        const c = await collect(this.transport.ctx, this.channels, this.cursor);
        if (this.done) return;
        if (this.tokenExp !== 0 && this.transport.ctx.auth.now() >= this.tokenExp) {
          // Woken after the token expired (before the sweep): answer without news;
          // the next poll is refused and the client resumes with a new token.
          this.finish();
          return;
        }
        // A channel the cursor did not name has just been given a position:
        // answer now, so the client holds it before anything is published there.
        const joined = c.positions.length > this.cursorChannels;
        if (c.messages.length > 0 || c.resets.length > 0 || joined) {
          this.finish(c);
          return;
        }
      } while (this.dirty);
    } catch (err) {
      this.fail(err);
    } finally {
      this.collecting = false;
    }
  }

  /** Answers with what `c` holds, or with nothing new when `c` is absent. */
  finish(c?: Collected): void {
    if (this.done) return;
    this.transport.release(this);
    if (c) {
      this.transport.ctx.stats.delivered.poll += c.messages.length;
      answer(this.res, c, this.headers);
    } else {
      const positions: Array<[string, Position]> = [];
      for (const ch of this.channels) {
        const p = positionIn(this.cursor, ch);
        if (p) positions.push([ch, p]);
      }
      answer(this.res, { messages: [], resets: [], positions }, this.headers);
    }
  }

  /** The client went away: free the slot, write nothing. */
  abandon(): void {
    if (!this.done) this.transport.release(this);
  }

  private fail(err: unknown): void {
    if (this.done) return;
    this.transport.release(this);
    this.transport.onError(this.res, err);
  }
}

export class PollTransport {
  /** Polls holding a slot, for the deadline sweep and for draining. */
  readonly waiting = new Set<PendingPoll>();

  constructor(
    readonly ctx: ServerContext,
    readonly onError: (res: ServerResponse, err: unknown) => void,
  ) {}

  /**
   * Serves `GET /poll`. Without a cursor: the current position at once. With
   * one: at once when something follows it, else held until a message comes
   * or `holdSeconds` pass.
   */
  async serve(
    res: ServerResponse,
    ip: string,
    channels: string[],
    cursor: Map<string, Position> | undefined,
    holdSeconds: number,
    headers: Record<string, string>,
    claims?: TokenClaims,
  ): Promise<void> {
    // A poll never waits past its token's expiry.
    holdSeconds = Math.min(holdSeconds, this.ctx.auth.holdLimit(claims));
    if (!cursor || holdSeconds <= 0) {
      const c = await collect(this.ctx, channels, cursor);
      this.ctx.stats.delivered.poll += c.messages.length;
      answer(res, c, headers);
      return;
    }
    // Take the slot and register before the first read, so a message stored
    // between the read and the wait still wakes this poll.
    this.ctx.registry.admit("poll", ip);
    const p = new PendingPoll(this, res, ip, channels, cursor, this.ctx.now + holdSeconds * 1000, headers, claims?.expMs ?? 0);
    this.waiting.add(p);
    this.ctx.hub.addWaiter(channels, p);
    (res as PollResponse)[POLL] = p;
    res.on("close", onPollClose);
    if (this.ctx.draining) {
      p.finish();
      return;
    }
    await p.check();
    if (!p.done) this.ctx.stats.pollWaits++;
  }

  release(p: PendingPoll): void {
    p.done = true;
    this.waiting.delete(p);
    this.ctx.hub.removeWaiter(p.channels, p);
    this.ctx.registry.release("poll", p.ip);
  }

  /** Answers every poll whose hold has run out. */
  sweep(now: number): void {
    for (const p of this.waiting) if (now >= p.deadline) p.finish();
  }

  /** Answers every waiting poll now (shutdown). */
  drain(): void {
    for (const p of this.waiting) p.finish();
  }
}

