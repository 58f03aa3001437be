/**
 * WebSocket transport: one socket to `/ws`, subscriptions by frame (with
 * `since` positions to resume), `{"type":"ping"}` answered with a pong.
 * It counts as open at the first frame from the server (or at once when there
 * is nothing to subscribe to): a socket that opens but stays silent is what a
 * broken proxy looks like, and the client falls back from it.
 */
import { endpoint, type ClientTransport, type ReplyFrame, type TransportContext, type TransportSink } from "./transport.js";
import type { Position } from "./types.js";

const OPEN = 1;

/** Opens the WebSocket transport. */
export function wsTransport(ctx: TransportContext, sink: TransportSink): ClientTransport {
  const socket = new ctx.WebSocket!(endpoint(ctx.base.replace(/^http/, "ws"), "/ws", [
    ["token", ctx.token],
    ["client", ctx.client],
  ]));
  let done = false;

  const send = (frame: object): boolean => {
    if (done || socket.readyState !== OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  };
  const subscribe = (channel: string, since: Position | undefined): void => {
    send(since ? { type: "subscribe", channel, since } : { type: "subscribe", channel });
  };

  socket.addEventListener("open", () => {
    if (done) return;
    const channels = ctx.channels();
    for (const [channel, since] of channels) subscribe(channel, since);
    if (channels.length === 0) sink.open();
  });
  socket.addEventListener("message", (e) => {
    if (done || typeof e.data !== "string") return;
    let f: ReplyFrame & { data?: unknown; recovered?: boolean };
    try {
      f = JSON.parse(e.data) as typeof f;
    } catch {
      return;
    }
    // `null` parses too, and has no fields to read.
    if (!f) return;
    // The client takes the first open() and ignores the rest.
    sink.open();
    sink.alive();
    const { channel, epoch, offset } = f as Required<ReplyFrame>;
    switch (f.type) {
      case "message":
        return sink.message({ channel, offset, data: f.data });
      case "subscribed":
        return sink.subscribed(channel, epoch, offset, f.recovered === true);
      case "reset":
        return sink.reset({ channel, epoch, offset });
      case "ping":
        return void send({ type: "pong" });
      case "presence":
      case "join":
      case "leave":
        return sink.roster(f as never);
      case "unsubscribed":
        // With an id it answers this client's own unsubscribe; without, the server removed the subscription.
        if (f.id === undefined) sink.ended(channel);
        return;
      default:
        sink.reply(f);
    }
  });
  socket.addEventListener("close", (e) => {
    if (done) return;
    done = true;
    sink.closed({ code: e.code });
  });
  // A failed socket also emits "close", which is where it is handled.
  socket.addEventListener("error", () => {});

  return {
    name: "ws",
    subscribe,
    // The id marks the answer as this client's, unlike the server's own `unsubscribed`.
    unsubscribe: (channel) => void send({ type: "unsubscribe", channel, id: 0 }),
    send,
    close() {
      if (done) return;
      done = true;
      socket.close(1000);
    },
  };
}
