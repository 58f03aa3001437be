/**
 * A slow hook backend (every hook answers after 400 ms, within
 * `--proxy-timeout`): clients that leave while a hook is waiting leave
 * nothing behind once the backend answers, and an answer for a connection
 * that has gone is dropped without harm. Heartline and the example backend
 * run as child processes.
 */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { hookCounts, metricValue, openConnections, startBackend, type Backend } from "../helpers/backend.js";
import { startChildServer, type ChildServer } from "../helpers/child.js";
import { getJson, waitFor, WsClient } from "../helpers/server.js";

const DELAY_MS = 400;

let backend: Backend;
let hl: ChildServer;
let cookie: string;

before(async () => {
  backend = await startBackend({ faults: ["connect", "subscribe", "publish", "rpc"].map((h) => `${h}=slow:${DELAY_MS}`).join(",") });
  hl = await startChildServer([...backend.proxyArgs(), "--api-key", "slow-key", "--proxy-timeout", "5"]);
  cookie = await backend.login("alice");
});

after(async () => {
  await hl?.stop();
  await backend?.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends a request on a raw socket and closes it after `ms`, before any answer. */
async function leaveAfter(ms: number, request: string): Promise<void> {
  const socket = connect(hl.port, "127.0.0.1");
  socket.on("error", () => {});
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.write(request);
  await sleep(ms);
  socket.destroy();
}

/** Nothing held: no connection of any transport, no subscription. */
async function assertNothingHeld(): Promise<void> {
  await waitFor(
    async () => {
      const n = await openConnections(hl.url);
      const text = await (await fetch(`${hl.url}/metrics`)).text();
      return n.ws === 0 && n.sse === 0 && n.poll === 0 && metricValue(text, "heartline_subscriptions") === 0;
    },
    5000,
    "no connection and no subscription left",
  );
  assert.equal((await getJson(`${hl.url}/api/channels/room:lobby`, { headers: { authorization: "Bearer slow-key" } })).body.subscribers, 0);
}

describe("HTTP hooks with a slow backend", () => {
  it("answers once the backend has answered", async () => {
    const t0 = Date.now();
    const res = await getJson(`${hl.url}/api/rpc`, {
      method: "POST",
      headers: { "content-type": "application/json", cookie },
      body: JSON.stringify({ method: "whoami" }),
    });
    assert.deepEqual(res.body, { result: { user: "alice" } });
    assert.ok(Date.now() - t0 >= 2 * DELAY_MS - 50, "connect, then rpc");
  });

  it("a WebSocket upgrade, an SSE stream and a poll left while connect waits leave nothing behind", async () => {
    const before = await hookCounts(hl.url);
    const upgrade =
      `GET /ws?channel=room:lobby HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    await Promise.all([
      leaveAfter(50, upgrade),
      leaveAfter(50, `GET /sse?channel=room:lobby HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nAccept: text/event-stream\r\n\r\n`),
      leaveAfter(50, `GET /poll?channel=room:lobby&timeout=20 HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`),
      leaveAfter(DELAY_MS + 100, `GET /sse?channel=room:lobby HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nAccept: text/event-stream\r\n\r\n`),
    ]);
    // Every hook has answered by now (connect, then subscribe: two delays).
    await sleep(2 * DELAY_MS + 200);
    await assertNothingHeld();
    const after = await hookCounts(hl.url);
    assert.ok(after("connect", "ok") - before("connect", "ok") >= 3, "the hooks were asked and answered");
    assert.equal(after("connect", "unavailable"), 0);
  });

  it("a WebSocket closed while its subscribe, publish and rpc wait for the backend: the answers are dropped, nothing is held", async () => {
    const c = await WsClient.connect(`${hl.wsUrl}/ws`, { headers: { cookie } });
    const before = await hookCounts(hl.url);
    c.send({ type: "subscribe", channel: "room:lobby" });
    c.send({ type: "publish", channel: "room:lobby", data: { text: "left" } });
    c.send({ type: "rpc", id: 1, method: "whoami" });
    await sleep(50);
    c.close();
    await c.closed;
    await sleep(DELAY_MS + 200);
    await assertNothingHeld();
    const after = await hookCounts(hl.url);
    for (const hook of ["subscribe", "publish", "rpc"]) assert.equal(after(hook, "ok") - before(hook, "ok"), 1, hook);
    assert.equal(hl.child.exitCode, null);
    assert.equal((await getJson(`${hl.url}/healthz`)).status, 200);
  });
});
