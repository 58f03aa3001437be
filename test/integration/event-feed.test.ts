/**
 * The backend event feed (SPEC §9, --events-channel) over real sockets:
 * connect, join, leave, disconnect, occupied and vacated as ordinary
 * messages; causal order per client; a reconnect within the grace is no
 * event; only the server's credential (or a token naming the feed) reads it;
 * a backend cut again and again resumes by cursor and sees every event once.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { nowSec, sign } from "../helpers/auth.js";
import { SseStream } from "../helpers/sse.js";
import { getJson, waitFor, withServer, WsClient, type TestServer } from "../helpers/server.js";

const API_KEY = "feed-key";
const SECRET = "feed-test-secret-0123456789abcdef-0123";
const FEED = "system:events";
const auth = { Authorization: `Bearer ${API_KEY}` };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface FeedEvent {
  event: string;
  channel?: string;
  user: string | null;
  client: string;
  reason?: string;
  at: number;
}

/** Every event stored on the feed so far, read with the API key through polls. */
async function readFeed(s: TestServer, cursor?: string): Promise<{ events: FeedEvent[]; cursor: string }> {
  const events: FeedEvent[] = [];
  let at = cursor ?? (await getJson(`${s.url}/poll?channel=${FEED}`, { headers: auth })).body.cursor;
  for (;;) {
    const r = await getJson(`${s.url}/poll?channel=${FEED}&cursor=${at}&timeout=0`, { headers: auth });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    for (const m of r.body.messages) events.push(m.data);
    at = r.body.cursor;
    if (r.body.messages.length === 0) return { events, cursor: at };
  }
}

const of = (events: FeedEvent[], client: string) => events.filter((e) => e.client === client).map((e) => (e.channel ? `${e.event}:${e.channel}` : e.event));

describe("event feed", () => {
  const s = withServer({ apiKey: API_KEY, jwtSecret: SECRET, presence: "room:*", presenceGrace: 0.4, eventsChannel: FEED });
  const token = (claims: Record<string, unknown>) => sign({ sub: "u1", exp: nowSec() + 3600, channels: ["room:*"], ...claims }, SECRET);

  it("connect, occupied, join, then leave, vacated, disconnect: in causal order, once each", async () => {
    const start = await getJson(`${s.url}/poll?channel=${FEED}`, { headers: auth });
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=room:1&client=k1&token=${await token({})}`);
    await c.next((f) => f.type === "presence");
    c.close();
    await sleep(1200);
    const { events } = await readFeed(s, start.body.cursor);
    assert.deepEqual(of(events, "k1"), ["connect", "join:room:1", "leave:room:1", "disconnect"]);
    const occ = events.filter((e) => e.event === "occupied" || e.event === "vacated").map((e) => `${e.event}:${e.channel}`);
    assert.deepEqual(occ, ["occupied:room:1", "vacated:room:1"]);
    const connect = events.find((e) => e.event === "connect")!;
    assert.equal(connect.user, "u1");
    assert.ok(Math.abs(connect.at - Date.now()) < 60_000, "at is wall-clock ms");
    assert.equal(typeof events.find((e) => e.event === "disconnect")!.reason, "string");
  });

  it("a reconnect within the grace is neither a disconnect nor a connect", async () => {
    const start = await getJson(`${s.url}/poll?channel=${FEED}`, { headers: auth });
    const t = await token({});
    const a = await WsClient.connect(`${s.wsUrl}/ws?channel=room:2&client=k2&token=${t}`);
    await a.next((f) => f.type === "presence");
    a.ws.terminate();
    await sleep(100);
    const b = await WsClient.connect(`${s.wsUrl}/ws?channel=room:2&client=k2&token=${t}`);
    await b.next((f) => f.type === "presence");
    await sleep(800);
    const { events } = await readFeed(s, start.body.cursor);
    assert.deepEqual(of(events, "k2"), ["connect", "join:room:2"]);
    b.close();
  });

  it("only the API key or a token naming the feed reads it; public rules do not apply", async () => {
    const none = await SseStream.attempt(`${s.url}/sse?channel=${FEED}`);
    assert.ok(!(none instanceof SseStream) && none.status === 401);
    const other = await SseStream.attempt(`${s.url}/sse?channel=${FEED}&token=${await token({})}`);
    assert.ok(!(other instanceof SseStream) && other.status === 403);
    const named = await SseStream.attempt(`${s.url}/sse?channel=${FEED}&token=${await token({ channels: [FEED] })}`);
    assert.ok(named instanceof SseStream, "a token naming the feed reads it");
    named.close();
    const withKey = await SseStream.open(`${s.url}/sse?channel=${FEED}`, auth);
    withKey.close();
    // A WebSocket subscribe frame for the feed, on a connection with a token that does not name it.
    const c = await WsClient.connect(`${s.wsUrl}/ws?token=${await token({})}`);
    c.send({ type: "subscribe", channel: FEED });
    const err = await c.next((f) => f.type === "error");
    assert.equal(err.code, "forbidden");
    assert.equal(err.channel, FEED);
    c.close();
    // The backend over WebSocket with the API key reads the feed as it happens.
    const backend = await WsClient.connect(`${s.wsUrl}/ws?channel=${FEED}`, { headers: auth });
    await backend.next((f) => f.type === "subscribed");
    const d = await WsClient.connect(`${s.wsUrl}/ws?channel=room:3&client=k3&token=${await token({})}`);
    const join = await backend.next((f) => f.type === "message" && (f.data as FeedEvent).event === "join");
    assert.deepEqual({ ...(join.data as FeedEvent), at: 0 }, { event: "join", channel: "room:3", user: "u1", client: "k3", at: 0 });
    d.close();
    backend.close();
  });

  it("a backend cut again and again resumes by cursor and sees every event once, in order per client", async () => {
    const start = await getJson(`${s.url}/poll?channel=${FEED}`, { headers: auth });
    const seen: FeedEvent[] = [];
    let lastEventId = start.body.cursor as string;
    let stop = false;
    // The backend: an SSE stream cut every 150 ms and reopened from its last event id.
    const backend = (async () => {
      while (!stop) {
        const es = await SseStream.open(`${s.url}/sse?channel=${FEED}&lastEventId=${lastEventId}`, auth, (ev) => {
          if (ev.event === undefined && ev.data !== undefined) {
            seen.push(JSON.parse(ev.data).data);
            lastEventId = ev.id!;
          }
          assert.notEqual(ev.event, "reset", "no loss while history holds the feed");
        });
        await sleep(150);
        es.close();
      }
    })();
    const t = await token({});
    for (let i = 0; i < 12; i++) {
      const c = await WsClient.connect(`${s.wsUrl}/ws?channel=room:churn${i % 3}&client=ch${i}&token=${t}`);
      await c.next((f) => f.type === "presence");
      c.close();
      await sleep(40);
    }
    await sleep(1000);
    await waitFor(() => seen.filter((e) => e.event === "disconnect" && e.client.startsWith("ch")).length === 12, 5000);
    stop = true;
    await backend;
    const stored = (await readFeed(s, start.body.cursor)).events;
    // The backend's own streams are clients too: their last disconnect may be stored after it stopped reading.
    assert.deepEqual(seen, stored.slice(0, seen.length), "exactly the stored events, once each, in order");
    for (let i = 0; i < 12; i++) assert.deepEqual(of(seen, `ch${i}`), ["connect", `join:room:churn${i % 3}`, `leave:room:churn${i % 3}`, "disconnect"], `ch${i}`);
  });
});
