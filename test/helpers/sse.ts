/**
 * Event streams read with fetch in tests: the exact bytes, and the blocks
 * parsed the way the WHATWG algorithm does.
 */
import assert from "node:assert/strict";
import { Recorded, waitFor } from "./recorded.js";
import { jsonOrText } from "./server.js";

/** One parsed SSE block. `data` is undefined for a block without data lines (e.g. a bare `id:`). */
export interface SseEvent {
  event: string | undefined;
  data: string | undefined;
  id: string | undefined;
  /** The block exactly as received, blank line included. */
  raw: string;
}

/** The answer to a stream request that was refused: its status and body (JSON parsed). */
export interface Refusal {
  status: number;
  body: any;
}

/**
 * A raw `fetch` reader of an event stream that keeps the exact bytes and
 * parses blocks the way the WHATWG algorithm does (an `id:` without data still
 * moves the last event id). `next` awaits the next event matching a predicate.
 */
export class SseStream extends Recorded<SseEvent> {
  text = "";
  lastEventId = "";
  onEvent: ((ev: SseEvent, stream: SseStream) => void) | undefined;
  /** Resolves when the stream ends: true when the server ended it, false when we closed it. */
  readonly ended: Promise<boolean>;
  /** Whether the stream has ended, by either side. */
  finished = false;
  private closedByUs = false;
  private buffer = "";

  private constructor(
    readonly res: Response,
    private readonly ac: AbortController,
    onEvent?: (ev: SseEvent, stream: SseStream) => void,
  ) {
    super("an SSE event");
    this.onEvent = onEvent;
    this.ended = this.pump().finally(() => (this.finished = true));
  }

  /** Opens a stream that must answer 200; `onEvent`, when given, sees every event from the first byte on. */
  static async open(
    url: string,
    headers: Record<string, string> = {},
    onEvent?: (ev: SseEvent, stream: SseStream) => void,
  ): Promise<SseStream> {
    const r = await SseStream.attempt(url, headers, onEvent);
    if (!(r instanceof SseStream)) assert.fail(`SSE ${url} answered ${r.status} ${JSON.stringify(r.body)}`);
    return r;
  }

  /** Opens a stream; an answer other than 200 is returned as a {@link Refusal} instead. */
  static async attempt(
    url: string,
    headers: Record<string, string> = {},
    onEvent?: (ev: SseEvent, stream: SseStream) => void,
  ): Promise<SseStream | Refusal> {
    const ac = new AbortController();
    const res = await fetch(url, { headers: { Accept: "text/event-stream", ...headers }, signal: ac.signal });
    if (res.status !== 200) return { status: res.status, body: jsonOrText(await res.text()) };
    return new SseStream(res, ac, onEvent);
  }

  /** Every event received so far. */
  get events(): SseEvent[] {
    return this.items;
  }

  private async pump(): Promise<boolean> {
    const reader = this.res.body!.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done || this.closedByUs) return !this.closedByUs;
        const chunk = decoder.decode(value, { stream: true });
        this.text += chunk;
        this.buffer += chunk;
        let end: number;
        while (!this.closedByUs && (end = this.buffer.indexOf("\n\n")) >= 0) {
          const raw = this.buffer.slice(0, end + 2);
          this.buffer = this.buffer.slice(end + 2);
          this.parseBlock(raw);
        }
      }
    } catch {
      return false; // aborted by close()
    }
  }

  private parseBlock(raw: string): void {
    let event: string | undefined;
    let id: string | undefined;
    const data: string[] = [];
    let fields = 0;
    for (const line of raw.slice(0, -2).split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (name === "retry") continue;
      fields++;
      if (name === "event") event = value;
      else if (name === "data") data.push(value);
      else if (name === "id") id = value;
    }
    if (fields === 0) return;
    if (id !== undefined) this.lastEventId = id;
    const ev: SseEvent = { event, data: data.length > 0 ? data.join("\n") : undefined, id, raw };
    this.record(ev);
    this.onEvent?.(ev, this);
  }

  /** Waits until the text so far satisfies `pred`. */
  until(pred: (text: string) => boolean, timeoutMs = 5000, what = "SSE text"): Promise<true> {
    return waitFor(() => pred(this.text) || undefined, timeoutMs, what);
  }

  /** Unnamed events with data: the message objects, parsed. */
  messages(): Array<{ channel: string; offset: number; data: unknown }> {
    return this.events.filter(isMessage).map((e) => JSON.parse(e.data!));
  }

  /** The data of every event named `name`, parsed. */
  named(name: string): unknown[] {
    return this.events.filter((e) => e.event === name).map((e) => JSON.parse(e.data!));
  }

  close(): void {
    this.closedByUs = true;
    this.ac.abort();
  }
}

export const isMessage = (e: SseEvent) => e.event === undefined && e.data !== undefined;
export const isPosition = (e: SseEvent) => e.event === "position" && e.id !== undefined;
