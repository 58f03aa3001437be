/**
 * Long-polling transport: `GET /poll` in a loop, each request carrying the
 * cursor of the previous answer. The first request of a connection asks for
 * an immediate answer (`timeout=0`), so the transport counts as open within a
 * round trip; later ones are held up to `ctx.hold` seconds. A change of
 * channels aborts the held request and polls again at once: polling is
 * stateless, so nothing is lost by aborting.
 */
import { endpoint, retryAfterMs, type ClientTransport, type TransportContext, type TransportSink } from "./transport.js";
import type { Message, PresenceFrame, ResetInfo } from "./types.js";

interface PollAnswer {
  messages: Message[];
  cursor: string;
  resets: ResetInfo[];
  presence: PresenceFrame[];
}

/** Opens the long-polling transport. */
export function pollTransport(ctx: TransportContext, sink: TransportSink): ClientTransport {
  let done = false;
  let opened = false;
  let queued = false;
  let generation = 0;
  let abort: AbortController | undefined;

  const stop = (info: Parameters<TransportSink["closed"]>[0]): void => {
    done = true;
    sink.closed(info);
  };

  const run = async (gen: number): Promise<void> => {
    while (gen === generation && !done) {
      const channels = ctx.channels();
      if (channels.length === 0) {
        if (!opened) {
          opened = true;
          sink.open();
        }
        return;
      }
      const cursor = ctx.cursor();
      const params: Array<[string, string | undefined]> = channels.map(([c]) => ["channel", c]);
      params.push(["cursor", cursor], ["timeout", opened && cursor ? String(ctx.hold) : "0"], ["token", ctx.token], ["client", ctx.client]);
      const ac = (abort = new AbortController());
      let res: Response;
      let body: Partial<PollAnswer> & { error?: { code?: string } };
      try {
        res = await ctx.fetch(endpoint(ctx.base, "/poll", params), { signal: ac.signal, cache: "no-store" });
        body = (await res.json()) as typeof body;
      } catch {
        if (gen === generation && !done) stop({});
        return;
      }
      if (gen !== generation || done) return;
      if (!res.ok) {
        const error = body.error?.code;
        // The server disconnected this user (POST /api/disconnect): for good (the WebSocket's 4403) unless it says when to come back (4002).
        const retryAfter = retryAfterMs(res);
        stop({ status: res.status, error, retryAfter, code: error === "disconnected" ? (retryAfter === undefined ? 4403 : 4002) : undefined });
        return;
      }
      if (!opened) {
        opened = true;
        sink.open();
      }
      sink.alive();
      for (const r of body.resets ?? []) sink.reset(r);
      for (const m of body.messages ?? []) sink.message(m);
      for (const f of body.presence ?? []) sink.roster(f);
      sink.cursor(body.cursor!);
    }
  };

  const refresh = (): void => {
    if (queued || done) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      abort?.abort();
      void run(++generation);
    });
  };
  refresh();

  return {
    name: "poll",
    subscribe: refresh,
    unsubscribe: refresh,
    close() {
      done = true;
      abort?.abort();
    },
  };
}
