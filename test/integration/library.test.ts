import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { after, before, describe, it } from "node:test";
import WebSocket, { WebSocketServer } from "ws";
import { ConfigError, createHeartline, Heartline, HeartlineError } from "../../src/index.js";
import { getJson, quietLogger, refused, waitFor, WsClient } from "../helpers/server.js";

/** Reads an SSE stream until `pred(text so far)` holds; returns the text. */
async function readSse(body: ReadableStream<Uint8Array>, pred: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  try {
    while (!pred(text)) {
      if (Date.now() > deadline) throw new Error(`timed out reading SSE; got ${JSON.stringify(text)}`);
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return text;
}

function assertIdle(hl: Heartline): void {
  assert.equal(hl.connections, 0);
  assert.deepEqual({ ...hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
  assert.equal(hl.hub.totalSubscriptions, 0);
  assert.equal(hl.hub.totalWaiters, 0);
}

async function expectRejection(p: Promise<unknown>, code: string, status: number): Promise<HeartlineError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof HeartlineError, `expected a HeartlineError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.equal(caught.status, status);
  return caught;
}

describe("library: createHeartline + listen", () => {
  let hl: Heartline;
  let port: number;
  before(async () => {
    hl = createHeartline({ host: "127.0.0.1", maxMessageBytes: 100 }, { logger: quietLogger() });
    const address = await hl.listen(0);
    port = address.port;
  });
  after(() => hl.close(0.5));

  it("listen(0) resolves with the chosen port, serves the routes and the demo page at /", async () => {
    assert.ok(port > 0);
    assert.equal(hl.port, port);
    const health = await getJson(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    const root = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(root.status, 200);
    assert.match(root.headers.get("content-type") ?? "", /^text\/html/);
    await root.arrayBuffer();
  });

  it("publish() resolves {channel, epoch, offset} once stored, and subscribers get the message", async () => {
    const ws = await WsClient.connect(`ws://127.0.0.1:${port}/ws?channel=lib:pub`);
    try {
      await ws.next((f) => f.type === "subscribed");
      const first = await hl.publish("lib:pub", { n: 1 });
      assert.deepEqual(Object.keys(first).sort(), ["channel", "epoch", "offset"]);
      assert.equal(first.channel, "lib:pub");
      assert.equal(first.offset, 1);
      assert.equal(typeof first.epoch, "string");
      assert.ok(first.epoch.length > 0);
      const second = await hl.publish("lib:pub", "two");
      assert.deepEqual(second, { channel: "lib:pub", epoch: first.epoch, offset: 2 });
      assert.deepEqual(await ws.next((f) => f.type === "message"), { type: "message", channel: "lib:pub", offset: 1, data: { n: 1 } });
      assert.deepEqual(await ws.next((f) => f.type === "message"), { type: "message", channel: "lib:pub", offset: 2, data: "two" });
      const info = await getJson(`http://127.0.0.1:${port}/api/channels/lib:pub`);
      assert.deepEqual(info.body, { channel: "lib:pub", epoch: first.epoch, offset: 2, subscribers: 1 });
    } finally {
      ws.close();
      await ws.closed;
    }
    await waitFor(() => hl.connections === 0, 2000, "the WebSocket to be released");
    assertIdle(hl);
  });

  it("publish() accepts any JSON value as data", async () => {
    const values = [null, 0, false, "", [1, "a"], { nested: { x: [true] } }];
    const cursor0 = (await getJson(`http://127.0.0.1:${port}/poll?channel=lib:any`)).body.cursor as string;
    for (const data of values) await hl.publish("lib:any", data);
    const polled = await getJson(`http://127.0.0.1:${port}/poll?channel=lib:any&cursor=${cursor0}`);
    assert.deepEqual(
      polled.body.messages,
      values.map((data, i) => ({ channel: "lib:any", offset: i + 1, data })),
    );
  });

  it("publish() with a bad channel rejects with HeartlineError bad_channel", async () => {
    for (const channel of ["", "has space", "x".repeat(256), "caf\u00e9", 42 as unknown as string]) {
      await expectRejection(hl.publish(channel, 1), "bad_channel", 400);
    }
  });

  it("publish() with oversize data rejects with HeartlineError message_too_large", async () => {
    const e = await expectRejection(hl.publish("lib:big", "x".repeat(200)), "message_too_large", 413);
    assert.match(e.message, /--max-message-bytes/);
    // At the limit exactly it is accepted: 98 characters + 2 quotes = 100 bytes of JSON.
    const ok = await hl.publish("lib:big", "x".repeat(98));
    assert.equal(ok.offset, 1, "the rejected publish stored nothing");
  });

  it("publish() without data rejects with bad_request", async () => {
    await expectRejection(hl.publish("lib:nodata", undefined), "bad_request", 400);
  });
});

