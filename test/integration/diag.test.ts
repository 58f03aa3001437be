/** `GET /diag`: the silent holds and event streams `heartline doctor` measures a path with. */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import WebSocket from "ws";
import { getJson, startServer, upgrade, waitFor, withServer, type TestServer } from "../helpers/server.js";
import { h2Request, h2Session, h2Sse, makeCert } from "../helpers/tls.js";

/** Reads a streamed answer, noting when each chunk arrived (ms after the request). */
async function timedBody(url: string, init?: RequestInit): Promise<{ status: number; headers: Headers; chunks: Array<{ at: number; text: string }>; text: string }> {
  const t0 = Date.now();
  const res = await fetch(url, init);
  const chunks: Array<{ at: number; text: string }> = [];
  const decoder = new TextDecoder();
  const reader = res.body!.getReader();
  for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push({ at: Date.now() - t0, text: decoder.decode(r.value, { stream: true }) });
  return { status: res.status, headers: res.headers, chunks, text: chunks.map((c) => c.text).join("") };
}

/** Opens a silent hold and resolves once its first line arrived; `close` cuts it. */
async function openHold(server: TestServer, hold: number, headers: Record<string, string> = {}): Promise<{ status: number; body?: any; close(): void }> {
  const ac = new AbortController();
  const res = await fetch(`${server.url}/diag?mode=silent&hold=${hold}`, { headers, signal: ac.signal });
  if (res.status !== 200) return { status: res.status, body: await res.json(), close: () => {} };
  const reader = res.body!.getReader();
  await reader.read();
  return { status: 200, close: () => ac.abort() };
}

