/**
 * The request that follows a long poll's answer on a kept-alive connection
 * of a server made by listen(): another poll is read by Heartline itself,
 * anything else by node:http, and either way it is answered exactly as on a
 * fresh connection.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { nowSec, sign } from "../helpers/auth.js";
import { afterAPoll, answerTo, pollRequest, RawConnection } from "../helpers/raw-connection.js";
import { startServer, waitFor, withServer } from "../helpers/server.js";

const SECRET = "next-request-secret-of-at-least-32-bytes";

describe("the request after a long poll's answer", () => {
  const s = withServer({ pollTimeout: 30, jwtSecret: SECRET, allowedOrigins: ["http://allowed.test"] });

  /** 'connection' events of every server: node:http setting itself up on a socket (at accept, or when a socket is handed to it). */
  let connections = 0;
  const emit = net.Server.prototype.emit;
  before(() => {
    net.Server.prototype.emit = function (this: net.Server, event: string | symbol, ...args: unknown[]): boolean {
      if (event === "connection") connections++;
      return (emit as (this: net.Server, e: string | symbol, ...a: unknown[]) => boolean).call(this, event, ...args);
    } as typeof emit;
  });
  after(() => {
    net.Server.prototype.emit = emit;
  });

  it("is read by Heartline when it is another poll: node:http does not set up the connection again", async () => {
    const c = await afterAPoll(s.port);
    let cursor = "";
    const start = connections;
    for (let i = 0; i < 20; i++) {
      c.send(pollRequest(`channel=public:many${cursor ? "&cursor=" + cursor : ""}`));
      if (i > 0) {
        await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
        await s.hl.publish("public:many", i);
      }
      const a = await c.next();
      assert.equal(a.status, 200);
      const body = JSON.parse(a.body) as { cursor: string; messages: Array<{ data: unknown }> };
      if (i > 0) assert.deepEqual(body.messages.map((m) => m.data), [i]);
      cursor = body.cursor;
    }
    assert.equal(connections - start, 0, "no connection set-up for 20 polls");
    // A request that is not a poll goes to node:http.
    c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.deepEqual(JSON.parse((await c.next()).body), { status: "ok" });
    assert.equal(connections - start, 1);
    c.socket.destroy();
  });

  it("gives admission the poll's own headers and parameters: Origin, token, version", async () => {
    const token = await sign({ sub: "u", exp: nowSec() + 60, channels: ["private:*"] }, SECRET);
    const c = await afterAPoll(s.port);
    assert.equal(await answerTo(c, pollRequest("channel=private:a&timeout=0")), "401 unauthorized");
    const d = await afterAPoll(s.port);
    assert.equal(await answerTo(d, pollRequest("channel=private:a&timeout=0", `Authorization: Bearer ${token}\r\n`)), "200");
    assert.equal(await answerTo(d, pollRequest(`channel=private:a&timeout=0&token=${token}`)), "200");
    assert.equal(await answerTo(d, pollRequest("channel=public:a&timeout=0", "Origin: http://elsewhere.test\r\n")), "403 origin_not_allowed");
    const e = await afterAPoll(s.port);
    e.send(pollRequest("channel=public:a&timeout=0", "Origin: http://allowed.test\r\n"));
    const ok = await e.next();
    assert.equal(ok.headers.get("access-control-allow-origin"), "http://allowed.test");
    // HTTP/1.0 without keep-alive: answered, then the connection ends.
    e.send("GET /poll?channel=public:a&timeout=0 HTTP/1.0\r\n\r\n");
    const last = await e.next();
    assert.equal(last.status, 200);
    assert.equal(last.headers.get("connection"), "close");
    await e.closed;
    for (const x of [c, d]) x.socket.destroy();
  });

  it("is answered as on a fresh connection when it is odd or hostile, and the server goes on", async () => {
    const odd: Array<[string, string | string[]]> = [
      ["a folded header line", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"],
      ["a bare LF", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\nHost: x\r\n\r\n"],
      ["a NUL in a value", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n"],
      ["a space before the colon", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost : x\r\n\r\n"],
      ["a lower-case method", "get /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["a POST without a body", "POST /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["a body by Content-Length", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"],
      ["a chunked body", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
      ["Content-Length and Transfer-Encoding", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
      ["Expect: 100-continue", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"],
      ["no Host", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\n\r\n"],
      ["two Hosts", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"],
      ["an absolute-form target", "GET http://x/poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["an empty segment", "GET //poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["a dot segment spelled %2e", "GET /x/%2e%2e/poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["HTTP/1.2", "GET /poll?channel=public:a&timeout=0 HTTP/1.2\r\nHost: x\r\n\r\n"],
      ["a WebSocket upgrade to /poll", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"],
      ["headers past the size limit", "GET /poll?channel=public:a&timeout=0 HTTP/1.1\r\nHost: x\r\nX-Big: " + "a".repeat(17_000) + "\r\n\r\n"],
      ["a head in three pieces", ["GET /poll?channel=public:a&ti", "meout=0 HTTP/1.1\r\nHo", "st: x\r\n\r\n"]],
      ["a bad channel name", pollRequest("channel=%00&timeout=0")],
      ["a query with bytes past ASCII", "GET /poll?channel=public:\xe9&timeout=0 HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["a bad cursor", pollRequest("channel=public:a&cursor=%%%&timeout=0")],
      ["garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"],
    ];
    for (const [what, request] of odd) {
      const fresh = await answerTo(new RawConnection(s.port), request);
      const c = await afterAPoll(s.port);
      assert.equal(await answerTo(c, request), fresh, what);
      c.socket.destroy();
    }
    const res = await fetch(`${s.url}/healthz`);
    assert.equal(res.status, 200);
    await waitFor(() => s.hl.connectionsByTransport.poll === 0, 5000, "no poll left held");
  });

  it("closes the connection when its client ends its side while it waits", async () => {
    const c = await afterAPoll(s.port);
    c.socket.end();
    await c.closed;
  });
});

describe("a kept-alive connection waiting after a poll, when the server closes", () => {
  it("is closed with the server, without waiting for its idle limit", async () => {
    // Idle limit: 36 s (0.6 × headersTimeout, below keepAliveTimeout + 1 s).
    const s = await startServer({ keepAliveTimeout: 60 }, { headersTimeoutMs: 60_000 });
    const c = await afterAPoll(s.port);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<string>((r) => (timer = setTimeout(r, 15_000, "still open")));
    const closed = s.hl.close(5).then(() => c.closed).then(() => "closed");
    assert.equal(await Promise.race([closed, late]), "closed");
    clearTimeout(timer);
  });
});

describe("the idle limit of a kept-alive connection after a poll", () => {
  it("still closes it when idle after a poll held longer than the limit", async () => {
    // Idle limit: 300 ms (0.6 × headersTimeout); the second poll is held for 1 s.
    const s = await startServer({ pollTimeout: 30 }, { headersTimeoutMs: 500 });
    try {
      const c = await afterAPoll(s.port);
      c.send(pollRequest("channel=public:idle&timeout=0"));
      const cursor = JSON.parse((await c.next()).body).cursor as string;
      c.send(pollRequest(`channel=public:idle&cursor=${cursor}&timeout=1`));
      const held = await c.next();
      assert.equal(held.status, 200);
      assert.deepEqual(JSON.parse(held.body).messages, []);
      await c.closed;
      assert.equal(c.unread, "", "closed quietly, without an answer");
    } finally {
      await s.close();
    }
  });
});
