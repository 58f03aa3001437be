/**
 * Long polling (SPEC §3). Stateless: the cursor carries every position, so a
 * poll needs no session on the server and any node can answer it. A waiting
 * poll is a small object woken by the hub; its deadline is checked by the
 * shared ticker, not by a timer of its own. It keeps the decoded cursor that
 * every request with the same cursor text shares (see decodeCursorShared).
 *
 * With a broker that reads synchronously (the memory broker), polls are read
 * and answered in the turn they are woken, and the polls of one pass that
 * wait at the same cursor on the same channels share one answer body.
 */
import type { ServerResponse } from "node:http";
import type { TokenClaims } from "../auth/tokens.js";
import type { Broker, ReadResult, StoredMessage } from "../broker/broker.js";
import { encodeCursor, positionIn, type Position, type SharedCursor } from "../hub/cursor.js";
import type { Waiter } from "../hub/hub.js";
import type { ServerContext } from "./connection.js";

/** Most messages in one answer; the client polls again at once for the rest. */
export const POLL_BATCH_LIMIT = 1000;

type Cursor = ReadonlyMap<string, Position> | undefined;

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

/** An answer ready to send: its body, the body's length in bytes, and how many messages it carries. */
export interface PollAnswer {
  readonly body: string;
  readonly bytes: number;
  readonly messages: number;
}

