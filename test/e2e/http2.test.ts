/**
 * Why Heartline speaks HTTP/2: in headless Chromium one page opens 20
 * EventSources to 20 channels of one origin. Over HTTPS with HTTP/2 they all
 * share one connection and every one receives its messages; over plain
 * HTTP/1.1 the browser holds at most six connections per origin, so the
 * seventh stream waits until one of the first six closes.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import { startServer, type TestServer } from "../helpers/server.js";
import { makeCert } from "../helpers/tls.js";
import { e2eSkipReason, launchBrowser, newContext, recordPageErrors, sleep, waitInPage } from "./helpers.js";

const skip = e2eSkipReason();
const STREAMS = 20;

declare global {
  interface Window {
    h2test: { sources: EventSource[]; got: string[][]; opened: boolean[] };
  }
}

/** Opens one EventSource per channel `e2e:<i>` (i < n) in the page; what each receives is kept in `window.h2test`. */
function openStreams(page: Page, n: number): Promise<void> {
  return page.evaluate((count) => {
    const t = { sources: [] as EventSource[], got: [] as string[][], opened: [] as boolean[] };
    window.h2test = t;
    for (let i = 0; i < count; i++) {
      t.got.push([]);
      t.opened.push(false);
      const es = new EventSource(`/sse?channel=e2e:${i}`);
      es.addEventListener("position", () => (t.opened[i] = true));
      es.onmessage = (ev) => t.got[i]!.push(JSON.parse(ev.data).data);
      t.sources.push(es);
    }
  }, n);
}

const received = (page: Page) => page.evaluate(() => window.h2test.got);

describe("twenty event streams on one page", { skip }, () => {
  let browser: Browser;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "heartline-e2e-tls-"));
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("over HTTPS with HTTP/2: every stream opens and receives its messages", async () => {
    const cert = makeCert(dir, "e2e");
    const s: TestServer = await startServer({ tlsCert: cert.certPath, tlsKey: cert.keyPath });
    const context = await newContext(browser, { ignoreHTTPSErrors: true });
    try {
      const page = await context.newPage();
      const errors = recordPageErrors(page);
      await page.goto(`https://127.0.0.1:${s.port}/healthz`);
      assert.equal(await page.evaluate(() => (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).nextHopProtocol), "h2");
      await openStreams(page, STREAMS);
      await waitInPage(page, (n) => window.h2test.opened.filter(Boolean).length === n, STREAMS, "every stream open");
      assert.equal(s.hl.connectionsByTransport.sse, STREAMS);
      for (let i = 0; i < STREAMS; i++) await s.hl.publish(`e2e:${i}`, `first ${i}`);
      for (let i = 0; i < STREAMS; i++) await s.hl.publish(`e2e:${i}`, `second ${i}`);
      await waitInPage(page, (n) => window.h2test.got.every((g) => g.length === 2) && window.h2test.got.length === n, STREAMS, "two messages on every stream");
      assert.deepEqual(
        await received(page),
        Array.from({ length: STREAMS }, (_, i) => [`first ${i}`, `second ${i}`]),
      );
      // The browser's /favicon.ico is answered 404; the page itself threw nothing.
      assert.deepEqual(errors.filter((e) => !e.startsWith("console: Failed to load resource")), []);
      await page.evaluate(() => window.h2test.sources.forEach((es) => es.close()));
    } finally {
      await context.close();
      await s.close();
    }
  });

  it("over plain HTTP/1.1: the seventh stream waits while six are open", async () => {
    const s: TestServer = await startServer();
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      await page.goto(`${s.url}/healthz`);
      assert.equal(await page.evaluate(() => (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).nextHopProtocol), "http/1.1");
      await openStreams(page, 8);
      await waitInPage(page, () => window.h2test.opened.slice(0, 6).every(Boolean), null, "the first six streams open");
      for (let i = 0; i < 8; i++) await s.hl.publish(`e2e:${i}`, `first ${i}`);
      await waitInPage(page, () => window.h2test.got.slice(0, 6).every((g) => g.length === 1), null, "a message on each of the first six");
      // Three seconds on: the seventh and eighth have neither opened nor received anything.
      await sleep(3000);
      assert.deepEqual(await page.evaluate(() => window.h2test.opened), [true, true, true, true, true, true, false, false]);
      assert.deepEqual((await received(page)).slice(6), [[], []]);
      assert.equal(s.hl.connectionsByTransport.sse, 6);
      // One of the six closes: the seventh gets its connection and, resuming from no cursor, opens.
      await page.evaluate(() => window.h2test.sources[0]!.close());
      await waitInPage(page, () => window.h2test.opened[6], null, "the seventh stream open once a connection is free");
      await page.evaluate(() => window.h2test.sources.forEach((es) => es.close()));
    } finally {
      await context.close();
      await s.close();
    }
  });
});
