/**
 * Server-Sent Events transport: one `EventSource` on `/sse` naming every
 * channel, resumed with `lastEventId=<cursor>`. A change of channels reopens
 * the stream from the latest cursor. The client does its own reconnecting, so
 * the `EventSource` is closed at its first error rather than left to retry.
 *
 * It counts as open at the first event, at the latest the `position` event
 * the server sends right after setup: a stream that opens but delivers no
 * event is what a buffering proxy looks like, and the client falls back from it.
 */
import { endpoint, type ClientTransport, type ReplyFrame, type TransportContext, type TransportSink } from "./transport.js";
import type { CloseInfo } from "./transport.js";
import type { EventSourceLike, Message, PresenceFrame, ResetInfo, StreamEvent } from "./types.js";

function parse<T>(e: StreamEvent): T | undefined {
  try {
    return typeof e.data === "string" ? (JSON.parse(e.data) as T) : undefined;
  } catch {
    return undefined;
  }
}

/** Opens the SSE transport. */
export function sseTransport(ctx: TransportContext, sink: TransportSink): ClientTransport {
  let source: EventSourceLike | undefined;
  let done = false;
  let queued = false;

  const start = (): void => {
    queued = false;
    source?.close();
    source = undefined;
    if (done) return;
    const channels = ctx.channels();
    // Nothing to stream yet: idle until a channel is added.
    if (channels.length === 0) return sink.open();
    const params: Array<[string, string | undefined]> = channels.map(([c]) => ["channel", c]);
    params.push(["lastEventId", ctx.cursor()], ["token", ctx.token], ["client", ctx.client]);
    const es = (source = new ctx.EventSource!(endpoint(ctx.base, "/sse", params)));
    const on = (type: string, fn: (e: StreamEvent) => void): void =>
      es.addEventListener(type, (e) => {
        if (es !== source || done) return;
        if (type !== "error") {
          // The client takes the first open() and ignores the rest.
          sink.open();
          sink.alive();
        }
        fn(e);
      });
    on("message", (e) => {
      const m = parse<Message>(e);
      if (m) sink.message(m, e.lastEventId || undefined);
    });
    on("reset", (e) => {
      const r = parse<ResetInfo>(e);
      if (r) sink.reset(r, e.lastEventId || undefined);
    });
    on("position", (e) => {
      if (e.lastEventId) sink.cursor(e.lastEventId);
    });
    on("ping", () => {});
    for (const type of ["presence", "join", "leave"]) {
      on(type, (e) => {
        const f = parse<PresenceFrame>(e);
        if (f) sink.roster(f);
      });
    }
    on("unsubscribed", (e) => {
      const f = parse<{ channel: string }>(e);
      if (f) sink.ended(f.channel);
    });
    const end = (info: CloseInfo): void => {
      es.close();
      source = undefined;
      done = true;
      sink.closed(info);
    };
    // The server disconnected this user: as the WebSocket's close codes, 4002 reconnects and 4403 is final.
    on("disconnect", (e) => end({ code: parse<{ reconnect?: boolean }>(e)?.reconnect === false ? 4403 : 4002 }));
    on("error", (e) => {
      // The server's own `event: error` has JSON data; a connection error has none.
      const err = parse<{ code?: string; message?: string }>(e);
      if (err) sink.reply({ ...err, type: "error" } as ReplyFrame);
      end({});
    });
  };
  const refresh = (): void => {
    if (!queued && !done) {
      queued = true;
      queueMicrotask(start);
    }
  };
  refresh();

  return {
    name: "sse",
    subscribe: refresh,
    unsubscribe: refresh,
    close() {
      done = true;
      source?.close();
      source = undefined;
    },
  };
}
