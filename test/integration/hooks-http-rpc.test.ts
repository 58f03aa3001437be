/**
 * RPC through the HTTP rpc hook (SPEC §8) end to end, Heartline and the
 * example backend in child processes: `rpc` frames on a WebSocket (answers
 * by id, in the backend's order, a bounded number waiting) and
 * `POST /api/rpc` for clients without one; an rpc hook without a connect
 * hook; `--proxy-headers`.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hookCounts, openConnections } from "../helpers/backend.js";
import { startChildServer, type ChildServer } from "../helpers/child.js";
import { rpcFrame, withHookedServer } from "../helpers/hooks.js";
import { getJson, waitFor } from "../helpers/server.js";

const h = withHookedServer(["alice", "bob"]);
/** The Cookie headers of alice's and bob's sessions. */
const alice = () => h.cookies.alice!;
const bob = () => h.cookies.bob!;

describe("HTTP hooks: rpc", () => {
  it("WebSocket rpc frames: results and the backend's errors, by the client's id", async () => {
    const c = await h.ws(bob());
    assert.deepEqual(await rpcFrame(c, 1, "add", { a: 2, b: 40 }), { type: "rpc", id: 1, result: 42 });
    assert.deepEqual(await rpcFrame(c, "two", "echo", [1, { x: null }]), { type: "rpc", id: "two", result: [1, { x: null }] });
    assert.deepEqual(await rpcFrame(c, 3, "nope"), { type: "rpc", id: 3, error: { code: "unknown_method", message: "There is no method nope." } });
    assert.deepEqual((await rpcFrame(c, 4, "add", { a: "x" })).error, { code: "bad_params", message: "add takes {a, b}, two numbers." });
    c.close();
  });

  it("WebSocket rpc answers come back as the backend answers them, not in the order asked", async () => {
    const c = await h.ws(bob());
    c.send({ type: "rpc", id: "slow", method: "sleep", params: { ms: 400 } });
    c.send({ type: "rpc", id: "fast", method: "sleep", params: { ms: 0 } });
    const first = await c.next((f) => f.type === "rpc");
    const second = await c.next((f) => f.type === "rpc");
    assert.deepEqual([first, second], [
      { type: "rpc", id: "fast", result: { slept: 0 } },
      { type: "rpc", id: "slow", result: { slept: 400 } },
    ]);
    c.close();
  });

  it("at most 32 RPCs wait on one WebSocket: the next is refused at once with too_many_requests", async () => {
    const c = await h.ws(bob());
    for (let i = 0; i < 32; i++) c.send({ type: "rpc", id: i, method: "sleep", params: { ms: 600 } });
    c.send({ type: "rpc", id: "over", method: "whoami" });
    const over = await c.next((f) => f.type === "rpc" && f.id === "over", 500);
    assert.equal((over.error as { code: string }).code, "too_many_requests");
    const answered = new Set<unknown>();
    while (answered.size < 32) answered.add((await c.next((f) => f.type === "rpc" && f.id !== "over", 5000)).id);
    // Answered, the slots are free again.
    assert.deepEqual((await rpcFrame(c, "again", "whoami")).result, { user: "bob" });
    c.close();
  });

  it("WebSocket rpc frames Heartline refuses itself: a bad method name, no id", async () => {
    const c = await h.ws(bob());
    const before = await hookCounts(h.hl.url);
    const bad = await rpcFrame(c, 5, "no spaces allowed");
    assert.equal((bad.error as { code: string }).code, "bad_request");
    c.send({ type: "rpc", method: "whoami" });
    const noId = await c.next((f) => f.type === "error");
    assert.equal(noId.code, "bad_request");
    const after = await hookCounts(h.hl.url);
    assert.equal(after("rpc", "ok") + after("rpc", "refused"), before("rpc", "ok") + before("rpc", "refused"), "the backend was not asked");
    assert.deepEqual((await rpcFrame(c, 6, "whoami")).result, { user: "bob" });
    c.close();
  });

  it("POST /api/rpc: 200 {result}; the backend's error with its status; bad bodies 400/415", async () => {
    assert.deepEqual((await h.apiRpc({ method: "add", params: { a: 1, b: 2 } }, { cookie: alice() })).body, { result: 3 });
    assert.deepEqual((await h.apiRpc({ method: "whoami" }, { cookie: bob() })).body, { result: { user: "bob" } });
    const unknown = await h.apiRpc({ method: "nope" }, { cookie: alice() });
    assert.equal(unknown.status, 404);
    assert.deepEqual(unknown.body, { error: { code: "unknown_method", message: "There is no method nope." } });
    const badParams = await h.apiRpc({ method: "add", params: {} }, { cookie: alice() });
    assert.equal(badParams.status, 400);
    assert.equal(badParams.body.error.code, "bad_params");
    for (const body of ["{bad", "[1]", "null", JSON.stringify({ params: 1 }), JSON.stringify({ method: "a b" })]) {
      const res = await h.apiRpc(body, { cookie: alice() });
      assert.equal(res.status, 400, `${body}: ${JSON.stringify(res.body)}`);
    }
    const plain = await getJson(`${h.hl.url}/api/rpc`, { method: "POST", headers: { cookie: alice(), "content-type": "text/plain" }, body: '{"method":"whoami"}' });
    assert.equal(plain.status, 415);
  });
});