describe("GET /diag", () => {
  // A heartbeat every 0.3 s: a silent hold must carry none of them.
  const server = withServer({ heartbeatInterval: 0.3, pollTimeout: 7, trustProxy: true }, { tickMs: 50 });

  it("mode=silent writes one line at once, nothing during the hold (no heartbeat), then a last line", async () => {
    const r = await timedBody(`${server.url}/diag?mode=silent&hold=1.2`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-heartline-heartbeat-interval"), "0.3");
    assert.equal(r.headers.get("x-heartline-poll-timeout"), "7");
    assert.equal(r.headers.get("x-accel-buffering"), "no");
    const lines = r.text.trim().split("\n");
    assert.equal(lines.length, 2, r.text);
    assert.equal(lines[0], "open hold=1.2");
    assert.match(lines[1]!, /^end held=1\.\d{3}$/);
    // The last line came at the end of the hold, well after the first.
    const last = r.chunks.find((c) => c.text.includes("end held="))!;
    assert.ok(last.at >= 1100, `the end came after ${last.at} ms`);
    assert.ok(r.chunks[0]!.at < 1000);
    await waitFor(() => server.hl.connections === 0, 2000, "the hold's slot to be released");
  });

  it("mode=events writes count SSE events interval ms apart, with /sse's headers, then an end event", async () => {
    const r = await timedBody(`${server.url}/diag?mode=events&count=3&interval=200`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type")!, /^text\/event-stream/);
    assert.equal(r.headers.get("x-accel-buffering"), "no");
    const events = r.chunks.filter((c) => c.text.includes("event: diag"));
    assert.deepEqual(
      [...r.text.matchAll(/"n":(\d+)/g)].map((m) => Number(m[1])),
      [1, 2, 3],
    );
    assert.match(r.text, /event: end\ndata: \{"sent":3\}/);
    // Apart, not together: the last came at least 300 ms after the first.
    assert.ok(events.length >= 2 && events.at(-1)!.at - events[0]!.at >= 300, JSON.stringify(r.chunks.map((c) => c.at)));
  });

  it("mode=silent as a WebSocket: a frame at once, none during the hold, a last frame and a clean close; counted as a connection", async () => {
    const ws = new WebSocket(`${server.wsUrl}/diag?mode=silent&hold=1`);
    const frames: unknown[] = [];
    ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
    await once(ws, "open");
    await waitFor(() => frames.length === 1, 2000, "the open frame");
    assert.deepEqual(frames[0], { type: "diag", state: "open", hold: 1 });
    assert.equal(server.hl.connectionsByTransport.ws, 1);
    const [code] = (await once(ws, "close")) as [number];
    assert.equal(code, 1000);
    assert.deepEqual(frames, [{ type: "diag", state: "open", hold: 1 }, { type: "diag", state: "end" }]);
    await waitFor(() => server.hl.connections === 0, 2000, "the WebSocket's slot to be released");
  });

  for (const [query, pattern] of [
    ["mode=silent&hold=abc", /hold must be a number of seconds from 0 to 120/],
    ["mode=silent&hold=-1", /hold/],
    ["mode=silent&hold=1e9", /hold/],
    ["mode=silent&hold=121", /hold/],
    ["mode=silent&hold=", /hold/],
    ["mode=silent", /hold/],
    ["mode=events&count=1000000", /count must be an integer from 1 to 20/],
    ["mode=events&count=0", /count/],
    ["mode=events&interval=1", /interval must be an integer from 100 to 5000/],
    ["mode=events&interval=2.5", /interval/],
    ["mode=nap", /mode must be silent or events/],
    ["", /mode/],
  ] as const) {
    it(`answers 400 bad_request to ${query || "no parameters"}`, async () => {
      const r = await getJson(`${server.url}/diag?${query}`);
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, "bad_request");
      assert.match(r.body.error.message, pattern);
    });
  }

  it("answers a HEAD at once with the headers, holding nothing", async () => {
    const t0 = Date.now();
    const res = await fetch(`${server.url}/diag?mode=silent&hold=100`, { method: "HEAD" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-heartline-diag"), "silent");
    assert.equal(res.headers.get("x-heartline-poll-timeout"), "7");
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(server.hl.connections, 0);
  });

  it("refuses a bad hold on a WebSocket upgrade with 400 too", async () => {
    const a = await upgrade(server.port, "/diag?mode=silent&hold=1e9");
    assert.equal(a.status, 400);
    assert.equal(a.body.error.code, "bad_request");
    const b = await upgrade(server.port, "/diag?mode=events");
    assert.equal(b.status, 400);
  });

  it("holds at most 4 per address and 32 in all (429 too_many_diagnostics beyond), and frees every slot on close", async () => {
    const holds: Array<{ close(): void }> = [];
    try {
      for (let i = 0; i < 4; i++) {
        const h = await openHold(server, 60, { "X-Forwarded-For": "10.0.0.1" });
        assert.equal(h.status, 200);
        holds.push(h);
      }
      const fifth = await openHold(server, 60, { "X-Forwarded-For": "10.0.0.1" });
      assert.equal(fifth.status, 429);
      assert.equal(fifth.body.error.code, "too_many_diagnostics");
      assert.match(fifth.body.error.message, /4 per address/);
      // Other addresses, up to 32 in all.
      for (let i = 0; i < 28; i++) {
        const h = await openHold(server, 60, { "X-Forwarded-For": `10.0.1.${i}` });
        assert.equal(h.status, 200, `hold ${i + 5}`);
        holds.push(h);
      }
      assert.equal(server.hl.connections, 32);
      const over = await openHold(server, 60, { "X-Forwarded-For": "10.0.2.1" });
      assert.equal(over.status, 429);
      assert.match(over.body.error.message, /32 per server/);
    } finally {
      for (const h of holds) h.close();
    }
    await waitFor(() => server.hl.connections === 0, 5000, "every hold to be released");
    // Free again.
    const again = await openHold(server, 60, { "X-Forwarded-For": "10.0.0.1" });
    assert.equal(again.status, 200);
    again.close();
    await waitFor(() => server.hl.connections === 0, 5000, "the last hold to be released");
  });
});

describe("GET /diag and the server's limits", () => {
  let server: TestServer;
  after(() => server?.close());

  it("counts holds as connections: --max-connections refuses the next one", async () => {
    server = await startServer({ maxConnections: 2 });
    const a = await openHold(server, 60);
    const b = await openHold(server, 60);
    assert.equal(server.hl.connections, 2);
    const c = await openHold(server, 60);
    assert.equal(c.status, 503);
    assert.equal(c.body.error.code, "too_many_connections");
    a.close();
    b.close();
    await waitFor(() => server.hl.connections === 0, 5000, "the holds to be released");
  });

  it("ends every hold when the server drains", async () => {
    const res = await fetch(`${server.url}/diag?mode=silent&hold=100`);
    const text = res.text();
    await waitFor(() => server.hl.connections === 1, 2000, "the hold");
    const t0 = Date.now();
    await server.hl.close(5);
    assert.match(await text, /^open hold=100\nend held=/);
    assert.ok(Date.now() - t0 < 4000, "drain did not wait for the hold");
  });

  it("answers 404 with --path-diagnostics false", async () => {
    const off = await startServer({ pathDiagnostics: false });
    try {
      const r = await getJson(`${off.url}/diag?mode=silent&hold=1`);
      assert.equal(r.status, 404);
      assert.equal(r.body.error.code, "not_found");
      assert.match(r.body.error.message, /--path-diagnostics false/);
    } finally {
      await off.close();
    }
  });
});

describe("GET /diag over HTTP/2", () => {
  const dir = mkdtempSync(join(tmpdir(), "heartline-diag-tls-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = makeCert(dir, "diag");
  const server = withServer({ tlsCert: cert.certPath, tlsKey: cert.keyPath }, { tickMs: 50 });

  it("serves both modes on streams of one session, and gives every slot and the socket back", async () => {
    const session = await h2Session(server.port, cert.cert);
    try {
      const events = h2Sse(session, "/diag?mode=events&count=3&interval=100");
      const silent = h2Request(session, { ":path": "/diag?mode=silent&hold=0.5" });
      await waitFor(() => server.hl.connections === 2, 2000, "both holds counted as connections");
      const end = await events.next((e) => e.event === "end", 5000);
      assert.deepEqual(JSON.parse(end.data), { sent: 3 });
      assert.deepEqual(events.items.filter((e) => e.event === "diag").map((e) => JSON.parse(e.data).n), [1, 2, 3]);
      assert.equal(events.headers["x-heartline-diag"], "events");
      const s = await silent;
      assert.equal(s.status, 200);
      assert.match(s.body, /^open hold=0\.5\nend held=0\.\d{3}\n$/);
      await waitFor(() => server.hl.connections === 0, 5000, "the holds to be released");
      // The session is still open, idle: it counts as one pending socket again.
      assert.equal(server.hl.socketCounts.pending, 1);
    } finally {
      session.close();
    }
    await waitFor(() => server.hl.socketCounts.open === 0, 5000, "the session's socket to close");
  });
});