describe("library: bad options", () => {
  it("createHeartline throws ConfigError naming a bad option, its value and what is allowed", () => {
    assert.throws(
      () => createHeartline({ heartbeatInterval: -5 }, { logger: quietLogger() }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /heartbeatInterval/);
        assert.match(err.message, /-5/);
        assert.match(err.message, /greater than 0/);
        return true;
      },
    );
    assert.throws(() => createHeartline({ transports: ["ws", "foo"] }, { logger: quietLogger() }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /transports/);
      assert.match(err.message, /foo/);
      assert.match(err.message, /subset of ws,sse,poll/);
      return true;
    });
  });

  it("createHeartline refuses an unknown option", () => {
    assert.throws(() => createHeartline({ pollTimout: 5 } as never, { logger: quietLogger() }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /unknown option "pollTimout"/);
      return true;
    });
  });

  it("createHeartline refuses more than one worker without redis", () => {
    assert.throws(() => createHeartline({ workers: 2 }, { logger: quietLogger() }), ConfigError);
  });

  it("createHeartline refuses a --jwt-public-key file that cannot be read, naming the option", () => {
    assert.throws(() => createHeartline({ jwtPublicKey: "/nonexistent/key.pem" }, { logger: quietLogger() }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /--jwt-public-key/);
      assert.match(err.message, /"\/nonexistent\/key\.pem" cannot be read \(ENOENT\)/);
      return true;
    });
  });
});

