/**
 * `--settle-gc`: one garbage collection once a burst of 1,000+ new
 * connections has settled (3 s without a new one and without a message),
 * none for 999, none while messages flow, none when turned off.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import WebSocket from "ws";
import type { HeartlineOptions } from "../../src/index.js";
import { publishHttp, startServer, waitFor, type TestServer } from "../helpers/server.js";

async function collections(s: TestServer): Promise<number> {
  const m = /^heartline_settle_collections_total (\d+)$/m.exec(await (await fetch(`${s.url}/metrics`)).text());
  assert.ok(m, "the counter is in /metrics");
  return Number(m[1]);
}

/** Opens `n` WebSockets, each subscribed, and returns them. */
async function openMany(s: TestServer, n: number): Promise<WebSocket[]> {
  const all: WebSocket[] = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, (_, k) =>
        new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`${s.wsUrl}/ws?channel=settle:${i + k}`);
          all.push(ws);
          ws.on("message", (d) => String(d).includes('"subscribed"') && resolve());
          ws.on("error", reject);
        }),
      ),
    );
  }
  return all;
}

/**
 * Runs `body` against a fresh server with `options`, handing it a function
 * that opens subscribed WebSockets; every socket and the server are closed
 * afterwards, whatever happens.
 */
async function onFreshServer(options: HeartlineOptions, body: (s: TestServer, open: (n: number) => Promise<void>) => Promise<void>): Promise<void> {
  const s = await startServer({ maxPendingConnectionsPerIp: 0, ...options });
  const sockets: WebSocket[] = [];
  try {
    await body(s, async (n) => void sockets.push(...(await openMany(s, n))));
  } finally {
    for (const w of sockets) w.terminate();
    await s.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("--settle-gc", () => {
  it("collects once a burst of 1,000 connections has settled, and not for 999", () =>
    onFreshServer({}, async (s, open) => {
      await open(999);
      await sleep(3600);
      assert.equal(await collections(s), 0, "999 connections are no burst");
      await open(1);
      assert.equal(await collections(s), 0, "not while connections are arriving");
      await waitFor(async () => (await collections(s)) === 1 || undefined, 8000, "one collection once the 1,000th has settled");
    }));

  it("waits while messages flow: a collection would pause their delivery", () =>
    onFreshServer({}, async (s, open) => {
      await open(1000);
      // 4.5 s of messages, one every 300 ms: never 3 s of calm.
      for (let i = 0; i < 15; i++) {
        assert.equal((await publishHttp(s, "settle:0", { i })).status, 200);
        await sleep(300);
      }
      assert.equal(await collections(s), 0, "no collection while messages were flowing");
      await waitFor(async () => (await collections(s)) === 1 || undefined, 8000, "one collection once the messages stopped");
    }));

  it("never collects with --settle-gc false", () =>
    onFreshServer({ settleGc: false }, async (s, open) => {
      await open(1000);
      await sleep(4000);
      assert.equal(await collections(s), 0);
    }));
});
