/**
 * Random HTTP input against a live server with tokens, an API key and an
 * Origin allow-list: publish bodies, query strings of /sse, /poll and /ws,
 * and header values (Last-Event-ID, Authorization, Origin) sent as raw bytes.
 * Every answer is a documented status with a registry error code, never a
 * 500, and nothing is left open afterwards.
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import fc from "fast-check";
import { ManualClock } from "../../src/index.js";
import { ERROR_CODES } from "../../src/errors.js";
import { nowSec, sign } from "../helpers/auth.js";
import { getJson, waitFor, withServer } from "../helpers/server.js";
import { anyText, params } from "./fuzz-params.js";
import { errorCode, rawExchange, type RawAnswer } from "./raw-http.js";

const SECRET = "heartline-fuzz-http-secret-0123456789ab";
const API_KEY = "fuzz-api-key";

describe("fuzz: HTTP input", () => {
  const clock = new ManualClock();
  const pool = { tokens: [] as string[], cursors: [] as string[] };

  const s = withServer(
    {
      jwtSecret: SECRET,
      apiKey: API_KEY,
      allowedOrigins: ["https://ok.example"],
      clientPublish: ["fuzz:*", "public:*"],
      maxMessageBytes: 1024,
      maxChannelsPerConnection: 4,
      pollTimeout: 5,
    },
    { clock },
  );
  before(async () => {
    const exp = nowSec() + 3600;
    pool.tokens = [
      await sign({ sub: "f", exp, channels: ["fuzz:*"], publish: ["fuzz:*"] }, SECRET),
      await sign({ sub: "f", exp, channels: ["*"] }, SECRET),
      await sign({ sub: "f", exp: nowSec() - 5, channels: ["*"] }, SECRET),
      await sign({ sub: "f", exp, channels: ["*"] }, "wrong-secret-wrong-secret-wrong-!"),
      API_KEY,
      "garbage",
    ];
    await s.hl.publish("fuzz:a", 1);
    await s.hl.publish("fuzz:b", 2);
    const c1 = (await getJson(`${s.url}/poll?channel=fuzz:a&channel=fuzz:b&token=${pool.tokens[0]}`)).body.cursor as string;
    pool.cursors = [c1, "1", "1~zzzz.abc.0", c1.replace(/\.\d+$/, ".99"), c1 + "~", "2~x"];
  });

  /** Keeps held polls moving on the ManualClock while a test waits for an answer. */
  const tick = () => clock.advance(1000);

  const channel = fc.oneof(
    fc.constantFrom("fuzz:a", "fuzz:b", "public:p", "secret:s", "", "a b", "é", "x".repeat(300)),
    fc.stringMatching(/^[A-Za-z0-9_\-:.@/*]{1,12}$/),
    fc.string({ maxLength: 10 }),
  );
  const fromPool = (name: keyof typeof pool) => fc.nat(50).map((i) => pool[name][i % pool[name].length]!);

  function assertAnswer(a: RawAnswer | { status: number; body: any }, allowed: number[], what: string): void {
    assert.notEqual(a.status, 500, `${what}: 500 ${JSON.stringify(a.body)}`);
    assert.ok(allowed.includes(a.status), `${what}: status ${a.status} not in ${allowed}: ${JSON.stringify(a.body).slice(0, 300)}`);
    if (a.status >= 400) {
      const code = "head" in a ? errorCode(a) : a.body?.error?.code;
      assert.ok(code !== undefined && code in ERROR_CODES, `${what}: error body ${JSON.stringify(a.body).slice(0, 300)}`);
      assert.equal(ERROR_CODES[code as keyof typeof ERROR_CODES].status, a.status, `${what}: ${code} with status ${a.status}`);
    }
  }

  async function assertIdle(): Promise<void> {
    await waitFor(() => s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0 && s.hl.hub.totalWaiters === 0, 5000, "connections to close");
    assert.deepEqual({ ...s.hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
  }

  it("publish bodies and credentials: 200, 400, 401, 403 or 413, never 500", async () => {
    const body = fc.oneof(
      fc.record({ channel, data: fc.jsonValue({ maxDepth: 3 }) }, { requiredKeys: [] }).map((b) => JSON.stringify(b)),
      fc.json({ maxDepth: 3 }),
      anyText({ maxLength: 60 }),
      fc.nat(6000).map((n) => JSON.stringify({ channel: "fuzz:a", data: "x".repeat(n) })),
      fc.constantFrom("", "{", "null", "[]", '{"channel":"fuzz:a"}', '{"channel":"fuzz:a","data":undefined}', '{"__proto__":{"x":1},"channel":"fuzz:a","data":1}'),
    );
    const auth = fc.oneof(fc.constant(undefined), fromPool("tokens").map((t) => `Bearer ${t}`), fc.string({ maxLength: 20 }).filter((v) => /^[\x20-\x7e]*$/.test(v)));
    await fc.assert(
      fc.asyncProperty(body, auth, fc.option(fromPool("tokens")), async (text, authorization, queryToken) => {
        const headers: Record<string, string> = { "Content-Type": "application/json" };
        if (authorization !== undefined) headers.Authorization = authorization;
        const q = queryToken === null ? "" : `?token=${encodeURIComponent(queryToken)}`;
        const r = await getJson(`${s.url}/api/publish${q}`, { method: "POST", headers, body: text });
        assertAnswer(r, [200, 400, 401, 403, 413], `POST ${text.slice(0, 80)}`);
        if (r.status === 200) {
          assert.equal(typeof r.body.epoch, "string");
          assert.ok(Number.isSafeInteger(r.body.offset) && r.body.offset >= 1);
        }
      }),
      params(40),
    );
  });

  it("query strings of /sse, /poll and /ws: documented answers only", async () => {
    const key = fc.oneof(fc.constantFrom("channel", "channel", "cursor", "lastEventId", "timeout", "token"), fc.string({ maxLength: 6 }));
    const value = fc.oneof(channel, fromPool("cursors"), fromPool("tokens"), fc.constantFrom("0", "-1", "1e309", "NaN", "0.001", " ", "5"), anyText({ maxLength: 20 }));
    const query = fc.oneof(
      fc.array(fc.tuple(key, value), { maxLength: 7 }).map((pairs) => new URLSearchParams(pairs).toString()),
      // Unencoded bytes and broken percent-escapes, as a hostile client sends them.
      fc.string({ unit: fc.constantFrom(..."channel=cursor&token%zz:~.1*é\u0001 "), maxLength: 40 }),
    );
    const path = fc.constantFrom("/sse", "/poll", "/ws");
    await fc.assert(
      fc.asyncProperty(path, query, async (p, q) => {
        const upgrade = p === "/ws" ? "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" : "Connection: close\r\n";
        const req = Buffer.from(`GET ${p}?${q.replace(/[\r\n ]/g, "%20")} HTTP/1.1\r\nHost: x\r\n${upgrade}\r\n`, "utf8");
        const a = await rawExchange(s.port, req, tick);
        assertAnswer(a, p === "/ws" ? [101, 400, 401, 403] : [200, 400, 401, 403], `GET ${p}?${q}`);
      }),
      params(100),
    );
    await assertIdle();
  });

  it("header values (Last-Event-ID, Authorization, Origin) as raw bytes: documented answers only", async () => {
    const headerText = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 40 });
    const lastEventId = fc.option(fc.oneof(fromPool("cursors"), headerText));
    const authorization = fc.option(fc.oneof(fromPool("tokens").map((t) => `Bearer ${t}`), headerText.map((t) => `Bearer ${t}`), headerText));
    const origin = fc.option(fc.oneof(fc.constantFrom("https://ok.example", "https://evil.example", "null", "http://x"), headerText));
    const target = fc.constantFrom("/sse?channel=fuzz:a", "/poll?channel=fuzz:a&channel=public:p", "/ws?channel=fuzz:b", "/api/publish", "/poll?channel=secret:s");
    await fc.assert(
      fc.asyncProperty(target, lastEventId, authorization, origin, async (t, lid, auth, org) => {
        const lines = [`${t.startsWith("/api") ? "POST" : "GET"} ${t} HTTP/1.1`, "Host: x"];
        if (lid !== null) lines.push(`Last-Event-ID: ${lid}`);
        if (auth !== null) lines.push(`Authorization: ${auth}`);
        if (org !== null) lines.push(`Origin: ${org}`);
        let body = "";
        if (t.startsWith("/ws")) lines.push("Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==");
        else lines.push("Connection: close");
        if (t.startsWith("/api")) {
          body = JSON.stringify({ channel: "fuzz:a", data: 1 });
          lines.push("Content-Type: application/json", `Content-Length: ${body.length}`);
        }
        const a = await rawExchange(s.port, Buffer.from(lines.join("\r\n") + "\r\n\r\n" + body, "latin1"), tick);
        assertAnswer(a, [101, 200, 400, 401, 403], `${t} lid=${JSON.stringify(lid)} auth=${JSON.stringify(auth)} origin=${JSON.stringify(org)}`);
      }),
      params(100),
    );
    await assertIdle();
    assert.equal((await getJson(`${s.url}/healthz`)).status, 200);
  });
});
