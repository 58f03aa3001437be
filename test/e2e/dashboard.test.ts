/**
 * The dashboard's channels (web/dashboard.html at /dashboard) in headless
 * Chromium against a real server: the table of channels with their
 * subscriber and presence counts read through the server API with the API
 * key typed into the page, publishing to a channel and disconnecting a user
 * from it, and what it shows for a wrong key and bad input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { Hooks } from "../../src/index.js";
import { startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";
import { e2eSkipReason, launchBrowser, newContext, recordPageErrors, RESULTS_DIR, waitInPage } from "./helpers.js";

const skip = e2eSkipReason();
const API_KEY = "dashboard-key";

describe("dashboard: channels and the server API", { skip }, () => {
  let s: TestServer;
  let browser: Browser;
  let page: Page;
  let errors: string[];
  const clients: WsClient[] = [];
  // The connect hook names the user after ?user=.
  const hooks: Hooks = { connect: (ctx) => ({ user: ctx.query.user ?? "" }) };

  before(async () => {
    [s, browser] = await Promise.all([startServer({ apiKey: API_KEY, presence: ["room:*"] }, { hooks }), launchBrowser()]);
    page = await (await newContext(browser)).newPage();
    errors = recordPageErrors(page);
  });
  after(async () => {
    for (const c of clients) c.close();
    await browser?.close();
    await s?.close();
  });

  async function connect(query: string): Promise<WsClient> {
    const c = await WsClient.connect(`${s.wsUrl}/ws?${query}`);
    clients.push(c);
    return c;
  }
  const rows = () => page.evaluate(() => window.heartlineDashboard.channels());
  const status = (id: string) => page.textContent(`#${id}`);

  it("asks for the API key, then lists the channels with subscribers and presence counts", async () => {
    const ann1 = await connect("channel=room:a&client=a1&user=ann");
    const ann2 = await connect("channel=room:a&client=a2&user=ann");
    const bob = await connect("channel=room:a&channel=plain:b&client=b1&user=bob");
    for (const c of [ann1, ann2, bob]) await c.next((f) => f.type === "subscribed");

    await page.goto(`${s.url}/dashboard`);
    // The server has a key: without it the channels are not listed.
    await waitInPage(page, () => /API key/.test(document.getElementById("channels-status")!.textContent ?? ""), null, "the request for the key");
    assert.deepEqual(await rows(), []);

    await page.fill("#api-key", "not-the-key");
    await page.dispatchEvent("#api-key", "change");
    await waitInPage(page, () => /API key/.test(document.getElementById("channels-status")!.textContent ?? ""), null, "the wrong key refused");

    await page.fill("#api-key", API_KEY);
    await page.dispatchEvent("#api-key", "change");
    await waitInPage(page, () => window.heartlineDashboard.channels().length === 2, null, "two channels listed");
    assert.deepEqual(await rows(), [
      { channel: "plain:b", subscribers: 1, clients: null, users: null },
      { channel: "room:a", subscribers: 3, clients: 3, users: 2 },
    ]);
    assert.match((await status("channels-status"))!, /^2 active channels/);
    const cells = await page.$$eval('#channel-rows tr[data-channel="room:a"] td', (tds) => tds.slice(0, 4).map((td) => td.textContent));
    assert.deepEqual(cells, ["room:a", "3", "3", "2"]);
    assert.equal(await page.textContent('#channel-rows tr[data-channel="plain:b"] td:nth-child(3)'), "—");

    // The table follows: a client leaves (unsubscribe: no grace), the counts drop.
    bob.send({ type: "unsubscribe", channel: "room:a" });
    await waitInPage(page, () => window.heartlineDashboard.channels().find((r) => r.channel === "room:a")?.users === 1, null, "bob gone from room:a");
    assert.deepEqual((await rows()).find((r) => r.channel === "room:a"), { channel: "room:a", subscribers: 2, clients: 2, users: 1 });
    // Refused requests show in the console as failed loads; the page itself threw nothing.
    assert.deepEqual(errors.filter((e) => !e.startsWith("console: Failed to load resource")), []);
  });

  it("publishes to a channel picked in the table; bad JSON and refusals are shown, not sent", async () => {
    const [ann] = clients;
    await page.click('#channel-rows tr[data-channel="room:a"] button');
    assert.equal(await page.inputValue("#pub-channel"), "room:a");
    await page.fill("#pub-data", '{"text":"from the dashboard"}');
    await page.click('#publish-form button[type="submit"]');
    const m = await ann!.next((f) => f.type === "message");
    assert.deepEqual(m, { type: "message", channel: "room:a", offset: 1, data: { text: "from the dashboard" } });
    await waitInPage(page, () => /published to room:a at offset 1/.test(document.getElementById("action-status")!.textContent ?? ""), null, "the answer shown");

    await page.fill("#pub-data", "{not json");
    await page.click('#publish-form button[type="submit"]');
    await waitInPage(page, () => /not JSON/.test(document.getElementById("action-status")!.textContent ?? ""), null, "bad JSON shown");
    await page.fill("#pub-channel", "bad channel!");
    await page.fill("#pub-data", "1");
    await page.click('#publish-form button[type="submit"]');
    await waitInPage(page, () => /publish refused: .*\(bad_channel\)/.test(document.getElementById("action-status")!.textContent ?? ""), null, "the server's refusal shown");
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(ann!.frames.filter((f) => f.type === "message").length, 1, "nothing else was published");
  });

  it("disconnects a user for good; the count goes down", async () => {
    const [ann1, ann2, bob] = clients;
    await page.fill("#dc-user", "ann");
    await page.uncheck("#dc-reconnect");
    await page.click('#disconnect-form button[type="submit"]');
    await waitInPage(page, () => /disconnected 2 connections of ann/.test(document.getElementById("action-status")!.textContent ?? ""), null, "the answer shown");
    for (const c of [ann1!, ann2!]) {
      const code = await new Promise<number>((r) => (c.ws.readyState === c.ws.CLOSED ? r(-1) : c.ws.once("close", (n: number) => r(n))));
      assert.ok(code === 4403 || code === -1, `closed with ${code}`);
    }
    await waitFor(() => s.hl.connections === 1, 5000, "only bob left");
    assert.equal(bob!.ws.readyState, bob!.ws.OPEN);
    await waitInPage(page, () => !window.heartlineDashboard.channels().some((r) => r.channel === "room:a" && r.subscribers > 0), null, "room:a empty");
    await page.screenshot({ path: join(RESULTS_DIR, "dashboard-channels.png"), fullPage: true });
    // Refused requests show in the console as failed loads; the page itself threw nothing.
    assert.deepEqual(errors.filter((e) => !e.startsWith("console: Failed to load resource")), []);
  });

  it("shows the fallbacks and cut connections clients report, most frequent first", async () => {
    const report = (body: unknown) =>
      fetch(`${s.url}/api/diagnostics`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    assert.equal((await report({ fallbacks: [{ from: "ws", to: "sse", reason: "timeout" }], cuts: [{ transport: "sse", cause: "silent" }] })).status, 200);
    assert.equal((await report({ fallbacks: [{ from: "ws", to: "sse", reason: "timeout" }, { from: "sse", to: "poll", reason: "failed" }] })).status, 200);
    const table = (id: string) => page.evaluate((i) => Array.from(document.querySelectorAll(`#${i} tr`), (tr) => Array.from(tr.children, (td) => td.textContent)), id);
    await waitInPage(page, () => document.querySelectorAll("#fallback-rows tr").length === 2, null, "two fallback rows");
    assert.deepEqual(await table("fallback-rows"), [
      ["ws → sse", "timeout", "2"],
      ["sse → poll", "failed", "1"],
    ]);
    assert.deepEqual(await table("cut-rows"), [["sse", "silent", "1"]]);
    await page.screenshot({ path: join(RESULTS_DIR, "dashboard-clients.png"), fullPage: true });
    // Refused requests show in the console as failed loads; the page itself threw nothing.
    assert.deepEqual(errors.filter((e) => !e.startsWith("console: Failed to load resource")), []);
  });
});
