/**
 * Heartbeats (SPEC §3) on a manual clock: idle WebSocket and SSE connections
 * are pinged after --heartbeat-interval of silence and not before; a WebSocket
 * peer that never answers is closed with 4000 after --heartbeat-timeout and
 * freed; a peer that answers stays open.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { get, type ClientRequest } from "node:http";
import { afterEach, describe, it } from "node:test";
import WebSocket from "ws";
import { ManualClock } from "../../src/index.js";
import { startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";

const INTERVAL_MS = 10_000;
const TIMEOUT_MS = 5_000;

/** Sends a protocol ping and waits for the server's pong: every frame the server sent before has arrived. */
async function roundTrip(ws: WebSocket): Promise<void> {
  const pong = once(ws, "pong");
  ws.ping();
  await pong;
}

describe("heartbeats", () => {
  let s: TestServer | undefined;
  let clock: ManualClock;

  async function start(): Promise<TestServer> {
    clock = new ManualClock();
    s = await startServer({ heartbeatInterval: INTERVAL_MS / 1000, heartbeatTimeout: TIMEOUT_MS / 1000 }, { clock });
    return s;
  }

  async function assertIdle(server: TestServer): Promise<void> {
    await waitFor(() => server.hl.connections === 0, 5000, "every connection to be released");
    assert.deepEqual({ ...server.hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
    assert.equal(server.hl.hub.totalSubscriptions, 0);
    assert.equal(server.hl.hub.totalWaiters, 0);
  }

  afterEach(async () => {
    await s?.close();
    s = undefined;
  });

  it("sends an idle WebSocket a protocol ping and a ping frame after the interval, not before", async () => {
    const server = await start();
    const c = await WsClient.connect(`${server.wsUrl}/ws?channel=hb:1`);
    await c.next((f) => f.type === "subscribed");
    let protocolPings = 0;
    c.ws.on("ping", () => protocolPings++);

    clock.advance(INTERVAL_MS - 1);
    assert.equal(server.hl.stats.heartbeats.ws, 0);
    await roundTrip(c.ws);
    assert.equal(protocolPings, 0);
    assert.equal(c.frames.filter((f) => f.type === "ping").length, 0);

    clock.advance(1);
    assert.equal(server.hl.stats.heartbeats.ws, 1);
    assert.deepEqual(await c.next((f) => f.type === "ping"), { type: "ping" });
    await waitFor(() => protocolPings === 1, 2000, "a protocol ping");
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    c.close();
    await c.closed;
    await assertIdle(server);
  });

  it("sends an idle SSE stream `event: ping` after the interval, not before", async () => {
    const server = await start();
    let text = "";
    let req: ClientRequest | undefined;
    const status = await new Promise<number>((resolve, reject) => {
      req = get(`${server.url}/sse?channel=hb:sse`, { agent: false }, (res) => {
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("error", () => {});
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
    });
    assert.equal(status, 200);
    await waitFor(() => /\nevent: position\nid: 1~[^\n]+\ndata: \{\}\n\n/.test(text), 2000, "the position after setup");
    assert.ok(text.startsWith("retry: 2000\n\n"));
    assert.equal(server.hl.connectionsByTransport.sse, 1);

    clock.advance(INTERVAL_MS - 1);
    assert.equal(server.hl.stats.heartbeats.sse, 0);
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(!text.includes("event: ping"), "no ping before the interval");

    clock.advance(1);
    assert.equal(server.hl.stats.heartbeats.sse, 1);
    await waitFor(() => text.includes("event: ping\ndata: {}\n\n"), 2000, "event: ping");
    // Silence again: the next ping comes one interval after the previous one.
    clock.advance(INTERVAL_MS);
    await waitFor(() => text.split("event: ping").length - 1 === 2, 2000, "a second ping");

    req!.destroy();
    await assertIdle(server);
  });

  it("closes a WebSocket that never answers with 4000 within interval + timeout, and frees it", async () => {
    const server = await start();
    const c = await WsClient.connect(`${server.wsUrl}/ws?channel=hb:2&channel=hb:3`, { autoPong: false });
    await c.next((f) => f.type === "subscribed");
    await c.next((f) => f.type === "subscribed");
    assert.equal(server.hl.hub.totalSubscriptions, 2);

    clock.advance(INTERVAL_MS);
    await c.next((f) => f.type === "ping");
    clock.advance(TIMEOUT_MS - 1);
    // Still open just before the deadline (the sweep runs synchronously inside advance()).
    assert.equal(server.hl.connections, 1);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    assert.equal(c.closeCode, undefined);

    clock.advance(1);
    assert.equal(server.hl.connections, 0, "freed at the deadline");
    await c.closed;
    assert.equal(c.closeCode, 4000);
    assert.equal(c.closeReason, "heartbeat timeout");
    assert.equal(server.hl.stats.heartbeatTimeouts, 1);
    await assertIdle(server);
    assert.equal(server.hl.hub.subscriberCount("hb:2"), 0);
  });

  it("keeps a WebSocket that answers with protocol pongs open across many intervals", async () => {
    const server = await start();
    const c = await WsClient.connect(`${server.wsUrl}/ws?channel=hb:4`);
    await c.next((f) => f.type === "subscribed");
    for (let i = 1; i <= 6; i++) {
      clock.advance(INTERVAL_MS);
      await c.next((f) => f.type === "ping");
      // The automatic pong went out before this round trip, so the server has read it.
      await roundTrip(c.ws);
    }
    clock.advance(TIMEOUT_MS);
    assert.equal(server.hl.connections, 1);
    assert.equal(server.hl.stats.heartbeatTimeouts, 0);
    assert.equal(server.hl.stats.heartbeats.ws, 6);
    await server.hl.publish("hb:4", "still here");
    assert.deepEqual(await c.next((f) => f.type === "message"), { type: "message", channel: "hb:4", offset: 1, data: "still here" });
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    c.close();
    await c.closed;
    await assertIdle(server);
  });

  it("keeps a WebSocket that answers with {\"type\":\"pong\"} frames open across many intervals", async () => {
    const server = await start();
    const c = await WsClient.connect(`${server.wsUrl}/ws?channel=hb:5`, { autoPong: false });
    await c.next((f) => f.type === "subscribed");
    for (let i = 1; i <= 6; i++) {
      clock.advance(INTERVAL_MS);
      await c.next((f) => f.type === "ping");
      c.send({ type: "pong" });
      await roundTrip(c.ws);
    }
    clock.advance(TIMEOUT_MS);
    assert.equal(server.hl.connections, 1);
    assert.equal(server.hl.stats.heartbeatTimeouts, 0);
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    assert.deepEqual(
      c.frames.filter((f) => f.type === "error"),
      [],
      "a pong frame is a valid frame",
    );
    // No answer to the next ping: closed as usual.
    clock.advance(INTERVAL_MS - TIMEOUT_MS);
    await c.next((f) => f.type === "ping");
    clock.advance(TIMEOUT_MS);
    await c.closed;
    assert.equal(c.closeCode, 4000);
    await assertIdle(server);
  });
});
