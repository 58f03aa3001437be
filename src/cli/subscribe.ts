/**
 * `heartline subscribe <channel…>`: prints one JSON line per message on
 * stdout (the SPEC §3 message object). Resets and the latest cursor go to
 * stderr as JSON lines. Reconnects after a drop and resumes without loss.
 */
import WebSocket from "ws";

export interface SubscribeOptions {
  url: string;
  transport: "ws" | "sse" | "poll";
  cursor?: string;
  /** A subscriber token, sent as `token=` on every request. */
  token?: string;
  /** Stop after this many messages (for scripts and tests). */
  count?: number;
}

type Out = { message(m: unknown): boolean; info(o: unknown): void };

function output(count: number | undefined, done: () => void): Out {
  let n = 0;
  return {
    message(m) {
      process.stdout.write(JSON.stringify(m) + "\n");
      if (count !== undefined && ++n >= count) {
        done();
        return false;
      }
      return true;
    },
    info(o) {
      process.stderr.write(JSON.stringify(o) + "\n");
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function subscribeCommand(channels: string[], opts: SubscribeOptions): Promise<number> {
  let stopped = false;
  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((r) => (finish = r));
  const stop = (code = 0) => {
    stopped = true;
    finish(code);
  };
  const out = output(opts.count, () => stop(0));
  process.once("SIGINT", () => stop(0));
  process.once("SIGTERM", () => stop(0));
  const base = opts.url.replace(/\/$/, "");
  const params = channels.map((c) => ["channel", c]);
  if (opts.token) params.push(["token", opts.token]);
  const q = new URLSearchParams(params).toString();
  let cursor = opts.cursor;

  const run = async (): Promise<void> => {
    let attempt = 0;
    const positions = new Map<string, { epoch: string; offset: number }>();
    while (!stopped) {
      try {
        if (opts.transport === "poll") {
          const res = await fetch(`${base}/poll?${q}${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`);
          const body = (await res.json()) as { messages?: unknown[]; cursor?: string; resets?: unknown[]; error?: unknown };
          if (!res.ok) {
            out.info(body);
            if (res.status >= 400 && res.status < 500 && res.status !== 429) return stop(1);
            throw new Error(`HTTP ${res.status}`);
          }
          for (const r of body.resets ?? []) out.info({ type: "reset", ...(r as object) });
          const batch = body.messages ?? [];
          for (let i = 0; i < batch.length; i++) {
            if (!out.message(batch[i])) {
              // Stopped inside the batch: keep the older cursor unless all of it was printed.
              if (i === batch.length - 1) cursor = body.cursor;
              return;
            }
          }
          cursor = body.cursor;
          out.info({ cursor });
        } else if (opts.transport === "sse") {
          const res = await fetch(`${base}/sse?${q}`, { headers: cursor ? { "Last-Event-ID": cursor } : {} });
          if (!res.ok || !res.body) {
            out.info(await res.json().catch(() => ({ status: res.status })));
            if (res.status >= 400 && res.status < 500 && res.status !== 429) return stop(1);
            throw new Error(`HTTP ${res.status}`);
          }
          attempt = 0;
          const decoder = new TextDecoder();
          let buf = "";
          let event = { id: undefined as string | undefined, type: "message", data: "" };
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            if (stopped) return;
            buf += decoder.decode(chunk, { stream: true });
            let nl: number;
            while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + (buf[nl] === "\r" && buf[nl + 1] === "\n" ? 2 : 1));
              if (line === "") {
                if (event.id !== undefined) cursor = event.id;
                if (event.data !== "") {
                  const data = JSON.parse(event.data.replace(/\n$/, ""));
                  if (event.type === "message") {
                    if (!out.message(data)) return;
                  } else if (event.type === "reset") out.info({ type: "reset", ...data });
                  else if (event.type === "error") out.info({ error: data });
                }
                event = { id: undefined, type: "message", data: "" };
                continue;
              }
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (field === "id") event.id = value;
              else if (field === "event") event.type = value;
              else if (field === "data") event.data += value + "\n";
            }
          }
        } else {
          await new Promise<void>((resolve, reject) => {
            const ws = new WebSocket(`${base.replace(/^http/, "ws")}/ws?${q}${cursor && positions.size === 0 ? "&cursor=" + encodeURIComponent(cursor) : ""}`);
            const onStop = setInterval(() => stopped && ws.close(1000), 100);
            ws.on("open", () => {
              attempt = 0;
              // After a drop, resume every channel from what was printed.
              for (const [channel, since] of positions) ws.send(JSON.stringify({ type: "subscribe", channel, since }));
            });
            ws.on("message", (raw) => {
              const f = JSON.parse(raw.toString()) as { type: string; channel: string; offset: number; epoch: string; data: unknown };
              if (f.type === "message") {
                const p = positions.get(f.channel);
                if (p) p.offset = f.offset;
                if (!out.message({ channel: f.channel, offset: f.offset, data: f.data })) ws.close(1000);
              } else if (f.type === "subscribed") {
                const p = positions.get(f.channel);
                if (!p || p.epoch !== f.epoch) positions.set(f.channel, { epoch: f.epoch, offset: p?.offset ?? f.offset });
              } else if (f.type === "reset") {
                positions.set(f.channel, { epoch: f.epoch, offset: f.offset });
                out.info(f);
              } else if (f.type === "ping") ws.send('{"type":"pong"}');
              else if (f.type === "error") out.info(f);
            });
            // Refused at the upgrade: a 4xx other than 429 will not change by retrying, as on the other transports.
            ws.on("unexpected-response", (req, res) => {
              clearInterval(onStop);
              let body = "";
              res.setEncoding("utf8");
              res.on("data", (d: string) => (body += d));
              res.on("end", () => {
                req.destroy();
                const status = res.statusCode ?? 0;
                let parsed: unknown;
                try {
                  parsed = JSON.parse(body);
                } catch {
                  parsed = { status };
                }
                out.info(parsed);
                if (status >= 400 && status < 500 && status !== 429) {
                  stop(1);
                  resolve();
                } else reject(new Error(`HTTP ${status}`));
              });
            });
            ws.on("close", () => {
              clearInterval(onStop);
              resolve();
            });
            ws.on("error", (err) => {
              clearInterval(onStop);
              reject(err);
            });
          });
          if (positions.size === 0 && !stopped) throw new Error("connection closed before subscribing");
        }
        if (opts.transport === "poll") {
          attempt = 0;
          continue;
        }
      } catch (err) {
        if (stopped) return;
        out.info({ disconnected: (err as Error).message });
      }
      if (stopped) return;
      // Full-jitter exponential backoff.
      await sleep(Math.random() * Math.min(30_000, 250 * 2 ** Math.min(attempt, 7)));
      attempt++;
    }
  };
  void run().catch((err) => {
    out.info({ error: String(err) });
    stop(1);
  });
  const code = await finished;
  if (cursor) out.info({ cursor });
  return code;
}
