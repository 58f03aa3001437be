/**
 * The client's connection state machine: state events, transport fallback
 * (and remembering what worked), the heartbeat watchdog, close codes,
 * tokens, page visibility, and close() freeing everything.
 */
import assert from "node:assert/strict";
import { createServer, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import { WebSocketServer, type WebSocket as WsSocket } from "ws";
import { createHeartline, ManualClock } from "../../src/index.js";
import type { ClientState } from "../../src/client/index.js";
import { sign } from "../helpers/auth.js";
import { publishHttp, quietLogger, startServer, waitFor, withServer, type TestServer } from "../helpers/server.js";
import { client, connected, CutProxy, dropConnection, ManualClientClock, Recorder, scriptedWsServer, serverBehindProxy } from "./helpers.js";

const TRANSPORTS = ["ws", "sse", "poll"] as const;
const FAST = { backoffBase: 0.02, backoffMax: 0.1 };

const paths = (proxy: CutProxy, from = 0): string[] => proxy.requests.slice(from).map((l) => (l.split(" ")[1] ?? "").split("?")[0]!);

function serverIdle(s: TestServer): Promise<true> {
  return waitFor(
    () => (s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0 && s.hl.hub.totalWaiters === 0) || undefined,
    5000,
    "the server to free every connection",
  );
}

describe("Heartline client: state events", () => {
  const fx = serverBehindProxy();

  it("goes disconnected → connecting → connected, back through disconnected after a cut, and ends closed", async () => {
    const hl = client(fx.proxy.url, FAST);
    const seen: string[] = [];
    hl.on("state", ({ from, to }) => seen.push(`${from}→${to}`));
    assert.equal(hl.state, "disconnected");
    hl.subscribe("state:a", () => {});
    await connected(hl, "ws");
    assert.deepEqual(seen, ["disconnected→connecting", "connecting→connected"]);
    fx.proxy.cut();
    await waitFor(() => seen.length === 5 || undefined);
    await connected(hl, "ws");
    hl.close();
    assert.deepEqual(seen, [
      "disconnected→connecting",
      "connecting→connected",
      "connected→disconnected",
      "disconnected→connecting",
      "connecting→connected",
      "connected→closed",
    ]);
    assert.equal(hl.state, "closed");
    assert.equal(hl.transport, undefined);
    assert.throws(() => hl.subscribe("state:a", () => {}), { name: "HeartlineError", code: "closed" });
    await serverIdle(fx.s);
  });
});

describe("Heartline client: transport fallback", () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  it("lands on sse when the server offers sse and poll, and goes straight back to sse after a cut", async () => {
    const s = await startServer({ transports: ["sse", "poll"] });
    servers.push(s);
    const proxy = await CutProxy.start(s.port);
    const hl = client(proxy.url, FAST);
    const transports: string[] = [];
    hl.on("transport", (t) => transports.push(t));
    hl.subscribe("fallback:a", () => {});
    try {
      await connected(hl, "sse");
      assert.deepEqual(transports, ["sse"]);
      assert.deepEqual(paths(proxy).filter((p) => p !== "/poll"), ["/ws", "/sse"]);
      const before = proxy.requests.length;
      await dropConnection(proxy, hl);
      await connected(hl, "sse");
      // Remembered: no WebSocket attempt on reconnect.
      assert.deepEqual(paths(proxy, before), ["/sse"]);
    } finally {
      hl.close();
      await proxy.close();
    }
    await serverIdle(s);
  });

  it("lands on poll when the server offers only poll, trying ws and sse first", async () => {
    const s = await startServer({ transports: ["poll"] });
    servers.push(s);
    const proxy = await CutProxy.start(s.port);
    const hl = client(proxy.url, FAST);
    const r = new Recorder();
    hl.subscribe("fallback:b", r.handler);
    try {
      await connected(hl, "poll");
      assert.deepEqual(paths(proxy).filter((p) => p !== "/poll"), ["/ws", "/sse"]);
      assert.equal(paths(proxy).at(-1), "/poll");
      await waitFor(() => s.hl.hub.totalWaiters === 1 || undefined);
      await publishHttp(s, "fallback:b", "x");
      await r.until(1);
      assert.deepEqual(r.messages, [{ channel: "fallback:b", offset: 1, data: "x" }]);
    } finally {
      hl.close();
      await proxy.close();
    }
    await serverIdle(s);
  });

  it("falls back from a WebSocket that opens but never sends a frame", async () => {
    const hl0 = createHeartline({ host: "127.0.0.1" }, { logger: quietLogger() });
    const server = createServer();
    hl0.attach(server);
    const silent: WsSocket[] = [];
    const wss = new WebSocketServer({ noServer: true });
    server.removeAllListeners("upgrade");
    server.on("upgrade", (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => silent.push(ws)));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const hl = client(url, { ...FAST, openTimeout: 0.5 });
    const r = new Recorder();
    hl.subscribe("fallback:c", r.handler);
    try {
      await connected(hl, "sse");
      assert.ok(silent.length >= 1);
      await waitFor(() => silent.every((ws) => ws.readyState === ws.CLOSED) || undefined, 2000, "the silent sockets to be closed");
      await waitFor(() => hl0.hub.subscriberCount("fallback:c") === 1 || undefined);
      await hl0.publish("fallback:c", 1);
      await r.until(1);
    } finally {
      hl.close();
      wss.close();
      await hl0.close(0.2);
      server.closeAllConnections();
      await new Promise((res) => server.close(res));
    }
  });
});