/** Adds one channel's read to `out`. */
function take(out: Collected, channel: string, since: Position | undefined, r: ReadResult): void {
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

/** Reads, for every channel, what comes after its position in `cursor`. */
async function collect(broker: Broker, channels: readonly string[], cursor: Cursor): Promise<Collected> {
  if (broker.readSync) return collectSync(broker, channels, cursor);
  const out: Collected = { messages: [], resets: [], positions: [] };
  for (const channel of channels) {
    const since = positionIn(cursor, channel);
    take(out, channel, since, await broker.read(channel, since, Math.max(POLL_BATCH_LIMIT - out.messages.length, 0)));
  }
  return out;
}

function collectSync(broker: Broker, channels: readonly string[], cursor: Cursor): Collected {
  const out: Collected = { messages: [], resets: [], positions: [] };
  for (const channel of channels) {
    const since = positionIn(cursor, channel);
    take(out, channel, since, broker.readSync!(channel, since, Math.max(POLL_BATCH_LIMIT - out.messages.length, 0)));
  }
  return out;
}

/** `{"messages":[…],"cursor":"…","resets":[…]}`; the messages are already JSON. */
export function encodeAnswer(c: Collected): PollAnswer {
  let body = '{"messages":[';
  for (let i = 0; i < c.messages.length; i++) body += (i ? "," : "") + c.messages[i]!.json;
  body += '],"cursor":"' + encodeCursor(c.positions) + '","resets":' + (c.resets.length === 0 ? "[]" : JSON.stringify(c.resets)) + "}";
  return { body, bytes: Buffer.byteLength(body), messages: c.messages.length };
}

/**
 * Whether a held poll has something to answer: messages, a reset, or a
 * channel the cursor did not name that has just been given a position
 * (answered at once, so the client holds it before anything is published there).
 */
function hasNews(c: Collected, channels: readonly string[], cursor: Cursor): boolean {
  if (c.messages.length > 0 || c.resets.length > 0) return true;
  let named = 0;
  for (const ch of channels) if (positionIn(cursor, ch) !== undefined) named++;
  return c.positions.length > named;
}

function send(res: ServerResponse, a: PollAnswer, headers: Record<string, string>): void {
  // A flat header list with the length: node:http neither chunks the body nor
  // builds a header object, and writes the head and the body in one piece.
  const head: Array<string | number> = ["Content-Type", "application/json", "Cache-Control", "no-store", "Content-Length", a.bytes];
  for (const name in headers) head.push(name, headers[name]!);
  res.writeHead(200, head);
  res.end(a.body);
}

/**
 * Woken polls are read at the end of the turn, not at once: the messages of a
 * burst (several publishes handled in one turn) then leave in one answer
 * instead of one answer each, and the client's next poll has the rest.
 */
const woken: PendingPoll[] = [];
let wakeScheduled = false;

/** Held polls reach their state through a field of the response: one shared close handler, no closure each. */
const POLL = Symbol("heartline.poll");
type PollResponse = ServerResponse & { [POLL]?: PendingPoll };

function onPollClose(this: PollResponse): void {
  this[POLL]?.abandon();
}

/** The key of a (cursor, channels) pair; channel names hold no space. */
function answerKey(cursor: string, channels: readonly string[]): string {
  return channels.length === 1 ? cursor + " " + channels[0] : cursor + " " + channels.join(" ");
}

/** `hub.published` when the wake queue last looked; while it moves, a burst is still arriving. */
let seenPublished = -1;
let deferred = 0;
/** Turns a burst may hold woken polls back; each is one pass of the event loop, microseconds when idle. */
const MAX_DEFERRED_TURNS = 4;

function runWakes(): void {
  const published = woken.length > 0 ? woken[0]!.transport.ctx.hub.published : seenPublished;
  if (published !== seenPublished && deferred < MAX_DEFERRED_TURNS) {
    // Messages were stored since the last look: the rest of the burst may be
    // in the sockets already. Look again after one more pass of the loop, so
    // it leaves in the same answers.
    seenPublished = published;
    deferred++;
    setImmediate(runWakes);
    return;
  }
  deferred = 0;
  wakeScheduled = false;
  const list = woken.splice(0, woken.length);
  // Answers of this pass by (cursor, channels): nothing is published while it
  // runs, so polls at the same cursor get the same answer.
  let shared: Map<string, PollAnswer | null> | undefined;
  for (let i = 0; i < list.length; i++) {
    const p = list[i]!;
    p.queued = false;
    if (p.done) continue;
    if (p.transport.ctx.hub.broker.readSync) p.checkNow((shared ??= new Map()));
    else void p.check();
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
    readonly channels: readonly string[],
    /** The cursor, shared with the other requests that sent the same one. */
    readonly cursor: SharedCursor,
    readonly deadline: number,
    readonly headers: Record<string, string>,
    /** The poll's token expiry in wall-clock ms (0 = none): nothing is delivered on an expired token. */
    readonly tokenExp = 0,
  ) {}

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

  private tokenExpired(): boolean {
    return this.tokenExp !== 0 && this.transport.ctx.auth.now() >= this.tokenExp;
  }

  /**
   * With a synchronous broker: reads and answers now if anything is there.
   * `shared` holds the answers already worked out in this turn, by (cursor, channels).
   */
  checkNow(shared: Map<string, PollAnswer | null>): void {
    try {
      const key = answerKey(this.cursor.text, this.channels);
      let a = shared.get(key);
      if (a === undefined) {
        const cursor = this.cursor.positions;
        const c = collectSync(this.transport.ctx.hub.broker, this.channels, cursor);
        a = hasNews(c, this.channels, cursor) ? encodeAnswer(c) : null;
        shared.set(key, a);
      }
      if (this.tokenExpired()) {
        // Woken after the token expired (before the sweep): answer without news;
        // the next poll is refused and the client resumes with a new token.
        this.finish();
        return;
      }
      if (a) this.answer(a);
    } catch (err) {
      this.fail(err);
    }
  }

  /** Reads again; answers if anything is there. Re-reads when woken meanwhile. */
  async check(): Promise<void> {
    this.collecting = true;
    try {
      do {
        this.dirty = false;
        const cursor = this.cursor.positions;
        const c = await collect(this.transport.ctx.hub.broker, this.channels, cursor);
        if (this.done) return;
        if (this.tokenExpired()) {
          this.finish();
          return;
        }
        if (hasNews(c, this.channels, cursor)) {
          this.answer(encodeAnswer(c));
          return;
        }
      } while (this.dirty);
    } catch (err) {
      this.fail(err);
    } finally {
      this.collecting = false;
    }
  }

  /** Answers with `a`. */
  answer(a: PollAnswer): void {
    if (this.done) return;
    this.transport.release(this);
    this.transport.ctx.stats.delivered.poll += a.messages;
    send(this.res, a, this.headers);
  }

  /** Answers with nothing new: the positions the cursor holds for the poll's channels. */
  finish(): void {
    if (this.done) return;
    this.transport.release(this);
    const cursor = this.cursor.positions;
    const positions: Array<[string, Position]> = [];
    for (const ch of this.channels) {
      const p = positionIn(cursor, ch);
      if (p) positions.push([ch, p]);
    }
    send(this.res, encodeAnswer({ messages: [], resets: [], positions }), this.headers);
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
    channels: readonly string[],
    shared: SharedCursor | undefined,
    holdSeconds: number,
    headers: Record<string, string>,
    claims?: TokenClaims,
  ): Promise<void> {
    // A poll never waits past its token's expiry.
    if (claims) holdSeconds = Math.min(holdSeconds, this.ctx.auth.holdLimit(claims));
    const broker = this.ctx.hub.broker;
    const cursor = shared?.positions;
    if (!shared || holdSeconds <= 0) {
      const c = broker.readSync ? collectSync(broker, channels, cursor) : await collect(broker, channels, cursor);
      const a = encodeAnswer(c);
      this.ctx.stats.delivered.poll += a.messages;
      send(res, a, headers);
      return;
    }
    // Take the slot and register before the first read, so a message stored
    // between the read and the wait still wakes this poll.
    this.ctx.registry.admit("poll", ip);
    const p = new PendingPoll(this, res, ip, channels, shared, Math.ceil(this.ctx.now + holdSeconds * 1000), headers, claims?.expMs ?? 0);
    this.waiting.add(p);
    this.ctx.hub.addWaiter(channels, p);
    (res as PollResponse)[POLL] = p;
    res.on("close", onPollClose);
    if (this.ctx.draining) {
      p.finish();
      return;
    }
    if (broker.readSync) p.checkNow(this.answers());
    else await p.check();
    if (!p.done) this.ctx.stats.pollWaits++;
  }

  /**
   * Answers worked out in this turn, shared by the polls that arrive in it at
   * the same cursor (after a burst, every client polls again with the same
   * one). Forgotten at the end of the turn and whenever a message is stored.
   */
  private answers(): Map<string, PollAnswer | null> {
    const published = this.ctx.hub.published;
    if (!this.turnAnswers || this.turnPublished !== published) {
      this.turnAnswers = new Map();
      this.turnPublished = published;
      setImmediate(() => (this.turnAnswers = undefined));
    }
    return this.turnAnswers;
  }

  private turnAnswers: Map<string, PollAnswer | null> | undefined;
  private turnPublished = 0;

  release(p: PendingPoll): void {
    p.done = true;
    this.waiting.delete(p);
    this.ctx.hub.removeWaiter(p.channels, p);
    this.ctx.registry.release("poll", p.ip);
  }

  /** Answers every poll whose hold has run out. */
  sweep(now: number): void {
    this.turnAnswers = undefined;
    for (const p of this.waiting) if (now >= p.deadline) p.finish();
  }

  /** Answers every waiting poll now (shutdown). */
  drain(): void {
    for (const p of this.waiting) p.finish();
  }
}
