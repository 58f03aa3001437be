/**
 * hl.rpc() against a real Heartline whose application answers RPCs (the rpc
 * hook, library form): an `rpc` frame on WebSocket, POST /api/rpc on SSE and
 * polling (and after a forced fallback to them), answers in any order,
 * refusals, timeouts, lost sockets, closing, and no request left waiting.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HeartlineError } from "../../src/client/index.js";
import { sign } from "../helpers/auth.js";
import { waitFor, withServer } from "../helpers/server.js";
import { client, connected, ManualClientClock, serverBehindProxy } from "./helpers.js";
import { rpcApp } from "./rpc-app.js";

const TRANSPORTS = ["ws", "sse", "poll"] as const;
/** The hook sees WebSocket calls as `ws`, POST /api/rpc as `http`. */
const hookTransport = (t: string) => (t === "ws" ? "ws" : "http");

/** Asserts that `p` rejects with a HeartlineError of `code` (and `status`, which is undefined for a frame). */
async function rejectsWith(p: Promise<unknown>, code: string, status?: number, message?: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof HeartlineError, `a HeartlineError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.status, status);
    if (message !== undefined) assert.equal(e.message, message);
    return true;
  });
}

/** Whether `p` has settled, without waiting for it. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  const mark = Symbol();
  return (await Promise.race([p.then(() => true, () => true), Promise.resolve(mark)])) !== mark;
}

describe("Heartline client: rpc", () => {
  const app = rpcApp();
  const fx = serverBehindProxy({}, { hooks: app.hooks });
  const rpcPosts = () => fx.proxy.requests.filter((l) => l.startsWith("POST /api/rpc ")).length;

  for (const t of TRANSPORTS) {
    it(`over ${t}: ${t === "ws" ? "an rpc frame on the socket" : "POST /api/rpc"}, with every JSON result as the hook gave it`, async () => {
      const hl = client(fx.proxy.url, { transports: [t] });
      hl.subscribe("rpc:lobby", () => {});
      try {
        await connected(hl, t);
        const posts = rpcPosts();
        const params = { n: 1, s: "é 🎲", list: [1, null, { deep: true }] };
        assert.deepEqual(await hl.rpc("echo", params), { params, transport: hookTransport(t) });
        for (const v of [null, false, 0, "", [], "text", 3.5]) assert.deepEqual(await hl.rpc("value", v), v, `result ${JSON.stringify(v)}`);
        // A hook answering nothing gives null; params left out arrive as null.
        assert.equal(await hl.rpc("nothing"), null);
        assert.deepEqual((await hl.rpc<{ params: unknown }>("echo")).params, null);
        assert.equal(rpcPosts() - posts, t === "ws" ? 0 : 10, "HTTP only when not on WebSocket");
        assert.equal(hl.state, "connected");
        assert.equal(hl.transport, t);
      } finally {
        hl.close();
      }
    });
  }

  it("goes over HTTP while no WebSocket is open yet", async () => {
    const hl = client(fx.proxy.url, { transports: ["ws"] });
    try {
      assert.notEqual(hl.state, "connected");
      const r = await hl.rpc<{ transport: string }>("echo", 1);
      assert.equal(r.transport, "http");
      await connected(hl, "ws");
      assert.equal((await hl.rpc<{ transport: string }>("echo", 2)).transport, "ws");
    } finally {
      hl.close();
    }
  });

  for (const [to, block] of [
    ["sse", ["/ws"]],
    ["poll", ["/ws", "/sse"]],
  ] as const) {
    it(`after a forced fallback from WebSocket to ${to}: POST /api/rpc`, async () => {
      fx.proxy.block(...block);
      const hl = client(fx.proxy.url, { openTimeout: 2 });
      hl.subscribe("rpc:fallback", () => {});
      try {
        await connected(hl, to);
        assert.ok(fx.proxy.requests.some((l) => l.startsWith("GET /ws")), "WebSocket was tried first");
        const posts = rpcPosts();
        assert.deepEqual(await hl.rpc("echo", { to }), { params: { to }, transport: "http" });
        await rejectsWith(hl.rpc("refuse"), "bad_move", 422, "that move is not allowed");
        assert.equal(rpcPosts() - posts, 2);
        assert.equal(hl.transport, to);
      } finally {
        hl.close();
        fx.proxy.unblock();
      }
    });
  }

  it("matches answers to calls on one WebSocket whatever order they come in", async () => {
    const hl = client(fx.proxy.url, { transports: ["ws"] });
    try {
      await connected(hl, "ws");
      const a = hl.rpc("wait", { key: "order-a" });
      const b = hl.rpc("wait", { key: "order-b" });
      const c = hl.rpc("wait", { key: "order-c" });
      await Promise.all(["order-a", "order-b", "order-c"].map((k) => app.held(k)));
      await app.open("order-c");
      assert.equal(await c, "order-c");
      await app.open("order-a");
      assert.equal(await a, "order-a");
      assert.equal(await settled(b), false, "b is still waiting for its own answer");
      await app.open("order-b");
      assert.equal(await b, "order-b");
      assert.deepEqual(
        app.callsOf("wait").filter((x) => String((x.params as { key: string }).key).startsWith("order-")).map((x) => x.transport),
        ["ws", "ws", "ws"],
      );
    } finally {
      hl.close();
    }
  });

  it("a refusal rejects with the application's code and message; the connection stays", async () => {
    const hl = client(fx.proxy.url, { transports: ["ws"] });
    try {
      await connected(hl, "ws");
      await rejectsWith(hl.rpc("refuse"), "bad_move", undefined, "that move is not allowed");
      await rejectsWith(hl.rpc("no.such"), "unknown_method", undefined, "no method no.such");
      // A method name the server refuses: its bad_request, not a silent wait.
      await rejectsWith(hl.rpc("has space"), "bad_request");
      await rejectsWith(hl.rpc(""), "bad_request");
      assert.equal(hl.state, "connected");
      assert.equal(await hl.rpc("value", 5), 5);
    } finally {
      hl.close();
    }
  });

  it("refuses what cannot be sent without a request: not a string method, params JSON cannot carry, a bad timeout, a closed client", async () => {
    const hl = client(fx.proxy.url, { transports: ["poll"] });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    try {
      const posts = rpcPosts();
      await assert.rejects(hl.rpc(42 as unknown as string), TypeError);
      await assert.rejects(hl.rpc("echo", 10n), TypeError);
      await assert.rejects(hl.rpc("echo", cyclic), TypeError);
      for (const timeout of [-1, Number.NaN, Infinity, 2 ** 31, {} as number]) await assert.rejects(hl.rpc("echo", 1, { timeout }), TypeError, String(timeout));
      // What JSON drops is dropped, as on the wire: functions, undefined members.
      assert.deepEqual(await hl.rpc("value", { f: () => 1, u: undefined, k: 1 }), { k: 1 });
      assert.equal(rpcPosts() - posts, 1);
    } finally {
      hl.close();
    }
    await rejectsWith(hl.rpc("echo"), "closed");
  });

  it("over more than 32 at once on one WebSocket, the server refuses the rest with too_many_requests", async () => {
    const hl = client(fx.proxy.url, { transports: ["ws"] });
    try {
      await connected(hl, "ws");
      const keys = Array.from({ length: 32 }, (_, i) => `many-${i}`);
      const held = keys.map((key) => hl.rpc("wait", { key }));
      await Promise.all(keys.map((k) => app.held(k)));
      await rejectsWith(hl.rpc("value", 1), "too_many_requests");
      for (const k of keys) await app.open(k);
      assert.deepEqual(await Promise.all(held), keys);
      assert.equal(await hl.rpc("value", 1), 1, "room again once answered");
    } finally {
      hl.close();
    }
  });

  it("a timeout rejects with rpc_timeout; the late answer is dropped and the client goes on (WebSocket and HTTP)", async () => {
    const clock = new ManualClientClock();
    const errors: HeartlineError[] = [];
    for (const t of ["ws", "poll"] as const) {
      const hl = client(fx.proxy.url, { transports: [t], clock });
      hl.on("error", (e) => errors.push(e));
      try {
        await connected(hl, t);
        const key = `late-${t}`;
        const p = hl.rpc("wait", { key }, { timeout: 700 });
        await app.held(key);
        clock.advance(699);
        assert.equal(await settled(p), false);
        clock.advance(1);
        await rejectsWith(p, "rpc_timeout", undefined, "no answer within 700 ms");
        await app.open(key);
        // The answer still comes (over WebSocket) and finds nobody waiting.
        assert.equal(await hl.rpc("value", t), t);
        assert.equal(hl.state, "connected");
      } finally {
        hl.close();
      }
    }
    assert.deepEqual(errors, []);
  });

  it("the default timeout is the rpcTimeout option (seconds)", async () => {
    const clock = new ManualClientClock();
    const hl = client(fx.proxy.url, { transports: ["ws"], clock, rpcTimeout: 3 });
    try {
      await connected(hl, "ws");
      const p = hl.rpc("wait", { key: "default-timeout" });
      await app.held("default-timeout");
      clock.advance(2999);
      assert.equal(await settled(p), false);
      clock.advance(1);
      await rejectsWith(p, "rpc_timeout");
    } finally {
      hl.close();
      await app.open("default-timeout");
    }
  });

  it("a WebSocket that drops fails its waiting calls with disconnected, and does not send them again", async () => {
    const hl = client(fx.proxy.url, { transports: ["ws"], backoffBase: 0.02 });
    try {
      await connected(hl, "ws");
      const p = hl.rpc("wait", { key: "dropped" });
      await app.held("dropped");
      fx.proxy.cut();
      await rejectsWith(p, "disconnected");
      await connected(hl, "ws");
      assert.equal(await hl.rpc("value", "after"), "after");
      await app.open("dropped"); // the hook answers a socket that is gone: nothing breaks
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(app.callsOf("wait", "dropped").length, 1, "called once: never sent again");
    } finally {
      hl.close();
    }
  });

  it("close() fails waiting calls with closed, on WebSocket and over HTTP", async () => {
    for (const t of ["ws", "sse"] as const) {
      const hl = client(fx.proxy.url, { transports: [t] });
      await connected(hl, t);
      const key = `closing-${t}`;
      const p = hl.rpc("wait", { key });
      await app.held(key);
      hl.close();
      await rejectsWith(p, "closed");
      await app.open(key);
    }
  });

  it("leaves no call waiting, whichever way each ended", async () => {
    const clock = new ManualClientClock();
    const T = 4321;
    const waiting = () => clock.pending().filter((ms) => ms === T).length;
    const hl = client(fx.proxy.url, { transports: ["ws"], clock, backoffBase: 0.02 });
    const outcomes: Array<Promise<unknown>> = [];
    const track = (p: Promise<unknown>) => outcomes.push(p.catch((e: HeartlineError) => e.code));
    try {
      // Over HTTP (no WebSocket yet): answered and refused.
      track(hl.rpc("value", 1, { timeout: T }));
      track(hl.rpc("refuse", null, { timeout: T }));
      await connected(hl, "ws");
      // Over the WebSocket: answered, refused, timed out, lost with the socket.
      track(hl.rpc("value", 2, { timeout: T }));
      track(hl.rpc("refuse", null, { timeout: T }));
      track(hl.rpc("wait", { key: "leak-timeout" }, { timeout: T }));
      await app.held("leak-timeout");
      assert.ok(waiting() >= 1);
      clock.advance(T);
      await app.open("leak-timeout");
      track(hl.rpc("wait", { key: "leak-drop" }, { timeout: T }));
      await app.held("leak-drop");
      fx.proxy.cut();
      await waitFor(() => hl.state === "disconnected" || undefined);
      clock.advance(1000); // the backoff, on the test's clock
      // On a new socket, then closed while one waits.
      await connected(hl, "ws");
      track(hl.rpc("wait", { key: "leak-close" }, { timeout: T }));
      await app.held("leak-close");
      hl.close();
      assert.deepEqual(await Promise.all(outcomes), [1, "bad_move", 2, "bad_move", "rpc_timeout", "disconnected", "closed"]);
      assert.equal(waiting(), 0, "every call's timer is gone");
    } finally {
      hl.close();
      await app.open("leak-drop");
      await app.open("leak-close");
    }
  });
});

describe("Heartline client: rpc with a token", () => {
  const SECRET = "rpc-client-secret-of-at-least-32-bytes!";
  const app = rpcApp();
  const s = withServer({ jwtSecret: SECRET }, { hooks: app.hooks });

  for (const t of TRANSPORTS) {
    it(`over ${t}: the user is the token's, sent ${t === "ws" ? "with the socket" : "as a Bearer header"}`, async () => {
      const token = await sign({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 60, channels: ["private:*"] }, SECRET);
      const hl = client(s.url, { transports: [t], getToken: () => token });
      hl.subscribe("private:alice", () => {});
      try {
        await connected(hl, t);
        assert.equal(await hl.rpc("whoami"), "alice");
        const last = app.calls.at(-1)!;
        assert.equal(last.transport, hookTransport(t));
        if (t !== "ws") assert.equal(last.authorization, `Bearer ${token}`);
      } finally {
        hl.close();
      }
    });
  }

  it("over HTTP: a bad token is the server's 401; a failing getToken rejects with token_error", async () => {
    const bad = client(s.url, { transports: ["poll"], getToken: () => "not-a-jwt" });
    const failing = client(s.url, { transports: ["poll"], getToken: () => Promise.reject(new Error("no session")) });
    failing.on("error", () => {});
    try {
      await rejectsWith(bad.rpc("whoami"), "unauthorized", 401);
      await rejectsWith(failing.rpc("whoami"), "token_error");
    } finally {
      bad.close();
      failing.close();
    }
  });
});

describe("Heartline client: rpc on a server without an rpc hook", () => {
  const s = withServer();

  for (const t of ["ws", "poll"] as const) {
    it(`over ${t}: rpc_not_configured${t === "ws" ? "" : " (404)"}`, async () => {
      const hl = client(s.url, { transports: [t] });
      try {
        await connected(hl, t);
        await rejectsWith(hl.rpc("anything", 1), "rpc_not_configured", t === "ws" ? undefined : 404);
        assert.equal(hl.state, "connected");
      } finally {
        hl.close();
      }
    });
  }
});
