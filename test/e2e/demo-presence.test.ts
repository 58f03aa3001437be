/**
 * The demo's "Here now" list in headless Chromium: it is the presence of the
 * arena's channel (on by default in the demo), named by the arena's
 * subscribe hook; two pages see each other in it, a rename shows (WebSocket), a page
 * that leaves disappears from the other's list, and a page whose name cookie did not
 * go with its handshake is named once it has joined.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { ARENA_CHANNEL } from "../../src/demo/arena.js";
import { getJson, waitFor, type TestServer } from "../helpers/server.js";
import { e2eSkipReason, launchBrowser, playDemo, RESULTS_DIR, seat, startArena, waitInPage, type Seat } from "./helpers.js";

const skip = e2eSkipReason();

/** The page's list as it shows it: names, this page's marked. */
const shown = (page: Page) =>
  page.$$eval("#here li", (lis) => lis.map((li) => (li.querySelector(".nm")?.textContent ?? "") + (li.querySelector(".you") ? " (you)" : "")));

describe("demo: who is here, from presence", { skip }, () => {
  let game: Awaited<ReturnType<typeof startArena>>;
  let s: TestServer;
  let browser: Browser;

  before(async () => {
    [game, browser] = await Promise.all([startArena(), launchBrowser()]);
    s = game.s;
  });
  after(async () => {
    await browser?.close();
    if (s) await waitFor(() => s.hl.connections === 0, 8000, "connections to close");
    await game?.close();
  });

  for (const transport of ["ws", "sse"] as const) {
    it(`${transport}: two pages list each other by name; one leaving disappears from the other's list`, async () => {
      const alice: Seat = await seat(browser, `Alice${transport}`);
      const bob: Seat = await seat(browser, `Bob${transport}`);
      try {
        await Promise.all([playDemo(alice, s.url, transport), playDemo(bob, s.url, transport)]);
        await waitInPage(bob.page, () => window.heartlineDemo.here().length === 2, null, "Bob to list two", 20_000);
        await waitInPage(alice.page, () => window.heartlineDemo.here().length === 2, null, "Alice to list two", 20_000);
        assert.deepEqual(await shown(bob.page), [`Bob${transport} (you)`, `Alice${transport}`]);
        assert.deepEqual(await shown(alice.page), [`Alice${transport} (you)`, `Bob${transport}`]);
        assert.equal(await bob.page.textContent("#here-count"), "2");
        // The name cookie goes with the subscribe requests only: a cookie on /api/… would make the page a client there.
        const cookies = (await bob.page.context().cookies()).filter((c) => c.name === "arena-name");
        assert.deepEqual(cookies.map((c) => c.path).sort(), ["/poll", "/sse", "/ws"]);

        // The list is the server's.
        const p = await getJson(`${s.url}/api/presence/${ARENA_CHANNEL}`, { headers: { Authorization: "Bearer demo-key" } });
        assert.equal(p.status, 200);
        const names = (p.body.members as Array<{ info: { name: string } | null }>).map((m) => m.info?.name).sort();
        assert.deepEqual(names, [`Alice${transport}`, `Bob${transport}`]);
        const clients = await bob.page.evaluate(() => window.heartlineDemo.here().map((h) => h.client).sort());
        assert.deepEqual(clients, (p.body.members as Array<{ client: string }>).map((m) => m.client).sort());

        // A rename reaches the others' lists: the page subscribes anew with the new name, a leave and a join for
        // the others. (Over SSE the stream reopens as the same member, whose new info the server keeps without an event.)
        const bobName = transport === "ws" ? "Robertws" : bob.name;
        if (transport === "ws") {
          await bob.page.fill("#name", bobName);
          await bob.page.click("#name-form button");
          await waitInPage(alice.page, (n) => window.heartlineDemo.here().some((h) => h.name === n), bobName, "Alice to see the new name");
          assert.deepEqual(await shown(alice.page), [`Alice${transport} (you)`, bobName]);
          await bob.page.screenshot({ path: join(RESULTS_DIR, "demo-here.png") });
        }

        // Alice leaves: her page unsubscribes as it goes (a WebSocket at once, well within the server's grace of 5 s; SSE at the latest after it).
        await alice.page.close({ runBeforeUnload: true });
        await waitInPage(bob.page, () => window.heartlineDemo.here().length === 1, null, "Alice gone from Bob's list", transport === "ws" ? 4500 : 10_000);
        assert.deepEqual(await shown(bob.page), [`${bobName} (you)`]);
        assert.deepEqual([...alice.errors, ...bob.errors], []);
      } finally {
        await alice.page.context().close();
        await bob.page.context().close();
      }
    });
  }

  it("a page whose name cookie missed its handshake is listed by name once it joins", async () => {
    const carol: Seat = await seat(browser, "Carol");
    const dave: Seat = await seat(browser, "Dave");
    // The cookie write is lost, as when the browser stores it only after the WebSocket handshake has gone.
    await carol.page.addInitScript(() => Object.defineProperty(Document.prototype, "cookie", { configurable: true, get: () => "", set: () => {} }));
    try {
      await playDemo(dave, s.url, "ws");
      await playDemo(carol, s.url, "ws");
      assert.deepEqual((await carol.page.context().cookies()).filter((c) => c.name === "arena-name"), [], "no cookie went with Carol's handshake");
      await waitInPage(dave.page, () => window.heartlineDemo.here().some((h) => h.name === "Carol"), null, "Dave to list Carol by name");
      await waitInPage(carol.page, () => window.heartlineDemo.here().some((h) => h.me && h.name === "Carol"), null, "Carol to list herself by name");
      // Listed once, by name: the nameless entry left before the named one joined.
      const list = await shown(dave.page);
      assert.deepEqual(list.filter((n) => n === "Carol" || n === "someone"), ["Carol"]);
      assert.deepEqual([...carol.errors, ...dave.errors], []);
    } finally {
      await carol.page.context().close();
      await dave.page.context().close();
    }
  });
});
