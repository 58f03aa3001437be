import assert from "node:assert/strict";
import type { IncomingHttpHeaders } from "node:http";
import { describe, it } from "node:test";
import { ManualClock, type Heartline } from "../../src/index.js";
import { getJson, upgrade, waitFor, withServer, WsClient, type TestServer } from "../helpers/server.js";

async function assertIdle(hl: Heartline): Promise<void> {
  await waitFor(() => hl.connections === 0 && hl.hub.totalSubscriptions === 0 && hl.hub.totalWaiters === 0, 5000, "connections to close");
  assert.deepEqual({ ...hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
}

interface Refusal {
  status: number;
  headers: Headers | IncomingHttpHeaders;
  body: any;
}

function header(r: Refusal, name: string): string | null {
  if (r.headers instanceof Headers) return r.headers.get(name);
  const v = r.headers[name.toLowerCase()];
  return v === undefined ? null : String(v);
}

function assertRefused(r: Refusal, status: number, code: string, retryAfter = false): void {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status} ${JSON.stringify(r.body)}`);
  assert.match(header(r, "content-type") ?? "", /^application\/json/);
  assert.equal(r.body.error.code, code);
  assert.equal(typeof r.body.error.message, "string");
  if (retryAfter) assert.match(header(r, "retry-after") ?? "", /^\d+$/, "Retry-After is set");
}


/** An open SSE stream (status checked), closed by `close()`. */
async function openSse(url: string, headers: Record<string, string> = {}): Promise<{ close(): void }> {
  const ac = new AbortController();
  const res = await fetch(url, { headers, signal: ac.signal });
  assert.equal(res.status, 200, `SSE ${url} answered ${res.status}`);
  void res.body?.pipeTo(new WritableStream()).catch(() => {});
  return { close: () => ac.abort() };
}

/** A poll that the server holds (nothing new after its cursor), abortable. */
async function holdPoll(s: TestServer, channel: string, headers: Record<string, string> = {}): Promise<{ abort(): Promise<void> }> {
  const { cursor } = (await getJson(`${s.url}/poll?channel=${channel}`, { headers })).body;
  const before = s.hl.connectionsByTransport.poll;
  const ac = new AbortController();
  const answer = fetch(`${s.url}/poll?channel=${channel}&cursor=${cursor}`, { headers, signal: ac.signal }).catch(() => undefined);
  await waitFor(() => s.hl.connectionsByTransport.poll === before + 1, 5000, "the poll to be held");
  return {
    abort: async () => {
      ac.abort();
      await answer;
    },
  };
}

/** The refusal a waiting poll gets (it asks with a cursor and nothing is new). */
async function refusedPoll(s: TestServer, channel: string, headers: Record<string, string> = {}): Promise<Refusal> {
  const { cursor } = (await getJson(`${s.url}/poll?channel=${channel}`, { headers })).body;
  return getJson(`${s.url}/poll?channel=${channel}&cursor=${cursor}`, { headers });
}

async function rejectedCount(s: TestServer, reason: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const m = new RegExp(`^heartline_connections_rejected_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

describe("connection limits", () => {
  describe("maxConnections", () => {
    const s = withServer({ maxConnections: 2 }, { clock: new ManualClock() });

    it("refuses a third subscriber of any transport with 503 too_many_connections and Retry-After", async () => {
      const rejectedBefore = await rejectedCount(s, "too_many_connections");
      const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=max:1`);
      await ws.next((f) => f.type === "subscribed");
      const sse = await openSse(`${s.url}/sse?channel=max:1`);
      try {
        await waitFor(() => s.hl.connections === 2);
        const up = await upgrade(s.port, "/ws?channel=max:1");
        assertRefused(up, 503, "too_many_connections", true);
        assertRefused(await getJson(`${s.url}/sse?channel=max:1`), 503, "too_many_connections", true);
        assertRefused(await refusedPoll(s, "max:1"), 503, "too_many_connections", true);
        assert.equal(s.hl.connections, 2);
        assert.equal(await rejectedCount(s, "too_many_connections"), rejectedBefore + 3);

        // Polls that answer at once hold no slot and are still served.
        const now = await getJson(`${s.url}/poll?channel=max:1`);
        assert.equal(now.status, 200);
        assert.equal((await getJson(`${s.url}/poll?channel=max:1&cursor=${now.body.cursor}&timeout=0`)).status, 200);
        // So does a poll whose cursor has something after it: it never waits.
        await s.hl.publish("max:1", "after");
        const behind = await getJson(`${s.url}/poll?channel=max:1&cursor=${now.body.cursor}`);
        assert.equal(behind.status, 200, JSON.stringify(behind.body));
        assert.deepEqual(
          behind.body.messages.map((m: { data: unknown }) => m.data),
          ["after"],
        );
        assert.equal(await rejectedCount(s, "too_many_connections"), rejectedBefore + 3);

        // Freeing one slot lets one new subscriber in: here a waiting poll, and then nobody else.
        ws.close();
        await ws.closed;
        await waitFor(() => s.hl.connections === 1, 5000, "the WebSocket slot to be freed");
        const held = await holdPoll(s, "max:1");
        assert.equal(s.hl.connections, 2);
        assertRefused(await getJson(`${s.url}/sse?channel=max:1`), 503, "too_many_connections", true);
        await held.abort();
        await waitFor(() => s.hl.connections === 1, 5000, "the poll slot to be freed");
        const ws2 = await WsClient.connect(`${s.wsUrl}/ws?channel=max:1`);
        await ws2.next((f) => f.type === "subscribed");
        assert.equal(s.hl.connectionsByTransport.ws, 1);
        ws2.close();
        await ws2.closed;
      } finally {
        ws.close();
        sse.close();
      }
      await assertIdle(s.hl);
    });
  });

  describe("maxConnectionsPerIp", () => {
    const s = withServer({ maxConnectionsPerIp: 1, trustProxy: true }, { clock: new ManualClock() });

    it("refuses a second connection from one address with 429 too_many_connections_per_ip and admits another address", async () => {
      const rejectedBefore = await rejectedCount(s, "too_many_connections_per_ip");
      const one = { "X-Forwarded-For": "198.51.100.1" };
      const two = { "X-Forwarded-For": "198.51.100.2" };
      const sse = await openSse(`${s.url}/sse?channel=ip:1`, one);
      let other: WsClient | undefined;
      try {
        await waitFor(() => s.hl.connections === 1);
        assertRefused(await getJson(`${s.url}/sse?channel=ip:1`, { headers: one }), 429, "too_many_connections_per_ip", true);
        assertRefused(await upgrade(s.port, "/ws?channel=ip:1", one), 429, "too_many_connections_per_ip", true);
        assertRefused(await refusedPoll(s, "ip:1", one), 429, "too_many_connections_per_ip", true);
        assert.equal(await rejectedCount(s, "too_many_connections_per_ip"), rejectedBefore + 3);

        other = await WsClient.connect(`${s.wsUrl}/ws?channel=ip:1`, { headers: two });
        await other.next((f) => f.type === "subscribed");
        assert.equal(s.hl.connections, 2);
        // Each address has its own budget: the second one is now full too.
        assertRefused(await upgrade(s.port, "/ws?channel=ip:1", two), 429, "too_many_connections_per_ip");

        sse.close();
        await waitFor(() => s.hl.connections === 1, 5000, "the first address's slot to be freed");
        const again = await holdPoll(s, "ip:1", one);
        assert.equal(s.hl.connections, 2);
        await again.abort();
      } finally {
        sse.close();
        other?.close();
      }
      await assertIdle(s.hl);
    });
  });

  describe("maxChannelsPerConnection", () => {
    const s = withServer({ maxChannelsPerConnection: 2 });

    it("refuses /sse, /poll and /ws with more channels than allowed with 400 too_many_channels", async () => {
      const three = "channel=ch:1&channel=ch:2&channel=ch:3";
      assertRefused(await getJson(`${s.url}/sse?${three}`), 400, "too_many_channels");
      assertRefused(await getJson(`${s.url}/poll?${three}`), 400, "too_many_channels");
      assertRefused(await upgrade(s.port, `/ws?${three}`), 400, "too_many_channels");
      assert.equal(s.hl.connections, 0);
      // Two channels (a repeated one counts once) are fine.
      const ok = await getJson(`${s.url}/poll?channel=ch:1&channel=ch:2&channel=ch:1`);
      assert.equal(ok.status, 200);
      const sse = await openSse(`${s.url}/sse?channel=ch:1&channel=ch:2`);
      await waitFor(() => s.hl.hub.totalSubscriptions === 2);
      sse.close();
      await assertIdle(s.hl);
    });

    it("answers a WebSocket subscribe past the limit with an error frame and keeps the connection", async () => {
      const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=ch:1&channel=ch:2`);
      await ws.next((f) => f.type === "subscribed" && f.channel === "ch:1");
      await ws.next((f) => f.type === "subscribed" && f.channel === "ch:2");
      ws.send({ type: "subscribe", channel: "ch:3" });
      const err = await ws.next((f) => f.type === "error");
      assert.equal(err.code, "too_many_channels");
      assert.equal(err.channel, "ch:3");
      assert.equal(s.hl.hub.totalSubscriptions, 2);
      await s.hl.publish("ch:2", "still open");
      const m = await ws.next((f) => f.type === "message");
      assert.deepEqual(m, { type: "message", channel: "ch:2", offset: 1, data: "still open" });
      ws.close();
      await ws.closed;
      await assertIdle(s.hl);
    });
  });

  describe("transports", () => {
    const wsOnly = withServer({ transports: ["ws"] });
    const sseOnly = withServer({ transports: ["sse"] });

    it("answers a disabled /sse or /poll with 404 transport_disabled", async () => {
      assertRefused(await getJson(`${wsOnly.url}/sse?channel=t:1`), 404, "transport_disabled");
      assertRefused(await getJson(`${wsOnly.url}/poll?channel=t:1`), 404, "transport_disabled");
      assertRefused(await getJson(`${sseOnly.url}/poll?channel=t:1`), 404, "transport_disabled");
      const ws = await WsClient.connect(`${wsOnly.wsUrl}/ws?channel=t:1`);
      await ws.next((f) => f.type === "subscribed");
      ws.close();
      await ws.closed;
      await assertIdle(wsOnly.hl);
    });

    it("refuses a WebSocket upgrade with 404 transport_disabled when ws is not offered", async () => {
      assertRefused(await upgrade(sseOnly.port, "/ws?channel=t:1"), 404, "transport_disabled");
      assert.equal((await upgrade(wsOnly.port, "/ws?channel=t:1")).status, 101);
      const sse = await openSse(`${sseOnly.url}/sse?channel=t:1`);
      await waitFor(() => sseOnly.hl.connectionsByTransport.sse === 1);
      sse.close();
      await assertIdle(sseOnly.hl);
      await assertIdle(wsOnly.hl);
    });
  });
});
