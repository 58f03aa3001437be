import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser } from "playwright-core";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";
import { e2eSkipReason, launchBrowser, myself, playDemo, seat, sees, seesAt, sent, standing, waitInPage, type Seat } from "./helpers.js";

const LABELS: Record<string, string> = { ws: "WebSocket", sse: "SSE", poll: "polling" };
const skip = e2eSkipReason();

describe("demo game over each transport", { skip }, () => {
  let s: TestServer;
  let browser: Browser;
  let alice: Seat;
  let bob: Seat;

  before(async () => {
    [s, browser] = await Promise.all([startServer({ clientPublish: ["game:*"] }), launchBrowser()]);
    [alice, bob] = await Promise.all([seat(browser, "Alice"), seat(browser, "Bob")]);
  });
  after(async () => {
    await browser?.close();
    if (s) await waitFor(() => s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0 && s.hl.hub.totalWaiters === 0, 5000, "connections to close");
    await s?.close();
  });

  for (const transport of ["ws", "sse", "poll"] as const) {
    it(`two players see each other move over ${transport} (?transport=${transport})`, async () => {
      await Promise.all([playDemo(alice, s.url, transport), playDemo(bob, s.url, transport)]);
      // Presence: each sees the other from the first position message or beacon.
      await sees(bob.page, alice.id, "Bob to see Alice");
      await sees(alice.page, bob.id, "Alice to see Bob");

      // Alice moves through the test hook: Bob receives her exact new position.
      const a = await alice.page.evaluate(() => window.heartlineDemo.move(-10_000, -10_000));
      assert.deepEqual(a, { x: 16, y: 16 }, "move() clamps to the arena's top-left corner");
      await seesAt(bob.page, alice.id, a, "Bob to see Alice in the corner");
      const a2 = await alice.page.evaluate(() => window.heartlineDemo.move(150, 90));
      assert.deepEqual(a2, { x: 166, y: 106 });
      await seesAt(bob.page, alice.id, a2, "Bob to see Alice's second move");

      // Bob moves with the keyboard: Alice sees him arrive where he stopped.
      const b0 = await myself(bob.page);
      await bob.page.keyboard.down("ArrowLeft");
      await new Promise((r) => setTimeout(r, 300));
      await bob.page.keyboard.up("ArrowLeft");
      const b1 = await standing(bob.page);
      assert.ok(b1.x < b0.x - 5, `the arrow key moved Bob left (${b0.x} → ${b1.x})`);
      assert.equal(b1.y, b0.y);
      await seesAt(alice.page, bob.id, sent(b1), "Alice to see Bob's keyboard move");

      // The page shows the transport, the player count and a measured round trip.
      await waitInPage(alice.page, (label) => document.getElementById("transport")?.textContent === label, LABELS[transport]!, "the transport label");
      assert.equal(await alice.page.textContent("#count"), "2");
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

  it("tells how to enable playing when the server does not let browsers publish on game:*", async () => {
    const closed = await startServer(); // no --client-publish
    try {
      await alice.page.goto(`${closed.url}/?name=Alice&transport=ws`);
      const banner = await waitInPage(
        alice.page,
        () => {
          const b = document.getElementById("banner")!;
          return b.hidden ? undefined : b.textContent;
        },
        null,
        "the banner",
      );
      assert.match(banner, /--client-publish 'game:\*'/);
      assert.equal(await alice.page.evaluate(() => window.heartlineDemo.transport()), "ws", "still connected, watching");
    } finally {
      await alice.page.goto("about:blank");
      await closed.close();
    }
  });
});