describe("library: attach to an existing server", () => {
  let app: Server;
  let hl: Heartline;
  let base: string;
  let wsBase: string;
  const appWss = new WebSocketServer({ noServer: true });

  before(async () => {
    app = createServer((req: IncomingMessage, res: ServerResponse) => {
      if (req.url === "/hello") {
        res.writeHead(200, { "Content-Type": "text/plain" });
        res.end("hello from the app");
        return;
      }
      res.writeHead(200, { "Content-Type": "text/plain", "X-Handled-By": "app" });
      res.end(`app saw ${req.method} ${req.url}`);
    });
    app.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (req.url === "/app-ws") {
        appWss.handleUpgrade(req, socket, head, (ws) => ws.on("message", (data) => ws.send(`echo:${data.toString()}`)));
      } else {
        socket.destroy();
      }
    });
    hl = createHeartline({}, { logger: quietLogger() });
    assert.equal(hl.attach(app), app);
    app.listen(0, "127.0.0.1");
    await once(app, "listening");
    const port = (app.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
    wsBase = `ws://127.0.0.1:${port}`;
  });
  after(async () => {
    await hl.close(0.5);
    if (app.listening) await new Promise((r) => app.close(r));
    appWss.close();
  });

  it("the app's own routes still work", async () => {
    const res = await fetch(`${base}/hello`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello from the app");
  });

  it("Heartline does not serve / (nor its pages) in attach mode: the app gets them", async () => {
    for (const path of ["/", "/demo", "/dashboard"]) {
      const res = await fetch(base + path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get("x-handled-by"), "app", path);
      assert.equal(await res.text(), `app saw GET ${path}`);
    }
  });

  it("serves /healthz and /metrics", async () => {
    const health = await getJson(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: "ok" });
    const metrics = await fetch(`${base}/metrics`);
    assert.equal(metrics.status, 200);
    const text = await metrics.text();
    assert.match(text, /^heartline_connections\{transport="ws"\} \d+$/m);
  });

  it("serves /ws, /sse, /poll and /api/publish on the app's server", async () => {
    const ws = await WsClient.connect(`${wsBase}/ws?channel=att:room`);
    await ws.next((f) => f.type === "subscribed");
    const ac = new AbortController();
    const sse = await fetch(`${base}/sse?channel=att:room`, { signal: ac.signal });
    assert.equal(sse.status, 200);
    assert.match(sse.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.ok(sse.body);
    await readSse(sse.body, (t) => /^event: position\nid: \S+\ndata: \{\}\n\n/m.test(t));
    const poll0 = await getJson(`${base}/poll?channel=att:room`);
    assert.equal(poll0.status, 200);
    assert.deepEqual(poll0.body.messages, []);
    await waitFor(() => hl.connectionsByTransport.sse === 1 && hl.connectionsByTransport.ws === 1, 2000, "WS and SSE to be counted");

    const pub = await getJson(`${base}/api/publish`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ channel: "att:room", data: { hi: 1 } }),
    });
    assert.equal(pub.status, 200);
    assert.equal(pub.body.channel, "att:room");
    assert.equal(pub.body.offset, 1);
    const lib = await hl.publish("att:room", { hi: 2 });
    assert.equal(lib.offset, 2);

    assert.deepEqual(await ws.next((f) => f.type === "message"), { type: "message", channel: "att:room", offset: 1, data: { hi: 1 } });
    assert.deepEqual(await ws.next((f) => f.type === "message"), { type: "message", channel: "att:room", offset: 2, data: { hi: 2 } });
    const sseText = await readSse(sse.body, (t) => t.includes('"offset":2'));
    const datas = [...sseText.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]!));
    assert.deepEqual(datas, [
      { channel: "att:room", offset: 1, data: { hi: 1 } },
      { channel: "att:room", offset: 2, data: { hi: 2 } },
    ]);
    const polled = await getJson(`${base}/poll?channel=att:room&cursor=${poll0.body.cursor}`);
    assert.deepEqual(polled.body.messages, [
      { channel: "att:room", offset: 1, data: { hi: 1 } },
      { channel: "att:room", offset: 2, data: { hi: 2 } },
    ]);

    ws.close();
    await ws.closed;
    ac.abort();
    await waitFor(() => hl.connections === 0, 2000, "connections to be released");
    assertIdle(hl);
  });

  it("a waiting long poll on the app's server is answered by a publish", async () => {
    const poll0 = await getJson(`${base}/poll?channel=att:wait`);
    const waiting = getJson(`${base}/poll?channel=att:wait&cursor=${poll0.body.cursor}&timeout=5`);
    await waitFor(() => hl.hub.totalWaiters === 1, 2000, "the poll to wait");
    assert.equal(hl.connectionsByTransport.poll, 1);
    await hl.publish("att:wait", "woken");
    const res = await waiting;
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.messages, [{ channel: "att:wait", offset: 1, data: "woken" }]);
    assertIdle(hl);
  });

  it("an upgrade on another path still reaches the app's own upgrade listener", async () => {
    const ws = new WebSocket(`${wsBase}/app-ws`);
    await once(ws, "open");
    ws.send("ping-from-test");
    const [data] = (await once(ws, "message")) as [Buffer];
    assert.equal(data.toString(), "echo:ping-from-test");
    ws.close();
    await once(ws, "close");
    assert.equal(hl.connections, 0, "the app's socket is not counted as Heartline's");
  });

  it("close() ends Heartline's connections but leaves the app's server serving", async () => {
    const ws = await WsClient.connect(`${wsBase}/ws?channel=att:bye`);
    await ws.next((f) => f.type === "subscribed");
    await hl.close(1);
    await ws.closed;
    assert.equal(ws.closeCode, 1012);
    assertIdle(hl);
    assert.equal(app.listening, true);
    const res = await fetch(`${base}/hello`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello from the app");
    await hl.close();
  });
});

describe("library: close()", () => {
  it("is idempotent, releases every connection and frees the port", async () => {
    const hl = createHeartline({ host: "127.0.0.1" }, { logger: quietLogger() });
    const { port } = await hl.listen(0);
    const ws = await WsClient.connect(`ws://127.0.0.1:${port}/ws?channel=close:a`);
    await ws.next((f) => f.type === "subscribed");
    const ac = new AbortController();
    const sse = await fetch(`http://127.0.0.1:${port}/sse?channel=close:a`, { signal: ac.signal });
    assert.ok(sse.body);
    await readSse(sse.body, (t) => t.includes("id: "));
    assert.equal(hl.connections, 2);

    const first = hl.close(2);
    const second = hl.close(2);
    await Promise.all([first, second]);
    await hl.close();
    await ws.closed;
    assert.equal(ws.closeCode, 1012);
    ac.abort();
    assertIdle(hl);
    assert.equal(hl.port, undefined, "no server is listening any more");
    assert.ok(await refused(port), "the port no longer accepts connections");

    // The port is free for someone else.
    const other = createServer((_req, res) => res.end("other"));
    other.listen(port, "127.0.0.1");
    await once(other, "listening");
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), "other");
    await new Promise((r) => other.close(r));
  });
});


describe("createHeartline(): after close()", () => {
  it("refuses publish() with shutting_down instead of storing into a closed broker", async () => {
    const hl = createHeartline({}, { logger: quietLogger() });
    await hl.listen(0, "127.0.0.1");
    await hl.close();
    await assert.rejects(hl.publish("after:close", 1), { code: "shutting_down" });
  });
});