describe("HTTP hooks: an rpc hook alone, --proxy-headers cookie,x-request-id", () => {
  let only: ChildServer;
  before(async () => {
    only = await startChildServer(["--proxy-rpc-url", h.backend.hookUrl("rpc"), "--proxy-headers", "cookie,X-Request-Id"]);
  });
  after(() => only?.stop());

  it("the hook is given only the listed headers, and names the user from the forwarded cookie itself", async () => {
    const res = await h.apiRpc({ method: "context" }, { cookie: alice(), "x-request-id": "r-2", "user-agent": "test", authorization: "Bearer x" }, only);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body.result.headers, ["cookie", "x-request-id"]);
    assert.equal(res.body.result.user, "alice");
    assert.equal(res.body.result.transport, "http");
    const c = await h.ws(bob(), "", only);
    assert.deepEqual((await rpcFrame(c, 1, "whoami")).result, { user: "bob" });
    const anonymous = await h.ws(undefined, "", only);
    assert.deepEqual((await rpcFrame(anonymous, 1, "whoami")).error, { code: "not_logged_in", message: "Log in first." });
    c.close();
    anonymous.close();
  });

  it("without a connect hook, everything else is as without hooks: no cookie needed to subscribe", async () => {
    const res = await getJson(`${only.url}/poll?channel=room:any`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
  });
});

describe("HTTP hooks: no rpc hook", () => {
  let noRpc: ChildServer;
  before(async () => {
    noRpc = await startChildServer(h.backend.proxyArgs(["connect", "subscribe", "publish"]));
  });
  after(() => noRpc?.stop());

  it("POST /api/rpc → 404 rpc_not_configured; an rpc frame → its error rpc_not_configured; the backend is not asked", async () => {
    const res = await h.apiRpc({ method: "whoami" }, { cookie: alice() }, noRpc);
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, "rpc_not_configured");
    const c = await h.ws(alice(), "", noRpc);
    const frame = await rpcFrame(c, 1, "whoami");
    assert.equal((frame.error as { code: string }).code, "rpc_not_configured");
    assert.equal(c.ws.readyState, 1);
    c.close();
    const counts = await hookCounts(noRpc.url);
    assert.equal(counts("rpc", "ok") + counts("rpc", "refused") + counts("rpc", "unavailable"), 0);
  });
});

describe("HTTP hooks rpc: afterwards", () => {
  it("the server is up, counted the rpc outcomes, and holds no connection", async () => {
    assert.equal(h.hl.child.exitCode, null);
    h.closeAll();
    const counts = await hookCounts(h.hl.url);
    assert.ok(counts("rpc", "ok") > 0);
    assert.ok(counts("rpc", "refused") > 0);
    assert.equal(counts("rpc", "unavailable"), 0);
    await waitFor(async () => {
      const n = await openConnections(h.hl.url);
      return n.ws === 0 && n.sse === 0 && n.poll === 0;
    }, 5000, "no connection left open");
  });
});
