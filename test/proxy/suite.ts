/**
 * What every proxy configuration of the README must pass, run against the
 * real proxy (nginx.test.ts, haproxy.test.ts): WebSocket upgrades, unbuffered
 * event streams, held polls, publishing with the API key, internal routes
 * refused, and clients that leave are let go of at once.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, afterEach, before, describe, it } from "node:test";
import { Proxy, proxySkip, type ProxyKind } from "../helpers/proxies.js";
import { SseStream } from "../helpers/sse.js";
import { getJson, readAnswer, startServer, waitFor, WsClient, type HttpAnswer, type TestServer } from "../helpers/server.js";

export const API_KEY = "proxy-test-key";

/** A GET with the path sent exactly as written (fetch would normalise `//` and `%2e%2e`). */
export function rawGet(port: number, path: string, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers, agent: false });
    req.on("response", (res) => void readAnswer(res).then(resolve));
    req.on("error", reject);
    req.end();
  });
}

/** Whether an answer is Prometheus metrics text. */
function isMetrics(a: HttpAnswer): boolean {
  return a.status === 200 && typeof a.body === "string" && /heartline_/.test(a.body);
}

export function proxySuite(kind: ProxyKind, extra?: (ctx: { server: () => TestServer; proxy: () => Proxy }) => void): void {
  describe(`behind ${kind} with the README's configuration`, { skip: proxySkip(kind) }, () => {
    let server: TestServer;
    let proxy: Proxy;
    const publish = (channel: string, data: unknown, key = API_KEY) =>
      getJson(`${proxy.url}/api/publish`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) },
        body: JSON.stringify({ channel, data }),
      });

    before(async () => {
      // One connection per address, as the README recommends behind a proxy: a client the proxy let go of must not hold its slot.
      server = await startServer({ apiKey: API_KEY, trustProxy: true, maxConnectionsPerIp: 1 });
      proxy = await Proxy.start(kind, server.port);
    });
    after(async () => {
      await proxy?.stop();
      await server?.close();
    });
    afterEach(async () => {
      await waitFor(() => server.hl.connections === 0, 5000, "every connection to be released");
    });

    it("passes WebSocket upgrades, and messages over them", async () => {
      const c = await WsClient.connect(`${proxy.wsUrl}/ws?channel=ws-news`);
      await c.next((f) => f.type === "subscribed");
      assert.equal((await publish("ws-news", { n: 1 })).status, 200);
      const m = await c.next((f) => f.type === "message");
      assert.deepEqual(m.data, { n: 1 });
      c.close();
      await c.closed;
    });

    it("streams events unbuffered: each arrives while the stream stays open", async () => {
      const sse = await SseStream.open(`${proxy.url}/sse?channel=sse-news`);
      // The stream's first bytes (retry:) arrive before any message.
      await sse.until((t) => t.includes("retry:"), 5000, "the retry line");
      for (let n = 1; n <= 2; n++) {
        assert.equal((await publish("sse-news", { n })).status, 200);
        await waitFor(() => sse.messages().length === n, 5000, `event ${n} through the proxy`);
      }
      assert.deepEqual(sse.messages().map((m) => m.data), [{ n: 1 }, { n: 2 }]);
      sse.close();
    });

    it("holds a long poll through its hold and answers it, with a message or empty", async () => {
      const first = await getJson(`${proxy.url}/poll?channel=poll-news`);
      assert.equal(first.status, 200);
      const t0 = Date.now();
      const empty = await getJson(`${proxy.url}/poll?channel=poll-news&cursor=${first.body.cursor}&timeout=2`);
      assert.equal(empty.status, 200);
      assert.deepEqual(empty.body.messages, []);
      assert.ok(Date.now() - t0 >= 1800, "the poll was answered before its hold");
      const held = getJson(`${proxy.url}/poll?channel=poll-news&cursor=${first.body.cursor}&timeout=20`);
      await waitFor(() => server.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
      assert.equal((await publish("poll-news", "hi")).status, 200);
      const answered = await held;
      assert.equal(answered.status, 200);
      assert.deepEqual(answered.body.messages.map((m: { data: unknown }) => m.data), ["hi"]);
    });

    it("publishes with the API key, and refuses without it", async () => {
      const ok = await publish("pub-news", { n: 1 });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.offset, 1);
      const refused = await publish("pub-news", { n: 2 }, "");
      assert.equal(refused.status, 401);
    });

    it("keeps internal routes internal, whatever the spelling of the path", async () => {
      for (const path of ["/metrics", "//x/metrics", "/healthz/%2e%2e/metrics", "/healthz/../metrics", "/x/..%2fmetrics", "/dashboard", "/api/channels/pub-news"]) {
        const a = await rawGet(proxy.port, path);
        assert.ok(!isMetrics(a), `${path} returned metrics through ${kind}`);
        assert.notEqual(a.status, 200, `${path} answered 200 through ${kind}: ${JSON.stringify(a.body).slice(0, 200)}`);
      }
      // Heartline itself still serves them on its own port.
      assert.ok(isMetrics(await rawGet(server.port, "/metrics")));
    });

    it("lets go of a closed event stream at once, so the client's reconnection is admitted", async () => {
      for (let i = 0; i < 2; i++) {
        const sse = await SseStream.open(`${proxy.url}/sse?channel=reload`);
        await waitFor(() => server.hl.connectionsByTransport.sse === 1, 5000, "the stream to be counted");
        sse.close();
        // A page reload: the next stream comes at once and must not get 429 (--max-connections-per-ip 1).
        await waitFor(() => server.hl.connectionsByTransport.sse === 0, 3000, "the closed stream to be released");
      }
    });

    it("lets go of a held poll whose client has gone", async () => {
      const first = await getJson(`${proxy.url}/poll?channel=gone`);
      const ac = new AbortController();
      const held = fetch(`${proxy.url}/poll?channel=gone&cursor=${first.body.cursor}&timeout=20`, { signal: ac.signal }).catch(() => undefined);
      await waitFor(() => server.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
      ac.abort();
      await held;
      await waitFor(() => server.hl.connectionsByTransport.poll === 0, 3000, "the abandoned poll to be released");
    });

    extra?.({ server: () => server, proxy: () => proxy });
  });
}
