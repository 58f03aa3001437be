/** One subscribe attempt on any transport, for tests of who is let in. */
import { SseStream } from "./sse.js";
import { getJson, upgrade, type TestServer } from "./server.js";

export type Transport = "ws" | "sse" | "poll";
export const TRANSPORTS: Transport[] = ["ws", "sse", "poll"];

/** The status a subscribe that is let in answers, by transport. */
export const ACCEPTED: Record<Transport, number> = { ws: 101, sse: 200, poll: 200 };

/**
 * One subscribe attempt on `t` with the query `q`: the HTTP status and body
 * (101 / 200 when accepted; the connection is closed again at once). A poll
 * without a cursor is answered at once.
 */
export async function attempt(s: TestServer, t: Transport, q: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  if (t === "ws") return upgrade(s.port, `/ws?${q}`, headers);
  if (t === "sse") {
    const r = await SseStream.attempt(`${s.url}/sse?${q}`, headers);
    if (!(r instanceof SseStream)) return r;
    r.close();
    return { status: 200, body: undefined };
  }
  return getJson(`${s.url}/poll?${q}`, { headers });
}
