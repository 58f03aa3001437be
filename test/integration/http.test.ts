import assert from "node:assert/strict";
import { request } from "node:http";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { ManualClock, type Heartline } from "../../src/index.js";
import { SseStream } from "../helpers/sse.js";
import { getJson, publishHttp, readAnswer, upgrade, waitFor, withServer, WsClient, type HttpAnswer } from "../helpers/server.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function assertIdle(hl: Heartline): Promise<void> {
  await waitFor(() => hl.connections === 0 && hl.hub.totalSubscriptions === 0 && hl.hub.totalWaiters === 0, 5000, "connections to close");
  assert.deepEqual({ ...hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
}

function assertError(r: { status: number; headers: Headers; body: any }, status: number, code: string): void {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status} ${JSON.stringify(r.body)}`);
  assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
  assert.deepEqual(Object.keys(r.body), ["error"]);
  assert.equal(r.body.error.code, code);
  assert.equal(typeof r.body.error.message, "string");
  assert.ok(r.body.error.message.length > 0);
}

/** One value of a Prometheus sample, or undefined when absent. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function metricsText(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
  return res.text();
}

/** A request through node:http, writing the body as given (chunked when no Content-Length), stopping once answered. */
function httpRequest(
  port: number,
  opts: { method?: string; path: string; headers?: Record<string, string | number>; chunks?: Buffer[]; chunkGapMs?: number },
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request({ host: "127.0.0.1", port, method: opts.method ?? "GET", path: opts.path, headers: opts.headers }, (res) => {
      answered = true;
      void readAnswer(res).then((a) => {
        resolve(a);
        req.destroy();
      });
    });
    req.on("error", (err) => {
      if (!answered) reject(err);
    });
    void (async () => {
      for (const chunk of opts.chunks ?? []) {
        if (answered || req.destroyed) return;
        if (!req.write(chunk)) await new Promise((r) => req.once("drain", r).once("close", r));
        if (opts.chunkGapMs) await sleep(opts.chunkGapMs);
      }
      if (!answered && !req.destroyed) req.end();
    })();
  });
}


/**
 * Talks raw bytes over TCP: writes `chunks` `gapMs` apart (stopping once the
 * server closes), collects what comes back, and says when the socket closed.
 */
function rawExchange(
  port: number,
  chunks: Array<string | Buffer>,
  { gapMs = 0, maxMs = 5000 }: { gapMs?: number; maxMs?: number } = {},
): Promise<{ text: string; closed: boolean; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect(port, "127.0.0.1");
    let text = "";
    let closed = false;
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (text += d));
    socket.on("error", () => {});
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closed: false, ms: Date.now() - started });
    }, maxMs);
    socket.on("close", () => {
      closed = true;
      clearTimeout(timer);
      resolve({ text, closed: true, ms: Date.now() - started });
    });
    socket.on("connect", async () => {
      for (const c of chunks) {
        if (closed || socket.destroyed) return;
        socket.write(c);
        if (gapMs) await sleep(gapMs);
      }
    });
  });
}

describe("HTTP API", () => {
  const clock = new ManualClock();
  const s = withServer({ maxMessageBytes: 1024, heartbeatInterval: 25 }, { clock });

  describe("POST /api/publish", () => {
    it("stores a message and answers 200 {channel, epoch, offset}", async () => {
      const r1 = await publishHttp(s, "pub:ok", { hello: "world" });
      assert.equal(r1.status, 200);
      assert.match(r1.headers.get("content-type") ?? "", /^application\/json/);
      assert.deepEqual(Object.keys(r1.body), ["channel", "epoch", "offset"]);
      assert.equal(r1.body.channel, "pub:ok");
      assert.equal(r1.body.offset, 1);
      assert.match(r1.body.epoch, /^[A-Za-z0-9_-]+$/);
      const r2 = await publishHttp(s, "pub:ok", null);
      assert.deepEqual(r2.body, { channel: "pub:ok", epoch: r1.body.epoch, offset: 2 });
      const info = await getJson(`${s.url}/api/channels/pub:ok`);
      assert.equal(info.body.offset, 2);
    });

    it("refuses a body that is not JSON with 400 bad_json", async () => {
      for (const body of ["{not json", "", '{"channel":"x",', "undefined"]) {
        const r = await getJson(`${s.url}/api/publish`, { method: "POST", headers: { "Content-Type": "application/json" }, body });
        assertError(r, 400, "bad_json");
      }
    });

    it("refuses a body that is not an object, or has no data, with 400 bad_request", async () => {
      for (const body of ["[1,2]", '"text"', "null", "42", "true", '{"channel":"pub:nodata"}']) {
        const r = await getJson(`${s.url}/api/publish`, { method: "POST", headers: { "Content-Type": "application/json" }, body });
        assertError(r, 400, "bad_request");
      }
      assert.equal((await getJson(`${s.url}/api/channels/pub:nodata`)).body.offset, 0, "nothing was stored");
    });

    it("refuses invalid channel names with 400 bad_channel and accepts the longest valid one", async () => {
      for (const channel of ["", "x".repeat(256), "has space", "café", "日本語", "tab\there", 42, null, ["a"], undefined]) {
        assertError(await publishHttp(s, channel, 1), 400, "bad_channel");
      }
      const longest = "L".repeat(255);
      const ok = await publishHttp(s, longest, 1);
      assert.equal(ok.status, 200);
      assert.equal(ok.body.channel, longest);
      assert.equal((await publishHttp(s, "A-z_0-9:.@/ok", 1)).status, 200);
    });

    it("refuses data larger than maxMessageBytes with 413 message_too_large, and accepts data of exactly the limit", async () => {
      const atLimit = "x".repeat(1022); // 1024 bytes as JSON
      assert.equal((await publishHttp(s, "pub:size", atLimit)).status, 200);
      assertError(await publishHttp(s, "pub:size", atLimit + "x"), 413, "message_too_large");
      assertError(await publishHttp(s, "pub:size", { many: "é".repeat(600) }), 413, "message_too_large");
      assert.equal((await getJson(`${s.url}/api/channels/pub:size`)).body.offset, 1);
    });

    it("refuses a body far over the limit, with Content-Length or chunked, with 413 and keeps serving", async () => {
      const big = Buffer.alloc(2 * 1024 * 1024, "a");
      const declared = await httpRequest(s.port, {
        method: "POST",
        path: "/api/publish",
        headers: { "Content-Type": "application/json", "Content-Length": big.length },
        chunks: [big],
      });
      assert.equal(declared.status, 413);
      assert.equal(declared.body.error.code, "message_too_large");

      const chunk = Buffer.alloc(64 * 1024, "b");
      const chunked = await httpRequest(s.port, {
        method: "POST",
        path: "/api/publish",
        headers: { "Content-Type": "application/json", "Transfer-Encoding": "chunked" },
        chunks: [Buffer.from('{"channel":"pub:big","data":"'), ...Array.from({ length: 64 }, () => chunk)],
        chunkGapMs: 1,
      });
      assert.equal(chunked.status, 413);
      assert.equal(chunked.body.error.code, "message_too_large");

      assert.equal((await getJson(`${s.url}/healthz`)).status, 200);
      assert.equal((await publishHttp(s, "pub:big", "small")).status, 200);
      assert.equal((await getJson(`${s.url}/api/channels/pub:big`)).body.offset, 1);
    });

    it("answers GET /api/publish with 405 method_not_allowed and an Allow header", async () => {
      const r = await getJson(`${s.url}/api/publish`);
      assertError(r, 405, "method_not_allowed");
      assert.equal(r.headers.get("allow"), "POST");
    });
  });

  describe("routes", () => {
    it("answers unknown paths with 404 not_found as JSON", async () => {
      for (const path of ["/nope", "/api/nope", "/api/channelz", "/api/history", "/sse/extra", "/ws/x"]) {
        assertError(await getJson(`${s.url}${path}`), 404, "not_found");
      }
    });

    it("serves /healthz and /readyz with 200", async () => {
      const h = await getJson(`${s.url}/healthz`);
      assert.equal(h.status, 200);
      assert.deepEqual(h.body, { status: "ok" });
      const r = await getJson(`${s.url}/readyz`);
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { status: "ready" });
    });

    it("describes a channel at /api/channels/<name>, counting the WebSocket and SSE subscribers (of every node; one here)", async () => {
      const empty = await getJson(`${s.url}/api/channels/info:1`);
      assert.equal(empty.status, 200);
      assert.deepEqual(Object.keys(empty.body), ["channel", "epoch", "offset", "subscribers"]);
      assert.deepEqual(empty.body, { channel: "info:1", epoch: empty.body.epoch, offset: 0, subscribers: 0 });

      const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=info:1`);
      await ws.next((f) => f.type === "subscribed");
      const sseAbort = new AbortController();
      const sse = await fetch(`${s.url}/sse?channel=info:1`, { signal: sseAbort.signal });
      assert.equal(sse.status, 200);
      const { cursor } = (await getJson(`${s.url}/poll?channel=info:1`)).body;
      const pollAbort = new AbortController();
      const held = fetch(`${s.url}/poll?channel=info:1&cursor=${cursor}`, { signal: pollAbort.signal }).catch(() => undefined);
      try {
        await waitFor(() => s.hl.hub.subscriberCount("info:1") === 2 && s.hl.connectionsByTransport.poll === 1);
        for (let i = 0; i < 3; i++) await s.hl.publish("info:1", i);
        const during = await getJson(`${s.url}/api/channels/info%3A1`);
        assert.deepEqual(during.body, { channel: "info:1", epoch: empty.body.epoch, offset: 3, subscribers: 2 });
      } finally {
        ws.close();
        sseAbort.abort();
        pollAbort.abort();
        await held;
      }
      await assertIdle(s.hl);
      assert.equal((await getJson(`${s.url}/api/channels/info:1`)).body.subscribers, 0);
    });

    it("refuses a bad channel name at /api/channels/ with 400 bad_channel", async () => {
      for (const path of ["bad%20name", "%E0%A4%A", "x".repeat(256), "caf%C3%A9"]) {
        assertError(await getJson(`${s.url}/api/channels/${path}`), 400, "bad_channel");
      }
    });
  });

  describe("GET /metrics", () => {
    it("exposes every documented family as Prometheus text, with process memory", async () => {
      const text = await metricsText(s.url);
      for (const name of [
        "heartline_connections",
        "heartline_messages_published_total",
        "heartline_messages_delivered_total",
        "heartline_heartbeats_sent_total",
        "heartline_slow_consumer_drops_total",
        "heartline_connections_rejected_total",
        "heartline_poll_waits_total",
        "heartline_broker_errors_total",
      ]) {
        assert.match(text, new RegExp(`^# TYPE ${name} (gauge|counter)$`, "m"), name);
      }
      for (const t of ["ws", "sse", "poll"]) assert.equal(metric(text, "heartline_connections", { transport: t }), 0);
      const rss = metric(text, "heartline_process_resident_memory_bytes");
      assert.ok(rss !== undefined && rss > 1_000_000, `process memory is reported (${rss})`);
      assert.ok((metric(text, "heartline_nodejs_heap_size_used_bytes") ?? 0) > 0);
    });

    it("counts connections, published and delivered messages and heartbeats as they happen", async () => {
      const before = await metricsText(s.url);
      const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=met:1`);
      await ws.next((f) => f.type === "subscribed");
      const sse = await SseStream.open(`${s.url}/sse?channel=met:1`);
      try {
        await waitFor(() => s.hl.hub.subscriberCount("met:1") === 2);
        const during = await metricsText(s.url);
        assert.equal(metric(during, "heartline_connections", { transport: "ws" }), 1);
        assert.equal(metric(during, "heartline_connections", { transport: "sse" }), 1);
        for (let i = 0; i < 3; i++) assert.equal((await publishHttp(s, "met:1", i)).status, 200);
        await ws.next((f) => f.type === "message" && f.offset === 3);
        await sse.until((t) => t.includes('"offset":3'));
        // A heartbeat interval of silence: both connections get a heartbeat.
        clock.advance(25_000);
        await ws.next((f) => f.type === "ping");
        await sse.until((t) => t.includes("event: ping"));
        const after = await metricsText(s.url);
        const delta = (name: string, labels?: Record<string, string>) => (metric(after, name, labels) ?? 0) - (metric(before, name, labels) ?? 0);
        assert.equal(delta("heartline_messages_published_total"), 3);
        assert.equal(delta("heartline_messages_delivered_total", { transport: "ws" }), 3);
        assert.equal(delta("heartline_messages_delivered_total", { transport: "sse" }), 3);
        assert.equal(delta("heartline_heartbeats_sent_total", { transport: "ws" }), 1);
        assert.equal(delta("heartline_heartbeats_sent_total", { transport: "sse" }), 1);
      } finally {
        ws.close();
        sse.close();
        await sse.ended;
      }
      await assertIdle(s.hl);
      const idle = await metricsText(s.url);
      for (const t of ["ws", "sse", "poll"]) assert.equal(metric(idle, "heartline_connections", { transport: t }), 0);
    });
  });

  describe("CORS", () => {
    it("answers a preflight with 204 and the allowed methods and headers", async () => {
      const res = await fetch(`${s.url}/api/publish`, {
        method: "OPTIONS",
        headers: { Origin: "https://any.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type" },
      });
      assert.equal(res.status, 204);
      assert.equal(res.headers.get("access-control-allow-origin"), "*");
      assert.match(res.headers.get("access-control-allow-methods") ?? "", /POST/);
      const allowed = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase();
      for (const h of ["authorization", "content-type", "last-event-id"]) assert.ok(allowed.includes(h), h);
    });

    it("adds Access-Control-Allow-Origin to answers for a request with an Origin", async () => {
      const headers = { Origin: "https://any.example" };
      const poll = await fetch(`${s.url}/poll?channel=cors:1`, { headers });
      assert.equal(poll.headers.get("access-control-allow-origin"), "*");
      const pub = await publishHttp(s, "cors:1", 1, headers);
      assert.equal(pub.headers.get("access-control-allow-origin"), "*");
      const err = await getJson(`${s.url}/poll`, { headers });
      assert.equal(err.status, 400);
      assert.equal(err.headers.get("access-control-allow-origin"), "*", "errors are readable cross-origin too");
      const ac = new AbortController();
      const sse = await fetch(`${s.url}/sse?channel=cors:1`, { headers, signal: ac.signal });
      assert.equal(sse.headers.get("access-control-allow-origin"), "*");
      ac.abort();
      await assertIdle(s.hl);
    });
  });

  describe("publishing without an API key", () => {
    const proxied = withServer({ trustProxy: true });

    it("refuses a non-loopback address with 403 forbidden and accepts loopback through no proxy", async () => {
      assertError(await publishHttp(proxied, "nokey:1", 1, { "X-Forwarded-For": "203.0.113.5" }), 403, "forbidden");
      assertError(await publishHttp(proxied, "nokey:1", 1, { "X-Forwarded-For": "127.0.0.1, 203.0.113.5" }), 403, "forbidden");
      // A forwarded request is never loopback, whatever address it names (see test/integration/client-address.test.ts).
      assertError(await publishHttp(proxied, "nokey:1", 1, { "X-Forwarded-For": "127.0.0.1" }), 403, "forbidden");
      assert.equal((await getJson(`${proxied.url}/api/channels/nokey:1`)).body.offset, 0);
      assert.equal((await publishHttp(proxied, "nokey:1", 1)).status, 200);
      assert.equal((await getJson(`${proxied.url}/api/channels/nokey:1`)).body.offset, 1);
    });
  });

  describe("publishing with an API key", () => {
    const keyed = withServer({ apiKey: "s3cret-key", trustProxy: true });

    it("answers 401 unauthorized without the key or with a wrong one, and 200 with the right one from anywhere", async () => {
      assertError(await publishHttp(keyed, "key:1", 1), 401, "unauthorized");
      assertError(await publishHttp(keyed, "key:1", 1, { Authorization: "Bearer wrong" }), 401, "unauthorized");
      assertError(await publishHttp(keyed, "key:1", 1, { Authorization: "Bearer s3cret-key-and-more" }), 401, "unauthorized");
      assertError(await publishHttp(keyed, "key:1", 1, { Authorization: "Basic s3cret-key" }), 401, "unauthorized");
      assert.equal((await getJson(`${keyed.url}/api/channels/key:1`, { headers: { Authorization: "Bearer s3cret-key" } })).body.offset, 0);
      const ok = await publishHttp(keyed, "key:1", 1, { Authorization: "Bearer s3cret-key" });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.offset, 1);
      const remote = await publishHttp(keyed, "key:1", 2, { Authorization: "Bearer s3cret-key", "X-Forwarded-For": "203.0.113.5" });
      assert.equal(remote.status, 200);
    });
  });

  describe("allowedOrigins", () => {
    const strict = withServer({ allowedOrigins: ["https://a.example"] });

    it("echoes an allowed Origin", async () => {
      const res = await fetch(`${strict.url}/poll?channel=o:1`, { headers: { Origin: "https://a.example" } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("access-control-allow-origin"), "https://a.example");
      const pre = await fetch(`${strict.url}/api/publish`, { method: "OPTIONS", headers: { Origin: "https://a.example" } });
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get("access-control-allow-origin"), "https://a.example");
      const ws = await WsClient.connect(`${strict.wsUrl}/ws?channel=o:1`, { headers: { Origin: "https://a.example" } });
      await ws.next((f) => f.type === "subscribed");
      ws.close();
      await ws.closed;
      await assertIdle(strict.hl);
    });

    it("refuses another Origin with 403 origin_not_allowed on /sse, /poll, /api/publish, preflight and the WebSocket upgrade", async () => {
      const before = metric(await metricsText(strict.url), "heartline_connections_rejected_total", { reason: "origin_not_allowed" }) ?? 0;
      const headers = { Origin: "https://b.example" };
      assertError(await getJson(`${strict.url}/sse?channel=o:1`, { headers }), 403, "origin_not_allowed");
      assertError(await getJson(`${strict.url}/poll?channel=o:1`, { headers }), 403, "origin_not_allowed");
      assertError(await publishHttp(strict, "o:1", 1, headers), 403, "origin_not_allowed");
      const pre = await getJson(`${strict.url}/api/publish`, { method: "OPTIONS", headers });
      assertError(pre, 403, "origin_not_allowed");
      assert.equal(pre.headers.get("access-control-allow-origin"), null);
      const up = await upgrade(strict.port, "/ws?channel=o:1", headers);
      assert.equal(up.status, 403);
      assert.equal(up.body.error.code, "origin_not_allowed");
      assert.equal((await getJson(`${strict.url}/api/channels/o:1`)).body.offset, 0, "nothing was published");
      const after = metric(await metricsText(strict.url), "heartline_connections_rejected_total", { reason: "origin_not_allowed" }) ?? 0;
      assert.equal(after - before, 4, "the refused /sse, /poll, /api/publish and upgrade are counted");
      await assertIdle(strict.hl);
    });
  });
});

describe("hostile HTTP", () => {
  const s = withServer({}, { headersTimeoutMs: 500 });

  it("closes a connection whose headers trickle in too slowly, while an open SSE stream lives on", async () => {
    const sse = await SseStream.open(`${s.url}/sse?channel=slow:1`);
    try {
      await waitFor(() => s.hl.hub.subscriberCount("slow:1") === 1);
      const slow = await rawExchange(s.port, ["GET /poll?channel=slow:1 HTTP/1.1\r\nHost: x\r\n", ..."X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], {
        gapMs: 100,
        maxMs: 6000,
      });
      assert.ok(slow.closed, "the server closed the slow connection");
      assert.ok(slow.ms < 4000, `closed after ${slow.ms} ms`);
      assert.match(slow.text, /^HTTP\/1\.1 408 /);
      assert.equal(JSON.parse(slow.text.slice(slow.text.indexOf("\r\n\r\n") + 4)).error.code, "request_timeout");
      // The stream opened before is still served.
      assert.equal(s.hl.connectionsByTransport.sse, 1);
      await s.hl.publish("slow:1", "still here");
      await sse.until((t) => t.includes('"data":"still here"'), 3000, "the message on the SSE stream");
    } finally {
      sse.close();
      await sse.ended;
    }
    await assertIdle(s.hl);
  });

  it("answers headers over 16 KB with 431 headers_too_large and keeps serving", async () => {
    const r = await rawExchange(s.port, [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20 * 1024)}\r\n\r\n`]);
    assert.match(r.text, /^HTTP\/1\.1 431 /);
    assert.equal(JSON.parse(r.text.slice(r.text.indexOf("\r\n\r\n") + 4)).error.code, "headers_too_large");
    assert.equal((await getJson(`${s.url}/healthz`)).status, 200);
  });

  it("answers bytes that are not HTTP with 400 bad_request and a close, and keeps serving", async () => {
    for (const garbage of [
      Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a]),
      "HELLO THERE\r\n\r\n",
      "GET / HTTP/9.9\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
      "\r\n\r\n\0\0\0\0",
    ]) {
      const r = await rawExchange(s.port, [garbage], { maxMs: 3000 });
      assert.ok(r.closed, `closed after ${JSON.stringify(garbage.toString().slice(0, 20))}`);
      assert.match(r.text, /^HTTP\/1\.1 400 /, `answered ${JSON.stringify(r.text.slice(0, 40))}`);
      assert.equal(JSON.parse(r.text.slice(r.text.indexOf("\r\n\r\n") + 4)).error.code, "bad_request");
    }
    assert.equal((await getJson(`${s.url}/healthz`)).status, 200);
  });

  it("refuses every malformed cursor on /poll with 400 bad_cursor", async () => {
    const randomCursors = Array.from({ length: 20 }, () =>
      Array.from({ length: 1 + Math.floor(Math.random() * 40) }, () => String.fromCharCode(33 + Math.floor(Math.random() * 94))).join(""),
    ).filter((c) => !/^1(~|$)/.test(c));
    const cursors = [
      ...randomCursors,
      "x".repeat(8000),
      "1" + "~abcdefghij.e.1".repeat(400),
      "日本語",
      "1~é.e.1",
      "1~",
      "1~~",
      "1~a.b.c",
      "1~a.b",
      "1~a..1",
      "2~abc.def.1",
      "0",
      "~abc.def.1",
      "1~abc.def.-1",
      "1~abc.def.01",
      "1~abc.def.1.5",
      "1~abc.def.12345678901234567890",
      "1~abc.def.99999999999999999",
      `1~abc.${"e".repeat(65)}.1`,
      "1~abc.d$f.1",
      "null",
      "%00",
    ];
    for (const c of cursors) {
      const r = await getJson(`${s.url}/poll?channel=cur:1&cursor=${encodeURIComponent(c)}`);
      assert.equal(r.status, 400, `cursor ${JSON.stringify(c.slice(0, 40))} answered ${r.status}`);
      assert.equal(r.body.error.code, "bad_cursor", JSON.stringify(c.slice(0, 40)));
    }
    // The same on the other transports' resume parameters.
    assertError(await getJson(`${s.url}/sse?channel=cur:1&lastEventId=1~a.b.c`), 400, "bad_cursor");
    const up = await upgrade(s.port, "/ws?channel=cur:1&cursor=1~a.b.c");
    assert.equal(up.status, 400);
    assert.equal(up.body.error.code, "bad_cursor");
  });

  it("holds no connection after all of it and still serves", async () => {
    await assertIdle(s.hl);
    assert.equal(s.hl.connections, 0);
    assert.equal((await getJson(`${s.url}/healthz`)).status, 200);
    const start = (await getJson(`${s.url}/poll?channel=after:1`)).body.cursor;
    assert.equal((await publishHttp(s, "after:1", "fine")).status, 200);
    const r = await getJson(`${s.url}/poll?channel=after:1&cursor=${start}`);
    assert.deepEqual(r.body.messages, [{ channel: "after:1", offset: 1, data: "fine" }]);
  });
});
