/**
 * hl.rpc() from tabs that share one connection (SharedWorker stand-in over
 * real MessagePorts, as in shared.test.ts): each tab's call goes through the
 * worker's client, over its WebSocket or POST /api/rpc, and its answer,
 * refusal or timeout comes back to that tab alone.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { EventSource } from "eventsource";
import WebSocket from "ws";
import { Heartline, HeartlineError } from "../../src/client/index.js";
import { setLinker } from "../../src/client/link.js";
import { installSharing } from "../../src/client/shared.js";
import { sign } from "../helpers/auth.js";
import { waitFor, withServer } from "../helpers/server.js";
import { connected, fakeSharedWorkers } from "./helpers.js";
import { rpcApp } from "./rpc-app.js";

const SECRET = "rpc-shared-secret-of-at-least-32-bytes";
const globals = globalThis as Record<string, unknown>;
const workers = fakeSharedWorkers();

before(() => {
  globals.SharedWorker = workers.SharedWorker;
  // The worker's own client finds the platform's constructors, as in a browser.
  globals.WebSocket = WebSocket;
  globals.EventSource = EventSource;
  installSharing();
});
after(() => {
  setLinker(undefined);
  delete globals.SharedWorker;
  delete globals.WebSocket;
  delete globals.EventSource;
  workers.close();
});

/** Tabs of one origin with the same options: they share one connection. */
function tabs(url: string, n: number, options: ConstructorParameters<typeof Heartline>[1] = {}): Heartline[] {
  return Array.from({ length: n }, () => new Heartline(url, options));
}

describe("Heartline client: rpc from tabs sharing a connection", () => {
  const app = rpcApp();
  const s = withServer({}, { hooks: app.hooks });

  it("calls through the worker's WebSocket; each answer reaches its own tab, in any order", async () => {
    const [a, b] = tabs(s.url, 2) as [Heartline, Heartline];
    try {
      for (const hl of [a, b]) hl.subscribe("tabs:rpc", () => {});
      await connected(a, "ws");
      await connected(b, "ws");
      assert.equal(s.hl.connections, 1);
      const fromA = a.rpc("wait", { key: "tab-a" });
      const fromB = b.rpc("wait", { key: "tab-b" });
      await app.held("tab-a");
      await app.held("tab-b");
      await app.open("tab-b");
      assert.equal(await fromB, "tab-b");
      await app.open("tab-a");
      assert.equal(await fromA, "tab-a");
      // Results that are falsy cross the ports as they are.
      for (const v of [null, false, 0, ""]) assert.equal(await b.rpc("value", v), v);
      assert.equal(await a.rpc("nothing"), null);
      assert.deepEqual(await a.rpc("echo", { x: [1] }), { params: { x: [1] }, transport: "ws" });
      assert.equal(s.hl.connections, 1, "still the one connection");
      assert.ok(app.callsOf("wait").every((c) => c.transport === "ws"));
    } finally {
      a.close();
      b.close();
    }
    await waitFor(() => s.hl.connections === 0 || undefined);
  });

  it("a refusal reaches the tab with its code and message, and its status when the worker called over HTTP", async () => {
    for (const t of ["ws", "sse"] as const) {
      const [a] = tabs(s.url, 1, { transports: [t] }) as [Heartline];
      try {
        a.subscribe("tabs:refuse", () => {});
        await connected(a, t);
        await assert.rejects(a.rpc("refuse"), (e: unknown) => {
          assert.ok(e instanceof HeartlineError);
          assert.equal(e.code, "bad_move");
          assert.equal(e.message, "that move is not allowed");
          assert.equal(e.status, t === "ws" ? undefined : 422);
          return true;
        });
        assert.equal((await a.rpc<{ transport: string }>("echo")).transport, t === "ws" ? "ws" : "http");
      } finally {
        a.close();
      }
    }
  });

  it("the worker answers a port's malformed rpc messages with an error ack, and keeps serving", async () => {
    const port = new workers.SharedWorker("", { name: "heartline malformed" }).port;
    const acks: unknown[][] = [];
    port.on("message", (m: unknown[]) => {
      if (m[0] === "ack") acks.push(m);
    });
    try {
      port.postMessage(["init", s.url, { transports: ["poll"] }, false]);
      port.postMessage(["rpc", 1, 42, null, 1000]);
      port.postMessage(["rpc", 2, "value", 1, "soon"]);
      port.postMessage(["rpc", 3, "value", 1, -1]);
      port.postMessage(["rpc", 4]);
      port.postMessage(["rpc", 5, "value", { ok: 1 }, 5000]);
      await waitFor(() => acks.length === 5 || undefined);
      const byId = new Map(acks.map((m) => [m[1], m]));
      for (const id of [1, 2, 3, 4]) assert.deepEqual(byId.get(id)!.slice(0, 4), ["ack", id, 0, "error"], `malformed call ${id}`);
      assert.deepEqual(byId.get(5), ["ack", 5, { ok: 1 }]);
    } finally {
      port.postMessage(["bye"]);
    }
  });

  it("a call that times out rejects in its tab with rpc_timeout; the tab goes on", async () => {
    const [a] = tabs(s.url, 1) as [Heartline];
    try {
      await connected(a, "ws");
      const p = a.rpc("wait", { key: "tab-slow" }, { timeout: 200 });
      await assert.rejects(p, { name: "HeartlineError", code: "rpc_timeout" });
      await app.open("tab-slow");
      assert.equal(await a.rpc("value", 1), 1);
    } finally {
      a.close();
    }
  });

  it("a tab that closes fails its own waiting calls with closed; the other tab's are answered", async () => {
    const [a, b] = tabs(s.url, 2) as [Heartline, Heartline];
    try {
      await connected(a, "ws");
      await connected(b, "ws");
      const fromA = a.rpc("wait", { key: "closing-a" });
      const fromB = b.rpc("wait", { key: "closing-b" });
      await app.held("closing-a");
      await app.held("closing-b");
      a.close();
      await assert.rejects(fromA, { name: "HeartlineError", code: "closed" });
      await app.open("closing-b");
      assert.equal(await fromB, "closing-b");
      await app.open("closing-a");
      await assert.rejects(a.rpc("value", 1), { code: "closed" });
    } finally {
      a.close();
      b.close();
    }
  });
});

describe("Heartline client: rpc from tabs with tokens", () => {
  const app = rpcApp();
  const s = withServer({ jwtSecret: SECRET }, { hooks: app.hooks });

  it("over HTTP, the worker asks a tab for the token and sends it as a Bearer header", async () => {
    const token = await sign({ sub: "tab-user", exp: Math.floor(Date.now() / 1000) + 60, channels: ["private:*"] }, SECRET);
    let asked = 0;
    const [a] = tabs(s.url, 1, {
      transports: ["poll"],
      getToken: () => {
        asked++;
        return token;
      },
    }) as [Heartline];
    try {
      a.subscribe("private:tab", () => {});
      await connected(a, "poll");
      const before = asked;
      assert.equal(await a.rpc("whoami"), "tab-user");
      assert.ok(asked > before, "the tab was asked for a token for the call");
      assert.equal(app.calls.at(-1)!.authorization, `Bearer ${token}`);
    } finally {
      a.close();
    }
  });
});
