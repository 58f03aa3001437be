/**
 * Cookie sessions in a real browser (SPEC §8): the page logs in at the
 * example backend (examples/backend/server.mjs), which sets an HttpOnly
 * `sid` cookie; Heartline (`heartline serve --proxy-*-url`, a child process)
 * on another port of the same host gets that cookie from the browser's
 * WebSocket, EventSource and fetch, and its connect hook names the user.
 * The browser client then subscribes, publishes and calls RPCs over each
 * transport as that user; a browser without the cookie is refused.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { openConnections, startBackend, type Backend } from "../helpers/backend.js";
import { startChildServer, type ChildServer } from "../helpers/child.js";
import { getJson, waitFor } from "../helpers/server.js";
import { connected, e2eSkipReason, launchBrowser, newContext, publishFrom, received, recorded, startClient, waitInPage } from "./helpers.js";

const skip = e2eSkipReason();
const API_KEY = "e2e-hooks-key";

describe("cookie sessions through the HTTP hooks, in Chromium", { skip }, () => {
  let backend: Backend;
  let hl: ChildServer;
  let browser: Browser;
  const contexts: BrowserContext[] = [];

  before(async () => {
    backend = await startBackend();
    [hl, browser] = await Promise.all([startChildServer([...backend.proxyArgs(), "--api-key", API_KEY]), launchBrowser()]);
  });
  after(async () => {
    for (const c of contexts) await c.close();
    await browser?.close();
    await hl?.stop();
    await backend?.stop();
  });

  /** A fresh browser profile with one page on Heartline's origin. */
  async function freshPage(): Promise<{ page: Page }> {
    const context = await newContext(browser);
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(`${hl.url}/healthz`);
    return { page };
  }

  /** Logs in as a person would: a form posted to the backend, then back to Heartline's origin. */
  async function logIn(page: Page, name: string): Promise<void> {
    const answered = page.waitForNavigation({ url: `${backend.url}/login` });
    await page.evaluate(
      ({ action, name }) => {
        const form = document.createElement("form");
        form.method = "post";
        form.action = action;
        const input = document.createElement("input");
        input.name = "name";
        input.value = name;
        form.append(input);
        document.body.append(form);
        form.submit();
      },
      { action: `${backend.url}/login`, name },
    );
    const res = await answered;
    assert.ok(res, "the login form was answered");
    assert.deepEqual(await res.json(), { user: name });
    await page.goto(`${hl.url}/healthz`);
  }

  it("the browser sends the HttpOnly cookie with fetch, WebSocket and EventSource; the hooks name the user", async () => {
    const { page } = await freshPage();
    await logIn(page, "alice");
    const seen = await page.evaluate(async () => {
      const rpc = await fetch("/api/rpc", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ method: "whoami" }) });
      const ws = await new Promise<unknown>((resolve, reject) => {
        const socket = new WebSocket(`ws://${location.host}/ws`);
        socket.onopen = () => socket.send(JSON.stringify({ type: "rpc", id: 1, method: "whoami" }));
        socket.onmessage = (e) => {
          const f = JSON.parse(String(e.data));
          if (f.type === "rpc") {
            socket.close();
            resolve(f.result);
          }
        };
        socket.onclose = () => reject(new Error("closed before the answer"));
      });
      const sse = await new Promise<string>((resolve) => {
        const es = new EventSource("/sse?channel=private:alice");
        es.onopen = () => {
          es.close();
          resolve("open");
        };
        es.onerror = () => {
          es.close();
          resolve("error");
        };
      });
      return { cookie: document.cookie, rpc: { status: rpc.status, body: await rpc.json() }, ws, sse };
    });
    assert.deepEqual(seen, { cookie: "", rpc: { status: 200, body: { result: { user: "alice" } } }, ws: { user: "alice" }, sse: "open" });
  });

  for (const transport of ["ws", "sse", "poll"] as const) {
    it(`the browser client over ${transport}: subscribes to private:alice, publishes to a room through the publish hook`, async () => {
      const { page } = await freshPage();
      await logIn(page, "alice");
      await startClient(page, "mine", { channel: "private:alice", transports: [transport], shared: false });
      await startClient(page, "room", { channel: `room:${transport}`, transports: [transport], shared: false });
      await connected(page, "mine", transport);
      await connected(page, "room", transport);
      const pub = await getJson(`${hl.url}/api/publish`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
        body: JSON.stringify({ channel: "private:alice", data: { note: transport } }),
      });
      assert.equal(pub.status, 200);
      await received(page, "mine", 1);
      assert.deepEqual((await recorded(page, "mine")).data, [{ note: transport }]);

      await publishFrom(page, "room", `room:${transport}`, { text: `  hello over ${transport}  ` });
      await received(page, "room", 1);
      const [data] = (await recorded(page, "room")).data as Array<Record<string, unknown>>;
      assert.equal(data!.text, `hello over ${transport}`, "trimmed by the publish hook");
      assert.equal(data!.user, "alice", "stamped with the session's user");
      await page.close();
    });
  }

  it("a browser without the cookie is refused everywhere; after logout the cookie no longer works", async () => {
    const { page } = await freshPage();
    const refused = () =>
      page.evaluate(async () => {
        const rpc = await fetch("/api/rpc", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ method: "whoami" }) });
        const ws = await new Promise<string>((resolve) => {
          const socket = new WebSocket(`ws://${location.host}/ws`);
          socket.onopen = () => resolve("open");
          socket.onclose = () => resolve("refused");
        });
        const sse = await new Promise<number>((resolve) => {
          const es = new EventSource("/sse?channel=room:lobby");
          es.onopen = () => resolve(es.readyState);
          es.onerror = () => resolve(es.readyState);
        });
        return { rpc: rpc.status, code: (await rpc.json()).error?.code, ws, sseClosed: sse === EventSource.CLOSED };
      });
    assert.deepEqual(await refused(), { rpc: 401, code: "not_logged_in", ws: "refused", sseClosed: true });

    await logIn(page, "bob");
    assert.equal(await page.evaluate(async () => (await fetch("/api/rpc", { method: "POST", headers: { "content-type": "application/json" }, body: '{"method":"whoami"}' })).status), 200);
    await page.evaluate(async (url) => void (await fetch(url, { method: "POST", credentials: "include", mode: "no-cors" })), `${backend.url}/logout`);
    // The rpc above may be reused for a few seconds (SPEC leaves polls and plain requests that room); a WebSocket always asks.
    await waitInPage(
      page,
      () =>
        new Promise<boolean>((resolve) => {
          const socket = new WebSocket(`ws://${location.host}/ws`);
          socket.onopen = () => {
            socket.close();
            resolve(false);
          };
          socket.onclose = () => resolve(true);
        }),
      undefined,
      "the WebSocket to be refused after logout",
    );
  });

  it("leaves no connection open on the server", async () => {
    for (const c of contexts.splice(0)) await c.close();
    await waitFor(
      async () => {
        const n = await openConnections(hl.url);
        return n.ws === 0 && n.sse === 0 && n.poll === 0;
      },
      10_000,
      "every connection counter back to 0",
    );
    assert.equal(hl.child.exitCode, null);
  });
});
