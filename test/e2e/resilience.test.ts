import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";
import {
  connected,
  e2eSkipReason,
  inState,
  launchBrowser,
  newContext,
  publishFrom,
  received,
  recorded,
  recordPageErrors,
  setVisibility,
  sleep,
  startClient,
} from "./helpers.js";
import { BLANK_PATH, startProxy, type TestProxy } from "./proxy.js";

const skip = e2eSkipReason();

describe("browser client behind a proxy", { skip }, () => {
  let s: TestServer;
  let browser: Browser;
  let proxy: TestProxy;
  let context: BrowserContext | undefined;

  before(async () => {
    [s, browser] = await Promise.all([startServer({ clientPublish: ["game:*"] }), launchBrowser()]);
  });
  afterEach(async () => {
    await context?.close();
    context = undefined;
    await proxy?.close();
    await waitFor(() => s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0 && s.hl.hub.totalWaiters === 0, 5000, "connections to close");
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  /** A blank page on the proxy's origin, so clients in it connect through the proxy. */
  async function pageBehind(p: TestProxy): Promise<{ page: Page; errors: string[] }> {
    context = await newContext(browser);
    const page = await context.newPage();
    const errors = recordPageErrors(page);
    await page.goto(p.url + BLANK_PATH);
    return { page, errors };
  }

  for (const mode of ["refuse", "drop"] as const) {
    it(`falls back to SSE when the proxy ${mode === "refuse" ? "answers WebSocket upgrades with 403" : "drops WebSocket upgrades"}, and still delivers both ways`, async () => {
      proxy = await startProxy({ port: s.port }, { upgrade: mode });
      const { page } = await pageBehind(proxy);
      const channel = `game:fallback-${mode}`;
      await startClient(page, "c", { channel });
      await connected(page, "c", "sse");
      assert.ok(mode === "refuse" ? proxy.stats.upgradesRefused >= 1 : proxy.stats.upgradesDropped >= 1, "the client tried WebSocket first");
      assert.equal(s.hl.connectionsByTransport.ws, 0);
      await waitFor(() => s.hl.connectionsByTransport.sse === 1, 5000, "the SSE connection on the server");
      // Server → browser.
      await s.hl.publish(channel, { from: "server" });
      // Browser → server → browser: over SSE the client publishes with POST /api/publish.
      const answer = (await publishFrom(page, "c", channel, { from: "page" })) as { offset: number };
      assert.equal(answer.offset, 2);
      await received(page, "c", 2);
      const r = await recorded(page, "c");
      assert.deepEqual(r.offsets, [1, 2]);
      assert.deepEqual(r.data, [{ from: "server" }, { from: "page" }]);
      assert.equal(r.transport, "sse");
      assert.deepEqual(r.resets, []);
    });
  }

  it("delivers every message exactly once and in order while the proxy cuts all sockets mid-stream (ws, sse, poll)", async () => {
    proxy = await startProxy({ port: s.port });
    const { page, errors } = await pageBehind(proxy);
    const channel = "seq:cut";
    const transports = ["ws", "sse", "poll"] as const;
    // Each client on its own connection: shared ones would all ride on the first one's transport.
    for (const t of transports) await startClient(page, t, { channel, transports: [t], shared: false });
    for (const t of transports) await connected(page, t, t);
    // WS and SSE subscribers are registered on the server; a connected poll client holds a cursor.
    await waitFor(() => s.hl.hub.subscriberCount(channel) === 2, 5000, "the WS and SSE subscriptions");
    await s.hl.publish(channel, { n: 1 });
    for (const t of transports) await received(page, t, 1);

    const total = 300;
    let cuts = 0;
    for (let n = 2; n <= total; n++) {
      await s.hl.publish(channel, { n });
      if (n % 10 === 0) await sleep(5);
      if (n === 100) cuts += proxy.cut();
      if (n === 200) {
        // Messages 101..200 went out while the clients were away; cut again once they are back.
        for (const t of transports) await connected(page, t, t);
        // With the stream paused the poll client waits in a held poll: this cut hits one in flight.
        await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "a held poll");
        cuts += proxy.cut();
      }
    }
    assert.ok(cuts >= 6, `the proxy cut the clients' sockets (${cuts})`);
    for (const t of transports) await received(page, t, total, 20_000);
    await sleep(200); // a duplicate would arrive right after the last message
    const expected = Array.from({ length: total }, (_, i) => i + 1);
    for (const t of transports) {
      const r = await recorded(page, t);
      assert.deepEqual(r.offsets, expected, `${t}: offsets 1..${total}, each once, in order`);
      assert.deepEqual(
        r.data.map((d) => (d as { n: number }).n),
        expected,
        `${t}: the data of each offset`,
      );
      assert.deepEqual(r.resets, [], `${t}: nothing was lost`);
      assert.equal(r.state, "connected");
      // Chromium itself re-sends a GET whose reused keep-alive connection dies before any answer byte,
      // so a cut poll may go unnoticed by the client; WS and SSE clients see every cut.
      if (t !== "poll") {
        const drops = r.states.filter((x) => x === "disconnected").length;
        assert.ok(drops >= 2, `${t} lost its connection at both cuts: ${r.states.join(" → ")}`);
      }
    }
    // Chromium logs the cut streams themselves (net::ERR_…); anything else is a fault of the page.
    assert.deepEqual(errors.filter((e) => !/net::ERR_/.test(e)), []);
  });

  it("reconnects at once when a hidden tab becomes visible, instead of waiting out a long backoff", async () => {
    proxy = await startProxy({ port: s.port });
    const { page } = await pageBehind(proxy);
    await startClient(page, "c", { channel: "vis:1", transports: ["ws"], slowBackoff: true, shared: false });
    await connected(page, "c", "ws");
    await s.hl.publish("vis:1", { n: 1 });
    await received(page, "c", 1);

    await setVisibility(page, "hidden");
    proxy.cut();
    await inState(page, "c", "disconnected");
    await s.hl.publish("vis:1", { n: 2 }); // published while the tab is away
    await sleep(1000);
    assert.equal((await recorded(page, "c")).state, "disconnected", "the backoff (about 30 s) holds the client back");

    const shownAt = Date.now();
    await setVisibility(page, "visible");
    await connected(page, "c", "ws", 5000);
    await received(page, "c", 2, 5000);
    const took = Date.now() - shownAt;
    assert.ok(took < 5000, `reconnected ${took} ms after the tab became visible`);
    const r = await recorded(page, "c");
    assert.deepEqual(r.offsets, [1, 2], "the message published meanwhile was resumed");
    assert.deepEqual(r.resets, []);
  });
});
