/**
 * Long polling (SPEC §3). Stateless: the cursor carries every position, so a
 * poll needs no session on the server and any node can answer it. A waiting
 * poll is a small object woken by the hub; its deadline is checked by the
 * shared ticker, not by a timer of its own. It keeps the decoded cursor that
 * every request with the same cursor text shares (see CursorCache).
 *
 * A poll asks the hub for what follows its cursor (Hub.readAfter), which
 * applies the reset rule. When the hub reads at once (the memory broker),
 * polls are read and answered in the turn they are woken, and the polls of
 * one pass that wait at the same cursor on the same channels share one
 * answer (poll-answers.ts).
 *
 * A poll is answered either through node:http's response (servers Heartline
 * is attached to) or, on servers Heartline creates, on the bare socket: the
 * request is taken out of node:http like an upgrade, so a held poll keeps no
 * parser, request or response; once answered, the socket is handed back to
 * its server for the next request of the kept-alive connection. Both ways
 * are bare.ts's (HttpOutput, BareHttp.answerJson, holdOn).
 */
import type { ServerResponse } from "node:http";
import type { TokenClaims } from "../auth/tokens.js";
import { isResponse } from "../http/h2.js";
import { socketAdmitted, socketAnswered, socketIdle } from "../http/socket-limits.js";
import { positionIn, type Position, type SharedCursor } from "../hub/cursor.js";
import type { Waiter } from "../hub/hub.js";
import { BareHttp, holdOn, socketOf, type Held, type HttpOutput } from "./bare.js";
import type { HeldPoll, ServerContext } from "./connection.js";
import { AnswerTable, encodeAnswer, hasNews, POLL_BATCH_LIMIT, type PollAnswer } from "./poll-answers.js";
import { pollMembers, POLLER_GRACE_MS, presenceNews, type Poller, type PollMembers } from "./poll-presence.js";

export type { Poller };

const POLL = Symbol("heartline.poll");

/** Held polls reach their state through a field of the response (or of the socket, see holdOn): shared handlers, no closure each. */
type PollResponse = ServerResponse & { [POLL]?: PendingPoll };

function onPollClose(this: PollResponse): void {
  this[POLL]?.abandon();
}

/** Turns a burst may hold woken polls back; each is one pass of the event loop, microseconds when idle. */
const MAX_DEFERRED_TURNS = 4;

/**
 * Woken polls are read at the end of the turn, not at once: the messages of a
 * burst (several publishes handled in one turn) then leave in one answer
 * instead of one answer each, and the client's next poll has the rest. One
 * queue per PollTransport.
 */
class WakeQueue {
  private readonly woken: PendingPoll[] = [];
  private scheduled = false;
  /** `hub.published` when the queue last looked; while it moves, a burst is still arriving. */
  private seenPublished = -1;
  private deferred = 0;
  /** What runs after the pass that answers the polls woken now. */
  private readonly after: Array<() => void> = [];

  constructor(private readonly hub: ServerContext["hub"]) {}

  /**
   * Runs `fn` right after the pass that answers the polls woken so far, and
   * returns true; returns false, running nothing, when none is waiting for a
   * pass. `fn` must not throw.
   */
  afterPass(fn: () => void): boolean {
    if (!this.scheduled) return false;
    this.after.push(fn);
    return true;
  }

  add(p: PendingPoll): void {
    this.woken.push(p);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  }

  /** Bound once: rescheduling allocates no closure. */
  private readonly run = (): void => {
    const published = this.woken.length > 0 ? this.hub.published : this.seenPublished;
    if (published !== this.seenPublished && this.deferred < MAX_DEFERRED_TURNS) {
      // Messages were stored since the last look: the rest of the burst may be
      // in the sockets already. Look again after one more pass of the loop, so
      // it leaves in the same answers.
      this.seenPublished = published;
      this.deferred++;
      setImmediate(this.run);
      return;
    }
    this.deferred = 0;
    this.scheduled = false;
    const list = this.woken.splice(0, this.woken.length);
    // Answers of this pass by (cursor, channels): nothing is published while it
    // runs, so polls at the same cursor get the same answer.
    let shared: AnswerTable | undefined;
    for (let i = 0; i < list.length; i++) {
      const p = list[i]!;
      p.queued = false;
      if (p.done) continue;
      if (this.hub.readsNow && p.members === undefined) p.checkNow((shared ??= new AnswerTable()));
      else void p.check();
    }
    if (this.after.length > 0) {
      const after = this.after.splice(0, this.after.length);
      for (let i = 0; i < after.length; i++) after[i]!();
    }
  };
}

class PendingPoll implements Waiter, Held, HeldPoll {
  done = false;
  /** Waiting in the end-of-turn wake queue. */
  queued = false;
  private collecting = false;
  private dirty = false;
  /** On the bare socket: the bytes the client sent after the poll's request, for node:http once answered. */
  rest: Buffer | undefined;
  user: string | undefined;
  client: string | undefined;
  claims: TokenClaims | undefined;

