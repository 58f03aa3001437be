/**
 * Server-Sent Events transport (SPEC §3). Every message is `id: <cursor>`
 * plus an unnamed event whose data is the message object, so a plain
 * browser EventSource resumes by itself through `Last-Event-ID`. The data part
 * is encoded once per message; only the short `id:` line is per connection.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TokenClaims } from "../auth/tokens.js";
import type { CloseReason } from "../close-codes.js";
import { HeartlineError } from "../errors.js";
import { cursorSegment, positionIn, type Position } from "../hub/cursor.js";
import type { Outgoing, Subscription } from "../hub/hub.js";
import { corkUntilTurnEnds } from "./batch.js";
import { Connection, type ServerContext } from "./connection.js";

const CONN = Symbol("heartline.connection");
type Response = ServerResponse & { [CONN]?: SseConnection };

/** Reconnection delay the stream announces first (SPEC: 1000–5000 ms). */
export const SSE_RETRY_MS = 2000;
const PING_EVENT = Buffer.from("event: ping\ndata: {}\n\n");
const TOKEN_EXPIRED_EVENT =
  "event: error\ndata: " + JSON.stringify({ code: "token_expired", message: "the token has expired; reconnect with a new one" }) + "\n\n";

export class SseConnection extends Connection {
  readonly kind = "sse" as const;

  constructor(
    ctx: ServerContext,
    ip: string,
    readonly res: Response,
  ) {
    super(ctx, ip);
    res[CONN] = this;
    res.on("close", onClose);
  }

  /** True while the response is corked for this turn (see batch.ts). */
  corked = false;

  cork(): void {
    this.res.cork();
  }

  uncork(): void {
    this.corked = false;
    this.res.uncork();
  }

  /** The cursor of every channel this stream has a position in. */
  cursor(): string {
    let s = "1";
    for (const sub of this.subs.values()) if (sub.epoch !== "") s += cursorSegment(sub.key, sub);
    return s;
  }

  deliver(_sub: Subscription, out: Outgoing): void {
    const id = "id: " + this.cursor() + "\n";
    const body = out.sse;
    if (!this.writable(id.length + body.length)) return;
    const res = this.res;
    if (!this.corked) {
      this.corked = true;
      corkUntilTurnEnds(this);
    }
    res.write(id);
    res.write(body);
    this.lastSendAt = this.ctx.now;
    this.ctx.stats.delivered.sse++;
  }

  reset(sub: Subscription, epoch: string, offset: number): void {
    this.writeText("event: reset\nid: " + this.cursor() + "\ndata: " + JSON.stringify({ channel: sub.channel, epoch, offset }) + "\n\n");
  }

  subscribed(): void {
    // SSE has no per-channel acknowledgement; the first `id:` line follows the setup.
  }

  sendPing(): void {
    if (!this.writable(PING_EVENT.length)) return;
    this.res.write(PING_EVENT);
    this.lastSendAt = this.ctx.now;
    this.ctx.stats.heartbeats.sse++;
  }

  /** Writes an event given as text (rare events: resets, position, errors). */
  writeText(text: string): void {
    if (!this.writable(text.length)) return;
    this.res.write(text);
    this.lastSendAt = this.ctx.now;
  }

  bufferedBytes(): number {
    return this.res.writableLength;
  }

  private writable(bytes: number): boolean {
    if (this.closed) return false;
    if (this.overBudget(bytes)) {
      this.close("slow_consumer");
      return false;
    }
    return true;
  }

  protected end(reason: CloseReason): void {
    // A slow consumer's queue is dropped at once; otherwise end the stream
    // cleanly so EventSource reconnects after `retry`.
    if (reason === "slow_consumer") this.res.destroy();
    else if (!this.res.writableEnded) this.res.end(reason === "token_expired" ? TOKEN_EXPIRED_EVENT : undefined);
  }

  terminate(): void {
    this.res.destroy();
  }
}

function onClose(this: Response): void {
  this[CONN]?.close("going_away");
}

/**
 * Serves an admitted SSE request: headers and `retry:` at once, then the
 * subscriptions (replay from the cursor), then an `event: position` carrying
 * the cursor as its id, so a client that hears nothing still resumes from here.
 */
export async function serveSse(
  ctx: ServerContext,
  req: IncomingMessage,
  res: ServerResponse,
  ip: string,
  channels: string[],
  cursor: Map<string, Position> | undefined,
  headers: Record<string, string>,
  claims?: TokenClaims,
): Promise<void> {
  res.writeHead(200, {
    ...headers,
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    Connection: "keep-alive",
    "X-Accel-Buffering": "no",
  });
  res.write("retry: " + SSE_RETRY_MS + "\n\n");
  req.socket.setNoDelay(true);
  const conn = new SseConnection(ctx, ip, res);
  ctx.auth.bind(conn, claims);
  ctx.registry.track(conn);
  try {
    await Promise.all(channels.map((c) => conn.subscribe(c, positionIn(cursor, c))));
  } catch (err) {
    if (!conn.closed) {
      const e = err instanceof HeartlineError ? err : new HeartlineError("internal_error", "unexpected error; it was logged");
      if (!(err instanceof HeartlineError)) ctx.log.error({ err }, "SSE subscribe failed");
      conn.writeText("event: error\ndata: " + JSON.stringify(e.toJSON().error) + "\n\n");
      conn.close("internal_error");
    }
    return;
  }
  // A named event with data: every EventSource implementation records its id,
  // while a bare id: line is dropped by some of them.
  if (!conn.closed) conn.writeText("event: position\nid: " + conn.cursor() + "\ndata: {}\n\n");
}
