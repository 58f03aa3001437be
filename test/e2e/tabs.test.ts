import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { getJson, startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";
import { connected, e2eSkipReason, launchBrowser, newContext, received, recorded, recordPageErrors, sleep, startClient } from "./helpers.js";
import { BLANK_PATH, startProxy, type TestProxy } from "./proxy.js";

const skip = e2eSkipReason();

describe("tabs of one origin", { skip }, () => {
  let s: TestServer;
  let browser: Browser;
  let proxy: TestProxy;
  let context: BrowserContext | undefined;

  before(async () => {
    [s, browser] = await Promise.all([startServer({ presence: ["room:*"] }), launchBrowser()]);
    proxy = await startProxy({ port: s.port });
  });
  after(async () => {
    await context?.close();
    await proxy?.close();
    await browser?.close();
    await s?.close();
  });

  it("three tabs hold one server connection between them (the client shares it through a SharedWorker)", async () => {
    context = await newContext(browser);
    const ctx = context;
    const tabs: Page[] = await Promise.all([0, 1, 2].map(() => ctx.newPage()));
    const errors = tabs.map((page) => recordPageErrors(page));
    await Promise.all(tabs.map((page) => page.goto(proxy.url + BLANK_PATH)));
    for (const page of tabs) await startClient(page, "c", { channel: "tabs:1", shared: true });
    for (const page of tabs) await connected(page, "c");
    await sleep(300); // a late second connection would show up here
    assert.equal(s.hl.connections, 1, "one connection for three tabs");
    assert.equal(s.hl.hub.subscriberCount("tabs:1"), 1);

    await s.hl.publish("tabs:1", { n: 1 });
    for (const page of tabs) await received(page, "c", 1);

    // The tab that opened the connection goes away; the others keep theirs (still one).
    await tabs.shift()!.close();
    await s.hl.publish("tabs:1", { n: 2 });
    for (const page of tabs) await received(page, "c", 2);
    for (const page of tabs) assert.deepEqual((await recorded(page, "c")).offsets, [1, 2]);
    await waitFor(() => s.hl.connections === 1, 5000, "one connection for the remaining tabs");
    assert.deepEqual(errors.flat(), []);

    await context.close();
    context = undefined;
    await waitFor(() => s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0, 5000, "the shared connection to close with the last tab");
  });

  it("without SharedWorker, the tabs elect a leader; when it closes, another takes over and resumes a channel that had delivered nothing", async () => {
    context = await newContext(browser);
    await context.addInitScript("delete globalThis.SharedWorker;");
    const ctx = context;
    const tabs: Page[] = await Promise.all([0, 1, 2].map(() => ctx.newPage()));
    const errors = tabs.map((page) => recordPageErrors(page));
    await Promise.all(tabs.map((page) => page.goto(proxy.url + BLANK_PATH)));
    assert.equal(await tabs[0]!.evaluate(() => typeof (globalThis as { SharedWorker?: unknown }).SharedWorker), "undefined");
    // The first tab asks for the lock first, so it leads.
    for (const page of tabs) {
      await startClient(page, "c", { channel: "tabs:2", shared: true });
      await connected(page, "c");
    }
    await sleep(300); // a late second connection would show up here
    assert.equal(s.hl.connections, 1, "one connection for three tabs");
    const position = (page: Page): Promise<unknown> => page.evaluate(() => window.heartlineTest!.c!.hl.positionOf("tabs:2") ?? null);
    await waitFor(async () => (await Promise.all(tabs.map(position))).every((p) => p !== null) || undefined, 5000, "every tab to know its position");

    // The leader goes while the network is down; messages are published meanwhile.
    proxy.offline = true;
    const refused = proxy.stats.refusedOffline;
    await tabs.shift()!.close();
    // Chromium tears a closed page down at its own pace (on a busy machine its socket has stayed open over
    // 15 s); the network being down, its connection is cut here rather than waited for.
    proxy.cut();
    await waitFor(() => s.hl.hub.subscriberCount("tabs:2") === 0, 15_000, "the old leader's subscription to go");
    for (let n = 1; n <= 3; n++) await s.hl.publish("tabs:2", { n });
    await waitFor(() => proxy.stats.refusedOffline > refused, 10_000, "the new leader to try to connect");
    proxy.offline = false;
    for (const page of tabs) await received(page, "c", 3);
    await s.hl.publish("tabs:2", { n: 4 });
    for (const page of tabs) await received(page, "c", 4);
    for (const page of tabs) {
      const rec = await recorded(page, "c");
      assert.deepEqual(rec.offsets, [1, 2, 3, 4]);
      assert.deepEqual(rec.resets, []);
    }
    await waitFor(() => s.hl.connections === 1, 5000, "one connection for the remaining tabs");
    // Only the refused connection attempts of the outage show up in the console.
    assert.deepEqual(errors.flat().filter((e) => !/net::ERR_/.test(e)), []);

    await context.close();
    context = undefined;
    await waitFor(() => s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0, 5000, "the leader's connection to close with the last tab");
  });

  it("presence: the tabs are one member with the connection's client id, and each tab sees joins and leaves", async () => {
    context = await newContext(browser);
    const ctx = context;
    const tabs: Page[] = await Promise.all([0, 1].map(() => ctx.newPage()));
    const errors = tabs.map((page) => recordPageErrors(page));
    await Promise.all(tabs.map((page) => page.goto(proxy.url + BLANK_PATH)));
    for (const page of tabs) {
      await page.evaluate(async () => {
        const url = "/heartline.js";
        const { Heartline } = await import(url);
        const hl = new Heartline(location.origin);
        const sub = hl.subscribe("room:tabs", () => {});
        const w = window as unknown as { presenceTest: unknown };
        w.presenceTest = { hl, sub };
      });
    }
    type Probe = { hl: { clientId: string }; sub: { presence(): Array<{ client: string }> | undefined } };
    const listOf = (page: Page) =>
      page.evaluate(() => {
        const t = (window as unknown as { presenceTest: Probe }).presenceTest;
        return { id: t.hl.clientId, clients: t.sub.presence()?.map((m) => m.client).sort() ?? null };
      });
    const outsider = await WsClient.connect(`${s.wsUrl}/ws?channel=room:tabs&client=outsider`);
    try {
      await waitFor(async () => (await Promise.all(tabs.map(listOf))).every((l) => l.clients?.length === 2) || undefined, 10_000, "both tabs to list two members");
      const [a, b] = await Promise.all(tabs.map(listOf));
      assert.equal(a!.id, b!.id, "one client id for the tabs");
      assert.deepEqual(a!.clients, [a!.id, "outsider"].sort());
      assert.deepEqual(b!.clients, a!.clients);
      assert.equal(s.hl.connections, 2, "one connection for the tabs, one for the outsider");
      const server = await getJson(`${s.url}/api/presence/room:tabs`);
      assert.deepEqual((server.body.members as Array<{ client: string }>).map((m) => m.client).sort(), a!.clients);

      outsider.send({ type: "unsubscribe", channel: "room:tabs" });
      await waitFor(async () => (await Promise.all(tabs.map(listOf))).every((l) => l.clients?.length === 1) || undefined, 10_000, "both tabs to see the leave");
      for (const l of await Promise.all(tabs.map(listOf))) assert.deepEqual(l.clients, [a!.id]);
      assert.deepEqual(errors.flat(), []);
    } finally {
      outsider.close();
      await context.close();
      context = undefined;
    }
    await waitFor(() => s.hl.connections === 0, 5000, "the connections to close");
  });
});
