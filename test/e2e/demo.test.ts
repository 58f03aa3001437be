import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";
import {
  e2eSkipReason,
  launchBrowser,
  myself,
  newContext,
  playDemo,
  recordPageErrors,
  RESULTS_DIR,
  seat,
  sees,
  seesAt,
  standing,
  startArena,
  waitInPage,
  type Seat,
} from "./helpers.js";

const LABELS: Record<string, string> = { ws: "WebSocket", sse: "SSE", poll: "polling" };
const skip = e2eSkipReason();

describe("demo game over each transport", { skip }, () => {
  let game: Awaited<ReturnType<typeof startArena>>;
  let s: TestServer;
  let browser: Browser;
  let alice: Seat;
  let bob: Seat;

  before(async () => {
    [game, browser] = await Promise.all([startArena(), launchBrowser()]);
    s = game.s;
    [alice, bob] = await Promise.all([seat(browser, "Alice"), seat(browser, "Bob")]);
  });
  after(async () => {
    await browser?.close();
    if (s) await waitFor(() => s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0 && s.hl.hub.totalWaiters === 0, 5000, "connections to close");
    await game?.close();
  });

  for (const transport of ["ws", "sse", "poll"] as const) {
    it(`two players see each other where the server puts them over ${transport} (?transport=${transport})`, async () => {
      await Promise.all([playDemo(alice, s.url, transport), playDemo(bob, s.url, transport)]);
      // Both joined through arena.join and appear in the server's snapshots.
      await sees(bob.page, alice.id, "Bob to see Alice");
      await sees(alice.page, bob.id, "Alice to see Bob");
      assert.ok(game.arena.size >= 2, "the server holds both players");

      // Alice walks with the keyboard (toward the middle): her moves go to the server, and Bob sees her where the server keeps her.
      const a0 = await standing(alice.page);
      const key = a0.x > 480 ? "ArrowLeft" : "ArrowRight";
      await alice.page.keyboard.down(key);
      await new Promise((r) => setTimeout(r, 300));
      await alice.page.keyboard.up(key);
      const a1 = await standing(alice.page);
      assert.ok(Math.abs(a1.x - a0.x) > 5 && a1.x < a0.x === (key === "ArrowLeft"), `the arrow key moved Alice (${a0.x} → ${a1.x})`);
      assert.equal(a1.y, a0.y);
      await seesAt(bob.page, alice.id, a1, "Bob to see Alice where the server put her");

      // Bob taps a point of the arena: he walks there and Alice sees him arrive.
      const b0 = await myself(bob.page);
      const goal = { x: b0.x > 480 ? b0.x - 120 : b0.x + 120, y: b0.y > 280 ? b0.y - 80 : b0.y + 80 };
      const box = (await bob.page.locator("#arena").boundingBox())!;
      await bob.page.mouse.click(box.x + (goal.x / 960) * box.width, box.y + (goal.y / 560) * box.height);
      const b1 = await standing(bob.page);
      assert.ok(Math.hypot(b1.x - goal.x, b1.y - goal.y) < 3, `Bob walked to the tapped point (${b1.x}, ${b1.y})`);
      await seesAt(alice.page, bob.id, b1, "Alice to see Bob at the tapped point");

      // The page shows the transport, the player count, the score board and a measured round trip.
      await waitInPage(alice.page, (label) => document.getElementById("transport")?.textContent === label, LABELS[transport]!, "the transport label");
      await waitInPage(alice.page, () => document.getElementById("count")?.textContent === "2", null, "two players counted");
      assert.equal(await alice.page.locator("#players li").count(), 2);
      assert.match((await alice.page.textContent("#players"))!, /Alice\(you\)\d+Bob\d+|Bob\d+Alice\(you\)\d+/);
      assert.equal(await alice.page.textContent("#state"), "connected");
      const latency = await waitInPage(alice.page, () => (Number.isFinite(window.heartlineDemo.latency()) ? window.heartlineDemo.latency() : 0), null, "a latency sample");
      assert.ok(latency > 0 && latency < 5000, `latency ${latency} ms`);
      assert.match((await alice.page.textContent("#latency"))!, /^\d+(\.\d)? ms$/);
      if (transport !== "poll") {
        // WS and SSE hold one connection per page (a poll is counted only while the server holds it).
        await waitFor(() => s.hl.connectionsByTransport[transport] === 2 && s.hl.connections === 2, 5000, `two ${transport} connections`);
      }
      assert.deepEqual([...alice.errors, ...bob.errors], []);
    });
  }

  it("plays on a phone: a tap walks the player there and the server agrees", async () => {
    const context = await newContext(browser, { viewport: { width: 390, height: 760 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 });
    const phone: Seat = { page: await context.newPage(), errors: [], id: "", name: "Phone" };
    phone.errors = recordPageErrors(phone.page);
    try {
      await playDemo(phone, s.url, "sse");
      const box = (await phone.page.locator("#arena").boundingBox())!;
      assert.ok(box.x >= 0 && box.x + box.width <= 390, `the arena fits the screen (${box.x}, ${box.width})`);
      const p0 = await standing(phone.page);
      const goal = { x: p0.x > 480 ? p0.x - 200 : p0.x + 200, y: p0.y > 280 ? p0.y - 100 : p0.y + 100 };
      await phone.page.touchscreen.tap(box.x + (goal.x / 960) * box.width, box.y + (goal.y / 560) * box.height);
      const p1 = await standing(phone.page);
      // A tap lands on a CSS pixel, about 2.5 arena units on this screen.
      assert.ok(Math.hypot(p1.x - goal.x, p1.y - goal.y) < 4, `walked to the tapped point (${p1.x}, ${p1.y}) ≈ (${goal.x}, ${goal.y})`);
      await seesAt(alice.page, phone.id, p1, "Alice to see the phone's player there");
      mkdirSync(RESULTS_DIR, { recursive: true });
      await phone.page.screenshot({ path: join(RESULTS_DIR, "demo-phone.png"), fullPage: true });
      assert.deepEqual(phone.errors, []);
    } finally {
      await context.close();
    }
  });

  it("two tabs of one browser share one connection and play as two players", async () => {
    await Promise.all([alice.page.goto("about:blank"), bob.page.goto("about:blank")]);
    await waitFor(() => s.hl.connections === 0, 5000, "the earlier pages' connections to close");
    const context = await newContext(browser);
    try {
      const tabs = [await context.newPage(), await context.newPage()];
      const errors = tabs.flatMap((t) => recordPageErrors(t));
      await tabs[0]!.goto(`${s.url}/?name=TabA`);
      await tabs[1]!.goto(`${s.url}/?name=TabB`);
      const ids = await Promise.all(tabs.map((t) => waitInPage(t, () => window.heartlineDemo.me, null, "the tab to join")));
      assert.notEqual(ids[0], ids[1]);
      await waitInPage(tabs[0]!, (id) => window.heartlineDemo.players().some((p) => p.id === id), ids[1]!, "tab A to see tab B");
      assert.equal(s.hl.connections, 1, "one connection for both tabs");
      // The walking tab in front: a background tab's timers run once a second, and it would walk a quarter as fast.
      await tabs[1]!.bringToFront();
      await tabs[1]!.evaluate(() => window.heartlineDemo.walkTo(100, 100));
      await seesAt(tabs[0]!, ids[1]!, { x: 100, y: 100 }, "tab A to see tab B arrive");
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it("says there is nothing to play when the server has no arena referee, and still connects to watch", async () => {
    const bare = await startServer({ clientPublish: ["game:*"] }); // `heartline serve`: no rpc hook
    try {
      await alice.page.goto(`${bare.url}/?name=Alice&transport=ws`);
      const banner = await waitInPage(
        alice.page,
        () => {
          const b = document.getElementById("banner")!;
          return b.hidden ? undefined : b.textContent;
        },
        null,
        "the banner",
      );
      assert.match(banner, /no arena referee.*npm start/);
      assert.equal(await alice.page.evaluate(() => window.heartlineDemo.transport()), "ws", "still connected, watching");
      assert.equal(await alice.page.evaluate(() => window.heartlineDemo.me), "", "not joined");
    } finally {
      await alice.page.goto("about:blank");
      await bare.close();
    }
  });
});
