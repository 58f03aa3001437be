/**
 * hl.rpc() in Chromium, from the browser bundle (/heartline.js), behind a
 * proxy that forces the client off WebSocket: to SSE (upgrades refused) and
 * to long polling (SSE dropped as well). The calls go over POST /api/rpc
 * from a page whose connection lives in a SharedWorker, with the token a
 * tab's getToken() gives.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { sign } from "../helpers/auth.js";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";
import { rpcApp } from "../client/rpc-app.js";
import { e2eSkipReason, launchBrowser, newContext, recordPageErrors, waitInPage } from "./helpers.js";
import { BLANK_PATH, startProxy, type TestProxy } from "./proxy.js";

const skip = e2eSkipReason();
const SECRET = "rpc-e2e-secret-of-at-least-32-bytes!!";

/** What a call from the page gave: its result, or its error's fields. */
type Outcome = { ok: true; result: unknown } | { ok: false; name: string; code: string; message: string; status: number | null };

interface PageRpc {
  hl: { state: string; transport: string | undefined; rpc(method: string, params?: unknown, options?: { timeout?: number }): Promise<unknown>; close(): void };
}

declare global {
  interface Window {
    rpcTest?: PageRpc;
  }
}

/** Starts a client in `page` (shared through a SharedWorker unless `shared` is false), subscribed to `channel`. */
async function startRpcClient(page: Page, spec: { channel: string; token?: string; shared?: boolean }): Promise<void> {
  await page.evaluate(async ({ channel, token, shared }) => {
    // A variable keeps the import dynamic: the bundle exists only at the page's origin.
    const url = "/heartline.js";
    const { Heartline } = await import(url);
    const options: Record<string, unknown> = { openTimeout: 3 };
    if (token) options.getToken = async () => token;
    if (shared !== undefined) options.shared = shared;
    const hl = new Heartline(location.origin, options);
    hl.subscribe(channel, () => {});
    window.rpcTest = { hl };
  }, spec);
}

/** Calls `method` from the page's client. */
function call(page: Page, method: string, params?: unknown, timeout?: number): Promise<Outcome> {
  return page.evaluate(
    async ({ method, params, timeout }) => {
      try {
        return { ok: true as const, result: await window.rpcTest!.hl.rpc(method, params, timeout === undefined ? {} : { timeout }) };
      } catch (e) {
        const err = e as { name: string; code: string; message: string; status?: number };
        return { ok: false as const, name: err.name, code: err.code, message: err.message, status: err.status ?? null };
      }
    },
    { method, params, timeout },
  );
}

function connectedOver(page: Page, transport: string): Promise<unknown> {
  return waitInPage(
    page,
    (t) => window.rpcTest?.hl.state === "connected" && window.rpcTest.hl.transport === t,
    transport,
    `the page's client connected over ${transport}`,
    15_000,
  );
}

describe("hl.rpc in the browser", { skip }, () => {
  const app = rpcApp();
  let s: TestServer;
  let browser: Browser;
  let proxy: TestProxy | undefined;
  let context: BrowserContext | undefined;

  before(async () => {
    [s, browser] = await Promise.all([startServer({ jwtSecret: SECRET }, { hooks: app.hooks }), launchBrowser()]);
  });
  afterEach(async () => {
    await context?.close();
    context = undefined;
    await proxy?.close();
    proxy = undefined;
    await waitFor(() => s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0 && s.hl.hub.totalWaiters === 0, 5000, "connections to close");
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  /** A page on the proxy's origin, so its client connects (and loads the bundle) through the proxy. */
  async function pageBehind(p: TestProxy): Promise<{ page: Page; errors: string[] }> {
    context = await newContext(browser);
    const page = await context.newPage();
    const errors = recordPageErrors(page);
    await page.goto(p.url + BLANK_PATH);
    return { page, errors };
  }

  for (const to of ["sse", "poll"] as const) {
    it(`after a forced fallback to ${to === "sse" ? "SSE" : "long polling"}: POST /api/rpc with results, refusals and timeouts`, async () => {
      proxy = await startProxy({ port: s.port }, { upgrade: "refuse" });
      if (to === "poll") proxy.blocked.add("/sse");
      const { page, errors } = await pageBehind(proxy);
      await startRpcClient(page, { channel: `public:rpc-${to}` });
      await connectedOver(page, to);
      assert.ok(proxy.stats.upgradesRefused >= 1, "the client tried WebSocket first");
      assert.equal(s.hl.connectionsByTransport.ws, 0);

      const params = { move: "e4", list: [1, null, "é"] };
      assert.deepEqual(await call(page, "echo", params), { ok: true, result: { params, transport: "http" } });
      assert.deepEqual(await call(page, "value", false), { ok: true, result: false });
      assert.deepEqual(await call(page, "refuse"), { ok: false, name: "HeartlineError", code: "bad_move", message: "that move is not allowed", status: 422 });
      const slow = await call(page, "wait", { key: `browser-${to}` }, 300);
      assert.equal(slow.ok, false);
      assert.equal((slow as { code: string }).code, "rpc_timeout");
      await app.open(`browser-${to}`);
      assert.deepEqual(await call(page, "value", 7), { ok: true, result: 7 }, "the client goes on after a timeout");

      const calls = app.calls.filter((c) => c.method === "echo" && (c.params as { move?: string } | null)?.move === "e4");
      assert.equal(calls.at(-1)!.transport, "http");
      assert.deepEqual(errors.filter((e) => !/net::ERR_|status of 4\d\d/.test(e)), []);
    });
  }

  it("a shared connection (SharedWorker) on SSE calls with the token a tab's getToken() gives", async () => {
    proxy = await startProxy({ port: s.port }, { upgrade: "refuse" });
    const token = await sign({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 120, channels: ["private:*"] }, SECRET);
    const { page, errors } = await pageBehind(proxy);
    await startRpcClient(page, { channel: "private:alice", token, shared: true });
    await connectedOver(page, "sse");
    assert.deepEqual(await call(page, "whoami"), { ok: true, result: "alice" });
    assert.equal(app.calls.at(-1)!.authorization, `Bearer ${token}`);
    assert.equal(s.hl.connections, 1);
    assert.deepEqual(errors.filter((e) => !/net::ERR_|status of 4\d\d/.test(e)), []);
  });
});