  constructor(
    readonly transport: PollTransport,
    readonly out: HttpOutput,
    readonly ip: string,
    readonly channels: readonly string[],
    /** The cursor, shared with the other requests that sent the same one. */
    readonly cursor: SharedCursor,
    readonly deadline: number,
    readonly headers: Record<string, string>,
    /** The poll's token expiry in wall-clock ms (0 = none): nothing is delivered on an expired token. */
    readonly tokenExp: number,
    /** On the bare socket: whether the connection stays open after the answer. */
    readonly keepAlive: boolean,
    /** The poller's members on its presence channels: such a poll also answers presence news. */
    readonly members: PollMembers | undefined,
  ) {}

  wake(): void {
    if (this.done) return;
    if (this.collecting) {
      this.dirty = true;
      return;
    }
    if (this.queued) return;
    this.queued = true;
    this.transport.wakes.add(this);
  }

  private tokenExpired(): boolean {
    return this.tokenExp !== 0 && this.transport.ctx.auth.now() >= this.tokenExp;
  }

  /**
   * When the hub reads at once: reads and answers now if anything is there.
   * `shared` holds the answers already worked out in this turn, by (cursor, channels).
   */
  checkNow(shared: AnswerTable): void {
    try {
      const a = shared.read(this.transport.ctx.hub, this.cursor, this.channels);
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
        const c = await this.transport.ctx.hub.readAfter(this.channels, cursor, POLL_BATCH_LIMIT);
        if (this.done) return;
        if (this.tokenExpired()) {
          this.finish();
          return;
        }
        const presence = this.members ? await presenceNews(this.transport.ctx, this.members) : undefined;
        if (this.done) return;
        if (hasNews(c, this.channels, cursor) || (presence !== undefined && presence.length > 0)) {
          this.answer(encodeAnswer(c, presence));
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
    this.transport.send(this.out, a, this.headers, this.keepAlive, this.rest);
  }

  /** Answers with nothing new: the positions the cursor holds for the poll's channels. */
  finish(): void {
    if (this.done) return;
    const cursor = this.cursor.positions;
    const positions: Array<[string, Position]> = [];
    for (const ch of this.channels) {
      const p = positionIn(cursor, ch);
      if (p) positions.push([ch, p]);
    }
    this.answer(encodeAnswer({ messages: [], resets: [], positions }));
  }

  /** The client went away: free the slot, write nothing. */
  abandon(): void {
    if (!this.done) this.transport.release(this);
  }

  fail(err: unknown): void {
    if (this.done) return;
    this.transport.release(this);
    this.transport.onError(this.out, err);
    socketIdle(socketOf(this.out));
  }
}

/** What {@link PollTransport.serve} hands to serveLater: the poll's request, as serve read it. */
interface LaterPoll {
  out: HttpOutput;
  ip: string;
  channels: readonly string[];
  shared: SharedCursor | undefined;
  holdSeconds: number;
  headers: Record<string, string>;
  claims: TokenClaims | undefined;
  keepAlive: boolean;
  rest: Buffer | undefined;
  who: Poller | undefined;
}

export class PollTransport {
  /** Polls holding a slot, for the deadline sweep and for draining. */
  readonly waiting = new Set<PendingPoll>();
  /** Polls woken in this turn, answered at its end. */
  readonly wakes: WakeQueue;
  private readonly http = new BareHttp();

  constructor(
    readonly ctx: ServerContext,
    readonly onError: (out: HttpOutput, err: unknown) => void,
  ) {
    this.wakes = new WakeQueue(ctx.hub);
  }

  /**
   * Sends an answer through the response, or on the bare socket (see
   * BareHttp.answerJson), and counts what it delivers. The socket rests as
   * its poller's until the next poll (a poll whose client left never gets here).
   */
  send(out: HttpOutput, a: PollAnswer, headers: Record<string, string>, keepAlive: boolean, rest: Buffer | undefined): void {
    this.ctx.stats.delivered.poll += a.messages;
    socketAnswered(socketOf(out));
    this.http.answerJson(out, a.body, a.bytes, headers, keepAlive && !this.ctx.draining, rest);
  }

  /**
   * Serves `GET /poll`. Without a cursor: the current position at once. With
   * one: at once when something follows it, else held until a message comes
   * or `holdSeconds` pass. `out` is node:http's response or, for a request
   * taken out of node:http, its socket; then `keepAlive` says whether the
   * connection goes back to node:http after the answer, and `head` holds the
   * bytes read after the request.
   *
   * When the hub reads at once and the poll holds no presence members (a
   * steady stream's polls), all of it happens now, without a promise; a
   * promise is returned only for a poll that waits for the broker or for
   * presence. A throw before that is the caller's, as the promise's rejection is.
   */
  serve(
    out: HttpOutput,
    ip: string,
    channels: readonly string[],
    shared: SharedCursor | undefined,
    holdSeconds: number,
    headers: Record<string, string>,
    claims?: TokenClaims,
    keepAlive = false,
    head?: Buffer,
    who?: Poller,
  ): Promise<void> | undefined {
    // A poll never waits past its token's expiry.
    if (claims) holdSeconds = Math.min(holdSeconds, this.ctx.auth.holdLimit(claims));
    const hub = this.ctx.hub;
    const rest = head !== undefined && head.length > 0 ? head : undefined;
    // A poll that names its client holds its members on presence channels while it is held, and for the grace after its answer.
    const members = pollMembers(this.ctx, channels, who);
    if (members !== undefined || !hub.readsNow) return this.serveLater({ out, ip, channels, shared, holdSeconds, headers, claims, keepAlive, rest, who }, members);
    if (!shared || holdSeconds <= 0) {
      this.send(out, encodeAnswer(hub.readAfterNow(channels, shared?.positions, POLL_BATCH_LIMIT)), headers, keepAlive, rest);
      return;
    }
    if (!this.ctx.draining) {
      // Nothing can be stored between this read and the wait below (no turn
      // passes). A poll with something to answer is answered without being
      // held: no slot, no waiter (a burst's polls share the answer).
      const a = this.answers().read(hub, shared, channels);
      if (a !== null) {
        this.send(out, a, headers, keepAlive, rest);
        return;
      }
    }
    const p = this.hold(new PendingPoll(this, out, ip, channels, shared, this.deadline(holdSeconds), headers, claims?.expMs ?? 0, keepAlive, undefined), rest, claims, who);
    if (!p.done) this.ctx.stats.pollWaits++;
  }

  /** {@link serve} for a poll that waits for the broker's reads or holds presence members. */
  private async serveLater(ask: LaterPoll, members: PollMembers | undefined): Promise<void> {
    const { out, ip, channels, shared, holdSeconds, headers, claims, keepAlive, rest, who } = ask;
    if (members) await this.enterMembers(members);
    if (!shared || holdSeconds <= 0) {
      try {
        const c = await this.ctx.hub.readAfter(channels, shared?.positions, POLL_BATCH_LIMIT);
        this.send(out, encodeAnswer(c, members ? await presenceNews(this.ctx, members) : undefined), headers, keepAlive, rest);
      } finally {
        if (members) this.exitMembers(members);
      }
      return;
    }
    const p = this.hold(new PendingPoll(this, out, ip, channels, shared, this.deadline(holdSeconds), headers, claims?.expMs ?? 0, keepAlive, members), rest, claims, who);
    if (p.done) return;
    await p.check();
    if (!p.done) this.ctx.stats.pollWaits++;
  }

  /**
   * Takes the slot and registers a poll as a waiter, before the read that
   * may answer it (so a message stored meanwhile still wakes it), and holds
   * its response or bare socket; answers it at once while draining.
   */
  private hold(p: PendingPoll, rest: Buffer | undefined, claims: TokenClaims | undefined, who: Poller | undefined): PendingPoll {
    const out = p.out;
    this.ctx.registry.admit("poll", p.ip);
    socketAdmitted(socketOf(out));
    p.rest = rest;
    this.waiting.add(p);
    [p.claims, p.client, p.user] = [claims, who?.client, who?.user];
    this.ctx.registry.polls.add(p.user, p);
    this.ctx.hub.addWaiter(p.channels, p);
    if (isResponse(out)) {
      (out as PollResponse)[POLL] = p;
      out.on("close", onPollClose);
    }
    if (this.ctx.draining) p.finish();
    else if (!isResponse(out)) holdOn(out, p);
    return p;
  }

  private deadline(holdSeconds: number): number {
    return Math.ceil(this.ctx.clock.now() + holdSeconds * 1000);
  }

  /** Holds a poller's members (each in use until {@link exitMembers}); on a failure, lets go of those already held. */
  private async enterMembers(members: PollMembers): Promise<void> {
    const presence = this.ctx.hub.presence;
    let entered = 0;
    try {
      for (const [ch, m] of members) {
        await presence.enter(ch, m);
        entered++;
      }
    } catch (err) {
      for (let i = 0; i < entered; i++) presence.exit(members[i]![0], members[i]![1].key, true, POLLER_GRACE_MS);
      throw err;
    }
  }

  /** A poll of these members was answered (or its client left): each stays for the grace, for the next poll. */
  private exitMembers(members: PollMembers): void {
    for (const [ch, m] of members) this.ctx.hub.presence.exit(ch, m.key, true, POLLER_GRACE_MS);
  }

  /**
   * Answers worked out in this turn, shared by the polls that arrive in it at
   * the same cursor (after a burst, every client polls again with the same
   * one). Forgotten at the end of the turn and whenever a message is stored.
   */
  private answers(): AnswerTable {
    const published = this.ctx.hub.published;
    if (!this.turnAnswers || this.turnPublished !== published) {
      this.turnAnswers = new AnswerTable();
      this.turnPublished = published;
      setImmediate(() => (this.turnAnswers = undefined));
    }
    return this.turnAnswers;
  }

  private turnAnswers: AnswerTable | undefined;
  private turnPublished = 0;

  release(p: PendingPoll): void {
    p.done = true;
    this.waiting.delete(p);
    this.ctx.registry.polls.delete(p.user, p);
    this.ctx.hub.removeWaiter(p.channels, p);
    this.ctx.registry.release("poll", p.ip);
    if (p.members) this.exitMembers(p.members);
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