describe("Heartline client: a buffering proxy", () => {
  it("falls back to poll from an SSE stream that opens but delivers no event in time", async () => {
    const s = await startServer({ transports: ["sse", "poll"] });
    // In front of the server: /sse answers 200 and then holds every byte back; the rest passes.
    const held: ServerResponse[] = [];
    const front = createServer((req, res) => {
      if (req.url?.startsWith("/sse")) {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.flushHeaders();
        held.push(res);
        return;
      }
      const up = request({ host: "127.0.0.1", port: s.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      // A poll still held when the test closes the server is cut: pass the cut on, don't throw.
      up.on("error", () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
    const hl = client(`http://127.0.0.1:${(front.address() as AddressInfo).port}`, { transports: ["sse", "poll"], openTimeout: 0.5 });
    const r = new Recorder();
    hl.subscribe("buffered", r.handler);
    try {
      await connected(hl, "poll");
      assert.ok(held.length >= 1);
      await waitFor(() => held.every((r) => r.destroyed || r.writableEnded) || undefined, 2000, "the held streams to be dropped");
      await waitFor(() => s.hl.hub.totalWaiters === 1 || undefined);
      await publishHttp(s, "buffered", 1);
      await r.until(1);
    } finally {
      hl.close();
      front.closeAllConnections();
      await new Promise((res) => front.close(res));
      await s.close();
    }
  });
});

describe("Heartline client: heartbeat watchdog", () => {
  // The server's clock never moves, so it sends no heartbeat: only published messages are traffic.
  const fx = serverBehindProxy({}, { clock: new ManualClock() });

  for (const t of TRANSPORTS) {
    it(`${t}: traffic keeps the connection; interval + grace of silence replaces it`, async () => {
      const clock = new ManualClientClock();
      const channel = `watchdog:${t}`;
      const hl = client(fx.proxy.url, { transports: [t], clock, random: () => 0.5 });
      const r = new Recorder();
      hl.subscribe(channel, r.handler);
      const seen: ClientState[] = [];
      try {
        await connected(hl, t);
        hl.on("state", ({ to }) => seen.push(to));
        await waitFor(() => (t === "poll" ? fx.s.hl.hub.totalWaiters === 1 : fx.s.hl.hub.subscriberCount(channel) === 1) || undefined);
        const requests = fx.proxy.requests.length;
        clock.advance(30_000);
        await publishHttp(fx.s, channel, 1);
        await r.until(1);
        clock.advance(30_000); // 60 s since connecting, 30 s since the last traffic
        await new Promise((res) => setTimeout(res, 30));
        assert.equal(hl.state, "connected");
        if (t !== "poll") assert.equal(fx.proxy.requests.length, requests);
        clock.advance(4_999);
        assert.equal(hl.state, "connected");
        clock.advance(1); // 35 s of silence: 25 s interval + 10 s grace
        assert.equal(hl.state, "disconnected");
        assert.ok(clock.pending().includes(125), "a backoff wait of random() × 250 ms");
        clock.advance(125);
        assert.equal(hl.state, "connecting");
        await connected(hl, t);
        assert.deepEqual(seen, ["disconnected", "connecting", "connected"]);
        await publishHttp(fx.s, channel, 2);
        await r.until(2);
        assert.deepEqual(r.offsets(), [1, 2]);
      } finally {
        hl.close();
      }
      assert.deepEqual(clock.pending(), []);
      await serverIdle(fx.s);
    });
  }
});

describe("Heartline client: close() frees everything", () => {
  const s = withServer();

  for (const t of TRANSPORTS) {
    it(`${t}: no server connection, subscription, waiting poll or client timer is left`, async () => {
      const clock = new ManualClientClock();
      const hl = client(s.url, { transports: [t], clock });
      hl.subscribe("close:a", () => {});
      hl.subscribe("close:b", () => {});
      await connected(hl, t);
      await waitFor(() => s.hl.connectionsByTransport[t] === 1 || undefined);
      if (t !== "poll") await waitFor(() => s.hl.hub.totalSubscriptions === 2 || undefined);
      hl.close();
      hl.close();
      assert.deepEqual(clock.pending(), []);
      await serverIdle(s);
      assert.deepEqual(s.hl.connectionsByTransport, { ws: 0, sse: 0, poll: 0 });
    });
  }
});

describe("Heartline client: tokens and close codes", () => {
  const fx = scriptedWsServer((ws, n) => {
    ws.send(JSON.stringify({ type: "subscribed", channel: "tok", epoch: "E", offset: 0, recovered: false }));
    setTimeout(() => ws.close(n === 1 ? 4401 : 4403), 20);
  });

  it("reconnects with a new token after 4401 and stops for good on 4403", async () => {
    let n = 0;
    const hl = client(fx.url, { transports: ["ws"], ...FAST, getToken: async () => `t${++n}` });
    const errors: string[] = [];
    hl.on("error", (e) => errors.push(e.code));
    hl.subscribe("tok", () => {});
    await waitFor(() => hl.state === "closed" || undefined, 5000, "the client to close");
    // The client id goes with every connection, the same each time.
    assert.deepEqual(fx.upgrades, [`/ws?token=t1&client=${hl.clientId}`, `/ws?token=t2&client=${hl.clientId}`]);
    // The second connection resumes from the position the first one gave.
    assert.deepEqual(fx.frames.map((f) => JSON.parse(f)), [
      { type: "subscribe", channel: "tok" },
      { type: "subscribe", channel: "tok", since: { epoch: "E", offset: 0 } },
    ]);
    assert.equal(hl.state, "closed");
    // Heartline sends 4403 only to disconnect a user for good (POST /api/disconnect).
    assert.deepEqual(errors, ["disconnected"]);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(fx.upgrades.length, 2);
  });

  it("sends the token as token= on sse and poll too", async () => {
    const s = await startServer();
    const proxy = await CutProxy.start(s.port);
    try {
      for (const t of ["sse", "poll"] as const) {
        const from = proxy.requests.length;
        const hl = client(proxy.url, { transports: [t], getToken: () => "secret-" + t });
        hl.subscribe("tok:x", () => {});
        await connected(hl, t);
        hl.close();
        const lines = proxy.requests.slice(from).filter((l) => l.includes(`/${t}?`));
        assert.ok(lines.length > 0);
        for (const l of lines) assert.match(l, new RegExp(`[?&]token=secret-${t}[& ]`));
      }
    } finally {
      await proxy.close();
      await s.close();
    }
  });
});

describe("Heartline client: in-band token refresh", () => {
  const SECRET = "client-refresh-secret-0123456789abcdef";
  const clock = new ManualClock();
  const BASE = Math.floor(Date.now() / 1000) * 1000;
  const wallSec = (): number => (BASE + clock.now()) / 1000;
  const fx = serverBehindProxy({ jwtSecret: SECRET, heartbeatInterval: 3600, heartbeatTimeout: 3600 }, { clock, wallClock: () => BASE + clock.now() });

  it("answers the server's refresh request with a token from getToken(), so the connection outlives the first token", async () => {
    const { s, proxy } = fx;
    const issued: number[] = [];
    const getToken = (): Promise<string> => {
      issued.push(wallSec() + 60);
      return sign({ sub: "erin", exp: wallSec() + 60, channels: ["live:*"] }, SECRET);
    };
    const from = proxy.requests.length;
    const hl = client(proxy.url, { transports: ["ws"], getToken });
    const rec = new Recorder();
    const errors: string[] = [];
    hl.on("error", (e) => errors.push(e.code));
    hl.subscribe("live:tok", rec.handler);
    try {
      await connected(hl, "ws");
      await waitFor(() => s.hl.hub.subscriberCount("live:tok") === 1 || undefined);
      await publishHttp(s, "live:tok", 1);
      await rec.until(1);
      clock.advance(40_000); // 20 s before exp: the server asks for a new token
      await waitFor(() => issued.length === 2 || undefined, 5000, "getToken() to be called for the refresh");
      // The server took the second token: a refresh is due again (0 means asked and unanswered).
      const live = (s.hl as unknown as { ctx: { registry: { live: Set<{ refreshAt: number }> } } }).ctx.registry.live;
      await waitFor(() => [...live].every((c) => c.refreshAt > 0) || undefined, 5000, "the refresh to be taken");
      clock.advance(30_000); // past the first token's exp
      await publishHttp(s, "live:tok", 2);
      await rec.until(2);
      assert.equal(hl.state, "connected");
      assert.deepEqual(rec.offsets(), [1, 2]);
      assert.deepEqual(errors, []);
      assert.equal(paths(proxy, from).filter((p) => p === "/ws").length, 1, "one connection, never reopened");
      assert.equal(s.hl.connections, 1);
    } finally {
      hl.close();
    }
  });
});

describe("Heartline client: page visibility and network", () => {
  const fx = serverBehindProxy();

  it("reconnects at once, skipping the backoff wait, when the page becomes visible or the network comes back", async () => {
    const doc = Object.assign(new EventTarget(), { visibilityState: "hidden" });
    const win = new EventTarget();
    Object.defineProperty(globalThis, "document", { value: doc, configurable: true });
    Object.defineProperty(globalThis, "addEventListener", { value: win.addEventListener.bind(win), configurable: true });
    Object.defineProperty(globalThis, "removeEventListener", { value: win.removeEventListener.bind(win), configurable: true });
    const clock = new ManualClientClock();
    const hl = client(fx.proxy.url, { clock, backoffBase: 100, backoffMax: 100, random: () => 0.99 });
    try {
      hl.subscribe("vis", () => {});
      await connected(hl, "ws");
      fx.proxy.cut();
      await waitFor(() => hl.state === "disconnected" || undefined);
      assert.ok(clock.pending().includes(99_000), "a long backoff wait is pending");
      doc.dispatchEvent(new Event("visibilitychange")); // still hidden: nothing happens
      assert.equal(hl.state, "disconnected");
      doc.visibilityState = "visible";
      doc.dispatchEvent(new Event("visibilitychange"));
      assert.equal(hl.state, "connecting");
      await connected(hl, "ws");
      fx.proxy.cut();
      await waitFor(() => hl.state === "disconnected" || undefined);
      win.dispatchEvent(new Event("online"));
      assert.equal(hl.state, "connecting");
      await connected(hl, "ws");
    } finally {
      hl.close();
      delete (globalThis as { document?: unknown }).document;
      delete (globalThis as { addEventListener?: unknown }).addEventListener;
      delete (globalThis as { removeEventListener?: unknown }).removeEventListener;
    }
    assert.deepEqual(clock.pending(), []);
    await serverIdle(fx.s);
  });
});

