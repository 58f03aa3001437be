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
  playDemo,
  recordPageErrors,
  RESULTS_DIR,
  seat,
  sees,
  seesAt,
  sent,
  sleep,
  standing,
  waitInPage,
  type Seat,
} from "./helpers.js";

declare global {
  interface Window {
    /** Set by the tests in the pages. */
    ghostGoneAt?: number;
    wander?: number;
  }
}

const skip = e2eSkipReason();

describe("demo game: two players on WebSocket", { skip }, () => {
  let s: TestServer;
  let browser: Browser;
  let alice: Seat;
  let bob: Seat;
  let ghostSentAt = 0;

  before(async () => {
    mkdirSync(RESULTS_DIR, { recursive: true });
    [s, browser] = await Promise.all([startServer({ clientPublish: ["game:*"] }), launchBrowser()]);
    [alice, bob] = await Promise.all([seat(browser, "Alice"), seat(browser, "Bob")]);
    await Promise.all([playDemo(alice, s.url, "ws"), playDemo(bob, s.url, "ws")]);
    await sees(bob.page, alice.id, "Bob to see Alice");
    // A player heard from once and never again (as if its tab froze); Bob records when it disappears.
    ghostSentAt = Date.now();
    await s.hl.publish("game:arena", { id: "ghost", name: "Ghost", kind: "beacon", x: 500, y: 300, vx: 0, vy: 0, ts: ghostSentAt, seq: 1 });
    await sees(bob.page, "ghost", "Bob to see the ghost");
    await bob.page.evaluate(() => {
      const timer = setInterval(() => {
        if (!window.heartlineDemo.players().some((p) => p.id === "ghost")) {
          window.ghostGoneAt = Date.now();
          clearInterval(timer);
        }
      }, 20);
    });
  });
  after(async () => {
    await browser?.close();
    if (s) await waitFor(() => s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0 && s.hl.hub.totalWaiters === 0, 5000, "connections to close");
    await s?.close();
  });

  it("draws the other player smoothly between received positions", async () => {
    const y = (await myself(alice.page)).y;
    await alice.page.evaluate(() => window.heartlineDemo.move(-10_000, 0));
    await seesAt(bob.page, alice.id, sent({ x: 16, y }), "Alice at the left wall");
    await sleep(300);
    // On every frame of Bob's page: when, where Alice is drawn, and which positions Bob has received.
    // Recording ends once she has been drawn standing still for 400 ms after moving (or after 5 s).
    const recording = bob.page.evaluate(
      (pid) =>
        new Promise<{ frames: Array<[number, number]>; received: number }>((resolve) => {
          const frames: Array<[number, number]> = [];
          const got = new Set<number>();
          const start = performance.now();
          let still = start;
          const frame = (now: number) => {
            const hook = window.heartlineDemo;
            const x = hook.view().find((p) => p.id === pid)!.x;
            const prev = frames[frames.length - 1];
            if (prev && Math.abs(x - prev[1]) > 0.01) still = now;
            frames.push([now, x]);
            got.add(hook.players().find((p) => p.id === pid)!.x);
            const moved = x - frames[0]![1] > 50;
            if ((moved && now - still > 400) || now - start > 5000) resolve({ frames, received: got.size - 1 });
            else requestAnimationFrame(frame);
          };
          requestAnimationFrame(frame);
        }),
      alice.id,
    );
    await alice.page.keyboard.down("ArrowRight");
    await sleep(1000);
    await alice.page.keyboard.up("ArrowRight");
    const { frames, received } = await recording;
    const x0 = frames[0]![1];
    const x1 = frames[frames.length - 1]![1];
    assert.ok(x1 > x0 + 100, `Alice is drawn far to the right by the end (${x0.toFixed(1)} → ${x1.toFixed(1)})`);
    assert.ok(received >= 3, `Bob received ${received} positions while Alice moved`);
    // While she is drawn moving (from the first frame she left her place to the first at her final place)...
    const from = frames.findIndex(([, x]) => x > x0 + 0.5);
    const to = frames.findIndex(([, x]) => x > x1 - 0.5);
    const steps = frames.slice(from, to + 1).flatMap(([t, x], i, all) => (i === 0 ? [] : [{ dt: t - all[i - 1]![0], dx: x - all[i - 1]![1] }]));
    assert.ok(steps.length >= 6, `${steps.length} frames of motion`);
    // ...she moves on (nearly) every frame, as interpolation between received positions does; drawing
    // only what arrives would move her on one frame in three at 60 frames/s and 20 messages/s.
    const movingFrames = steps.filter((st) => st.dx > 0.01).length / steps.length;
    assert.ok(movingFrames >= 0.8, `she moved on ${(movingFrames * 100).toFixed(0)}% of ${steps.length} frames`);
    // Never visibly backwards: extrapolation may overshoot a little when her own frames stall on a
    // busy machine and the correction pulls her back a few units, never more.
    const back = Math.min(...steps.map((st) => st.dx));
    const trace = () => JSON.stringify(frames.map(([t, x]) => [Math.round(t), Math.round(x * 10) / 10]));
    assert.ok(back > -20, `no step backwards (min ${back.toFixed(2)}): ${trace()}`);
    // Never much faster than her walking speed (0.3 units/ms): no jumps. (A slow frame on a busy
    // machine legitimately covers more ground: the bound grows with the frame's time.)
    // One catch-up step is allowed: when positions arrive late in a burst (the sending page or
    // the machine stalled), the view closes the gap once rather than replaying it slowly.
    const jumps = steps.filter((st) => st.dx > 30 + 0.6 * st.dt);
    assert.ok(jumps.length <= 1, `at most one catch-up jump: ${JSON.stringify(jumps)}: ${trace()}`);
  });

  it("a click or tap on the arena walks the avatar there, and the other player sees it arrive", async () => {
    const start = await myself(alice.page);
    const goal = { x: start.x > 480 ? start.x - 150 : start.x + 150, y: start.y > 280 ? start.y - 100 : start.y + 100 };
    const box = (await alice.page.locator("#arena").boundingBox())!;
    await alice.page.mouse.click(box.x + (goal.x / 960) * box.width, box.y + (goal.y / 560) * box.height);
    const arrived = await waitInPage(
      alice.page,
      (g) => {
        const me = window.heartlineDemo.players().find((p) => p.me)!;
        return Math.hypot(me.x - g.x, me.y - g.y) < 2 ? me : undefined;
      },
      goal,
      "Alice to walk to the clicked point",
    );
    const end = await standing(alice.page);
    assert.ok(Math.hypot(end.x - arrived.x, end.y - arrived.y) < 2, "she stops there");
    await seesAt(bob.page, alice.id, sent(end), "Bob to see Alice at the clicked point");
  });

  it("the dashboard charts the live figures of the server", async () => {
    const page = await bob.page.context().newPage();
    const errors = recordPageErrors(page);
    try {
      await page.goto(`${s.url}/dashboard`);
      // Traffic: Alice wanders left and right at 20 moves per second.
      await alice.page.evaluate(() => {
        let n = 0;
        window.wander = window.setInterval(() => window.heartlineDemo.move(n++ % 40 < 20 ? 6 : -6, 0), 50);
      });
      await waitInPage(page, () => window.heartlineDashboard.samples() >= 4, null, "four samples", 15_000);
      const latest = await page.evaluate(() => window.heartlineDashboard.latest());
      assert.equal(latest.connections!.WebSocket, 2, "the two players' WebSockets");
      assert.equal(latest.connections!.total, 2);
      assert.ok(latest.messages!["in (published)"]! > 1, `messages in ${latest.messages!["in (published)"]}/s`);
      assert.ok(latest.messages!["out (delivered)"]! > 1, `messages out ${latest.messages!["out (delivered)"]}/s`);
      const rss = latest.memory!.RSS!;
      assert.ok(rss > 10 * 2 ** 20, `RSS ${rss}`);
      assert.equal(latest.perconn!["RSS ÷ connections"], rss / 2);
      // The numbers beside the charts and the lines themselves.
      assert.equal(await page.textContent('[data-chart="connections"] dd[data-series="WebSocket"]'), "2");
      assert.match((await page.textContent('[data-chart="memory"] dd[data-series="RSS"]'))!, /^\d+(\.\d)? MiB$/);
      assert.match((await page.textContent('[data-chart="messages"] dd[data-series="out (delivered)"]'))!, /^[\d.]+k?\/s$/);
      const points = await page.$$eval("svg polyline", (lines) => lines.map((l) => (l.getAttribute("points") ?? "").split(" ").filter(Boolean).length));
      assert.ok(points.filter((n) => n >= 3).length >= 8, `most series have points: ${points.join(",")}`);
      await page.screenshot({ path: join(RESULTS_DIR, "dashboard.png"), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await alice.page.evaluate(() => clearInterval(window.wander));
      await page.close();
    }
  });

  it("drops a player silent for 5 s", async () => {
    const goneAt = await waitInPage(bob.page, () => window.ghostGoneAt, null, "the ghost to be dropped", 9000);
    // Bob heard it after it was sent, so he keeps it at least 5 s from then.
    const kept = goneAt - ghostSentAt;
    assert.ok(kept >= 4950 && kept < 9000, `the ghost was dropped ${kept} ms after it was sent`);
    assert.equal(await bob.page.textContent("#count"), "2");
  });

  it("screenshots two players in the arena", async () => {
    await alice.page.evaluate(() => {
      const me = window.heartlineDemo.players().find((p) => p.me)!;
      window.heartlineDemo.move(300 - me.x, 250 - me.y);
    });
    await bob.page.evaluate(() => {
      const me = window.heartlineDemo.players().find((p) => p.me)!;
      window.heartlineDemo.move(640 - me.x, 330 - me.y);
    });
    await seesAt(bob.page, alice.id, { x: 300, y: 250 }, "Alice in place");
    await waitInPage(bob.page, () => window.heartlineDemo.latency() > 0, null, "a latency sample");
    await sleep(400); // let the interpolation settle
    await bob.page.screenshot({ path: join(RESULTS_DIR, "demo.png") });
    assert.equal(await bob.page.textContent("#count"), "2");
  });

  it("drops a player who closes the tab at once", async () => {
    await alice.page.close({ runBeforeUnload: true });
    // Alice's page says goodbye on pagehide, so Bob drops her well before the silence limit.
    await waitInPage(bob.page, (pid) => !window.heartlineDemo.players().some((p) => p.id === pid), alice.id, "Alice to be gone", 3000);
    assert.equal(await bob.page.textContent("#count"), "1");
    await waitFor(() => s.hl.connectionsByTransport.ws === 1, 5000, "Alice's connection to close");
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  });
});
