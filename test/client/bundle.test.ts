/**
 * The browser bundle: built by scripts/build-client.mjs into one ES module
 * under its size budget, served as GET /heartline.js (listen and attach mode),
 * and working as a client when imported as-is.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import WebSocket from "ws";
import { createHeartline } from "../../src/index.js";
import type * as Client from "../../src/client/index.js";
import { publishHttp, quietLogger, waitFor, withServer } from "../helpers/server.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BUNDLE = join(ROOT, "web/build/heartline.js");
const BUDGET = 7680;

describe("browser bundle", () => {
  let bytes: Buffer;
  before(async () => {
    const r = spawnSync(process.execPath, [join(ROOT, "scripts/build-client.mjs")], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /web\/build\/heartline\.js: \d+ bytes minified, \d+ bytes min\+gzip \(budget 7680\)/);
    bytes = readFileSync(BUNDLE);
  });
  const s = withServer();

  it(`is at most ${BUDGET} bytes minified and gzipped`, () => {
    const gz = gzipSync(bytes, { level: 9 }).length;
    assert.ok(gz <= BUDGET, `${gz} bytes min+gzip, over the budget of ${BUDGET}`);
    assert.ok(bytes.length > 5000, "the bundle holds the whole client");
  });

  it("is one ES module with no imports, exporting the client", async () => {
    const text = bytes.toString("utf8");
    assert.doesNotMatch(text, /\bimport\s*[{*\w][^(]*from\s*["']/, "no static imports");
    assert.doesNotMatch(text, /\brequire\(/);
    const mod = (await import(pathToFileURL(BUNDLE).href)) as typeof Client;
    for (const name of ["Heartline", "HeartlineError", "Subscription", "Backoff"] as const) assert.equal(typeof mod[name], "function", name);
    // The bundle works as it is: a client on a real server.
    const hl = new mod.Heartline(s.url, { WebSocket, transports: ["ws"] });
    const got: number[] = [];
    hl.subscribe("bundle:a", (m) => got.push(m.offset));
    try {
      await waitFor(() => (hl.state === "connected" && s.hl.hub.subscriberCount("bundle:a") === 1) || undefined);
      await publishHttp(s, "bundle:a", 1);
      await waitFor(() => got.length === 1 || undefined);
      assert.deepEqual(got, [1]);
    } finally {
      hl.close();
    }
  });

  it("is served as GET /heartline.js with Content-Type text/javascript", async () => {
    const res = await fetch(`${s.url}/heartline.js`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), readFileSync(BUNDLE));
  });

  it("is served in attach mode too, where pages are not", async () => {
    const hl = createHeartline({ host: "127.0.0.1" }, { logger: quietLogger() });
    const server = createServer((_req, res) => {
      res.writeHead(418);
      res.end("app");
    });
    hl.attach(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const js = await fetch(`${base}/heartline.js`);
      assert.equal(js.status, 200);
      assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
      assert.ok((await js.text()).length > 5000);
      const page = await fetch(`${base}/dashboard`);
      assert.equal(page.status, 418, "the app keeps its own routes");
      await page.text();
    } finally {
      await hl.close(0.2);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
