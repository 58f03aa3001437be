/**
 * Abrupt disconnects (SPEC §4): clients that vanish without a goodbye —
 * WebSocket sockets cut, SSE requests aborted, waiting long polls aborted —
 * must leave nothing behind: no connection slot, subscription or poll waiter,
 * and the server keeps serving.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { get, type ClientRequest, type IncomingMessage } from "node:http";
import { describe, it } from "node:test";
import WebSocket from "ws";
import { getJson, waitFor, withServer, WsClient, type TestServer } from "../helpers/server.js";

/** One open client and the way to make it vanish. */
interface Victim {
  kind: "ws" | "sse" | "poll";
  cut(): void;
}

const CHANNELS = ["dc:a", "dc:b", "dc:c", "dc:d"];

async function openWs(s: TestServer, i: number): Promise<Victim> {
  const ws = new WebSocket(`${s.wsUrl}/ws?channel=${CHANNELS[i % 4]}&channel=dc:all`);
  ws.on("error", () => {});
  await once(ws, "open");
  return { kind: "ws", cut: () => ws.terminate() };
}

/** GET with node:http on its own socket; resolves once the response head arrived (SSE) or the request is sent (poll). */
function rawGet(url: string, waitForHead: boolean): Promise<{ req: ClientRequest; res?: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false }, (res) => {
      res.on("error", () => {});
      res.resume();
      if (waitForHead) resolve({ req, res });
    });
    req.on("error", (err) => {
      if (!req.destroyed) reject(err);
    });
    if (!waitForHead) req.on("socket", (sock) => sock.once("connect", () => resolve({ req })));
  });
}

async function openSse(s: TestServer, i: number): Promise<Victim> {
  const url = `${s.url}/sse?channel=${CHANNELS[i % 4]}&channel=dc:all`;
  if (i % 2 === 0) {
    const ac = new AbortController();
    const res = await fetch(url, { signal: ac.signal });
    assert.equal(res.status, 200);
    res.body?.getReader().read().catch(() => {});
    return { kind: "sse", cut: () => ac.abort() };
  }
  const { res } = await rawGet(url, true);
  assert.equal(res!.statusCode, 200);
  return { kind: "sse", cut: () => res!.socket.destroy() };
}

async function openPoll(s: TestServer, i: number, cursor: string): Promise<Victim> {
  const url = `${s.url}/poll?channel=dc:poll&cursor=${cursor}`;
  if (i % 2 === 0) {
    const ac = new AbortController();
    fetch(url, { signal: ac.signal }).then(
      () => assert.fail("a waiting poll must not be answered"),
      () => {},
    );
    return { kind: "poll", cut: () => ac.abort() };
  }
  const { req } = await rawGet(url, false);
  return { kind: "poll", cut: () => req.destroy() };
}

async function metricsText(s: TestServer): Promise<string> {
  return (await fetch(`${s.url}/metrics`)).text();
}

describe("abrupt disconnects", () => {
  const s = withServer({ maxConnections: 5000 });

  async function assertIdle(): Promise<void> {
    await waitFor(() => s.hl.connections === 0, 10_000, "every connection to be released");
    assert.deepEqual({ ...s.hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
    assert.equal(s.hl.hub.totalSubscriptions, 0);
    assert.equal(s.hl.hub.totalWaiters, 0);
    const text = await metricsText(s);
    for (const t of ["ws", "sse", "poll"]) assert.match(text, new RegExp(`^heartline_connections\\{transport="${t}"\\} 0$`, "m"));
    assert.match(text, /^heartline_subscriptions 0$/m);
  }

  it("frees everything after 1,000 WebSocket, SSE and long-poll clients vanish", async () => {
    const polled = await getJson(`${s.url}/poll?channel=dc:poll`);
    const cursor: string = polled.body.cursor;
    let published = 0;
    for (let round = 0; round < 2; round++) {
      // 500 per round: 200 WebSockets, 150 SSE streams, 150 waiting polls, opened 50 at a time.
      const victims: Victim[] = [];
      const plan = [
        ...Array.from({ length: 200 }, (_, i) => () => openWs(s, i)),
        ...Array.from({ length: 150 }, (_, i) => () => openSse(s, i)),
        ...Array.from({ length: 150 }, (_, i) => () => openPoll(s, i, cursor)),
      ];
      for (let i = 0; i < plan.length; i += 50) victims.push(...(await Promise.all(plan.slice(i, i + 50).map((open) => open()))));
      await waitFor(
        () => s.hl.connectionsByTransport.ws === 200 && s.hl.connectionsByTransport.sse === 150 && s.hl.connectionsByTransport.poll === 150,
        10_000,
        "500 open connections",
      );
      assert.equal(s.hl.connections, 500);
      await waitFor(() => s.hl.hub.totalSubscriptions === 700 && s.hl.hub.totalWaiters === 150, 5000, "every subscription and waiter");
      let text = await metricsText(s);
      assert.match(text, /^heartline_connections\{transport="ws"\} 200$/m);
      assert.match(text, /^heartline_connections\{transport="poll"\} 150$/m);

      // Vanish, in a shuffled order, with messages still being published to the dying connections.
      for (let i = victims.length - 1; i > 0; i--) {
        const j = (i * 7919) % (i + 1);
        [victims[i], victims[j]] = [victims[j]!, victims[i]!];
      }
      for (const [i, v] of victims.entries()) {
        v.cut();
        if (i % 100 === 0) {
          await s.hl.publish("dc:all", { round, i });
          published++;
        }
      }
      await s.hl.publish("dc:all", { round, done: true });
      published++;
      await assertIdle();
      text = await metricsText(s);
      assert.match(text, /^heartline_connections\{transport="sse"\} 0$/m);
    }
    assert.equal(s.hl.stats.slowConsumerDrops.ws + s.hl.stats.slowConsumerDrops.sse, 0);

    // Still serving: a new subscriber on every transport gets the next message.
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=dc:all`);
    assert.equal((await c.next()).offset, published);
    const sse = await fetch(`${s.url}/sse?channel=dc:all`);
    assert.equal(sse.status, 200);
    const reader = sse.body!.getReader();
    const poll = getJson(`${s.url}/poll?channel=dc:poll&cursor=${cursor}&timeout=5`);
    await waitFor(() => s.hl.hub.totalWaiters === 1 && s.hl.connectionsByTransport.sse === 1, 5000, "the new SSE stream and poll");
    await s.hl.publish("dc:all", "after");
    await s.hl.publish("dc:poll", "after");
    assert.deepEqual(await c.next(), { type: "message", channel: "dc:all", offset: published + 1, data: "after" });
    let sseText = "";
    const decoder = new TextDecoder();
    while (!sseText.includes('"data":"after"')) {
      const { value, done } = await reader.read();
      assert.equal(done, false);
      sseText += decoder.decode(value);
    }
    assert.ok(sseText.includes(`data: {"channel":"dc:all","offset":${published + 1},"data":"after"}`));
    const answer = await poll;
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.body.messages, [{ channel: "dc:poll", offset: 1, data: "after" }]);
    await reader.cancel();
    c.close();
    await c.closed;
    await assertIdle();
  });
});
