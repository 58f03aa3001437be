/**
 * The HTTP form of the hooks (SPEC §8) end to end: `heartline serve` with
 * `--proxy-*-url` in a child process, the example backend
 * (examples/backend/server.mjs) in another, cookie sessions from its
 * `/login`, and the connect, subscribe and publish hooks on every transport:
 * WebSocket, SSE, long polling, `POST /api/rpc` and a client's
 * `POST /api/publish`. RPC: hooks-http-rpc.test.ts; failures:
 * hooks-http-failures.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { hookCounts, openConnections } from "../helpers/backend.js";
import { startChildServer, type ChildServer } from "../helpers/child.js";
import { rpcFrame, withHookedServer } from "../helpers/hooks.js";
import { getJson, upgrade, waitFor } from "../helpers/server.js";
import { SseStream } from "../helpers/sse.js";

const NOT_LOGGED_IN = { code: "not_logged_in", message: "No valid session cookie: log in first." };

const h = withHookedServer(["alice", "bob"]);
/** The Cookie headers of alice's and bob's sessions. */
const alice = () => h.cookies.alice!;
const bob = () => h.cookies.bob!;

describe("HTTP hooks: connect with a cookie session", () => {
  it("WebSocket: the session's user is the connection's; no cookie, a forged or a logged-out one → upgrade 401", async () => {
    const c = await h.ws(alice());
    assert.deepEqual((await rpcFrame(c, 1, "whoami")).result, { user: "alice" });
    for (const cookie of [undefined, "sid=forged", "other=1"]) {
      const res = await upgrade(h.hl.port, "/ws", cookie === undefined ? {} : { cookie });
      assert.equal(res.status, 401, String(cookie));
      assert.deepEqual(res.body, { error: NOT_LOGGED_IN });
    }
    const carol = await h.backend.login("carol");
    assert.equal((await upgrade(h.hl.port, "/ws", { cookie: carol })).status, 101);
    await fetch(`${h.backend.url}/logout`, { method: "POST", headers: { cookie: carol } });
    assert.equal((await upgrade(h.hl.port, "/ws", { cookie: carol })).status, 401);
    c.close();
  });

  it("SSE: a session opens the stream; without one → 401 not_logged_in", async () => {
    const s = await h.sse("?channel=public:news", alice());
    assert.ok(s instanceof SseStream);
    s.close();
    const refused = await h.sse("?channel=public:news");
    assert.ok(!(refused instanceof SseStream));
    assert.equal(refused.status, 401);
    assert.deepEqual(refused.body, { error: NOT_LOGGED_IN });
  });

  it("long polling: a session is answered; without one → 401 not_logged_in", async () => {
    const ok = await h.poll("?channel=public:news", alice());
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual(ok.body.messages, []);
    const refused = await h.poll("?channel=public:news", "sid=forged");
    assert.equal(refused.status, 401);
    assert.deepEqual(refused.body, { error: NOT_LOGGED_IN });
  });

  it("POST /api/rpc and a client's POST /api/publish: without a session → 401 not_logged_in", async () => {
    const rpc = await h.apiRpc({ method: "whoami" });
    assert.equal(rpc.status, 401);
    assert.deepEqual(rpc.body, { error: NOT_LOGGED_IN });
    const pub = await h.apiPublish("room:lobby", { text: "hi" });
    assert.equal(pub.status, 401);
    assert.deepEqual(pub.body, { error: NOT_LOGGED_IN });
  });

  it("every hook is told the transport, the client address, the client id of a connection and only --proxy-headers", async () => {
    const c = await h.ws(alice());
    const onWs = (await rpcFrame(c, "ctx", "context")).result as Record<string, unknown>;
    assert.equal(onWs.transport, "ws");
    assert.equal(onWs.ip, "127.0.0.1");
    assert.equal(onWs.user, "alice");
    assert.match(String(onWs.client), /.+/, "a WebSocket has a client id");
    const other = await h.ws(alice());
    const otherClient = ((await rpcFrame(other, 1, "context")).result as Record<string, unknown>).client;
    assert.notEqual(otherClient, onWs.client, "each connection its own client id");
    const onHttp = await h.apiRpc({ method: "context" }, { cookie: alice(), "x-request-id": "r-1", "x-not-forwarded": "1", "x-forwarded-for": "203.0.113.9" });
    assert.equal(onHttp.status, 200, JSON.stringify(onHttp.body));
    assert.equal(onHttp.body.result.transport, "http");
    assert.equal(onHttp.body.result.ip, "127.0.0.1", "X-Forwarded-For is not believed without --trust-proxy");
    assert.ok(onHttp.body.result.headers.includes("x-forwarded-for"), "but it is forwarded, as --proxy-headers says");
    assert.equal(onHttp.body.result.client, null);
    assert.ok(onHttp.body.result.headers.includes("x-request-id"));
    assert.ok(onHttp.body.result.headers.includes("cookie"));
    assert.ok(!onHttp.body.result.headers.includes("x-not-forwarded"));
    assert.ok(!onHttp.body.result.headers.includes("content-type"));
    c.close();
    other.close();
  });
});

describe("HTTP hooks: subscribe", () => {
  it("WebSocket frames: private:<me> and room:* allowed, private:<other> refused with the backend's 403, public:* without asking", async () => {
    const c = await h.ws(alice());
    const before = await hookCounts(h.hl.url);
    c.send({ type: "subscribe", channel: "private:alice" });
    assert.equal((await c.next((f) => f.type === "subscribed" || f.type === "error")).type, "subscribed");
    c.send({ type: "subscribe", channel: "room:lobby" });
    assert.deepEqual(await c.next((f) => f.type === "subscribed" || f.type === "error").then((f) => [f.type, f.channel]), ["subscribed", "room:lobby"]);
    c.send({ type: "subscribe", channel: "private:bob" });
    const refused = await c.next((f) => f.type === "subscribed" || f.type === "error");
    assert.deepEqual(refused, { type: "error", code: "channel_not_allowed", message: "alice may not subscribe to private:bob.", channel: "private:bob" });
    c.send({ type: "subscribe", channel: "public:news" });
    assert.equal((await c.next((f) => f.type === "subscribed" || f.type === "error")).type, "subscribed");
    const after = await hookCounts(h.hl.url);
    assert.equal(after("subscribe", "ok") - before("subscribe", "ok"), 2, "private:alice() and room:lobby asked, public:news not");
    assert.equal(after("subscribe", "refused") - before("subscribe", "refused"), 1);
    // The refusal did not cost the connection: a message on an allowed channel still arrives.
    assert.equal((await h.serverPublish("private:alice", { n: 1 })).status, 200);
    assert.deepEqual((await c.next((f) => f.type === "message")).data, { n: 1 });
    c.close();
  });

  it("WebSocket query channels: a refused one answers the upgrade with 403", async () => {
    const res = await upgrade(h.hl.port, "/ws?channel=room:lobby&channel=private:bob", { cookie: alice() });
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, "channel_not_allowed");
    assert.equal((await upgrade(h.hl.port, "/ws?channel=room:lobby&channel=private:alice", { cookie: alice() })).status, 101);
  });

  it("SSE and long polling: private:<me> allowed, private:<other> → 403 channel_not_allowed", async () => {
    const s = await h.sse("?channel=private:bob&channel=room:lobby", bob());
    assert.ok(s instanceof SseStream);
    s.close();
    const refusedSse = await h.sse("?channel=private:bob", alice());
    assert.ok(!(refusedSse instanceof SseStream));
    assert.equal(refusedSse.status, 403);
    assert.deepEqual(refusedSse.body, { error: { code: "channel_not_allowed", message: "alice may not subscribe to private:bob." } });
    assert.equal((await h.poll("?channel=private:bob", bob())).status, 200);
    const refusedPoll = await h.poll("?channel=private:bob", alice());
    assert.equal(refusedPoll.status, 403);
    assert.equal(refusedPoll.body.error.code, "channel_not_allowed");
  });

  it("a message reaches the SSE and polling subscribers the hook let in", async () => {
    const s = await h.sse("?channel=private:bob", bob());
    assert.ok(s instanceof SseStream);
    const first = await h.poll("?channel=private:bob", bob());
    const pub = await h.serverPublish("private:bob", { hello: "bob" });
    assert.equal(pub.status, 200);
    await s.next((e) => e.event === undefined && e.data !== undefined);
    assert.deepEqual(s.messages().at(-1)?.data, { hello: "bob" });
    const next = await h.poll(`?channel=private:bob&cursor=${first.body.cursor}&timeout=5`, bob());
    assert.equal(next.status, 200);
    assert.deepEqual(
      next.body.messages.map((m: { data: unknown }) => m.data),
      [{ hello: "bob" }],
    );
    s.close();
  });
});

describe("HTTP hooks: publish", () => {
  it("a WebSocket publish frame is rewritten by the backend before anyone sees it", async () => {
    const listener = await h.sse("?channel=room:chat", bob());
    assert.ok(listener instanceof SseStream);
    const c = await h.ws(alice());
    c.send({ type: "publish", channel: "room:chat", data: { text: `   hello   `, injected: true } });
    const published = await c.next((f) => f.type === "published" || f.type === "error");
    assert.equal(published.type, "published", JSON.stringify(published));
    await listener.next((e) => e.event === undefined && e.data !== undefined);
    const data = listener.messages().at(-1)!.data as Record<string, unknown>;
    assert.deepEqual(Object.keys(data).sort(), ["at", "text", "user"]);
    assert.equal(data.text, "hello");
    assert.equal(data.user, "alice");
    listener.close();
    c.close();
  });

  it("a WebSocket publish the backend refuses stores nothing; the connection is kept", async () => {
    const c = await h.ws(alice());
    const before = await h.offsetOf("private:alice");
    c.send({ type: "publish", channel: "private:alice", data: { text: "x" } });
    assert.deepEqual(await c.next((f) => f.type === "published" || f.type === "error"), {
      type: "error",
      code: "publish_not_allowed",
      message: "Clients may not publish to private:alice.",
      channel: "private:alice",
    });
    c.send({ type: "publish", channel: "room:chat", data: { text: "   " } });
    const bad = await c.next((f) => f.type === "published" || f.type === "error");
    assert.equal(bad.code, "bad_message");
    assert.equal(await h.offsetOf("private:alice"), before);
    assert.deepEqual((await rpcFrame(c, 2, "whoami")).result, { user: "alice" });
    c.close();
  });

  it("a client's POST /api/publish with a cookie: rewritten, refused (403, 400) as the backend says", async () => {
    const offset = await h.offsetOf("room:http");
    const ok = await h.apiPublish("room:http", { text: " from http " }, { cookie: bob() });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.offset, offset + 1);
    const history = await h.poll(`?channel=room:http`, bob());
    assert.equal(history.status, 200);
    const refused = await h.apiPublish("news", { text: "x" }, { cookie: bob() });
    assert.equal(refused.status, 403);
    assert.deepEqual(refused.body, { error: { code: "publish_not_allowed", message: "Clients may not publish to news." } });
    const bad = await h.apiPublish("room:http", 7, { cookie: bob() });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, "bad_message");
    assert.equal(await h.offsetOf("room:http"), offset + 1);
  });

  it("the stored data is the backend's: read back over long polling", async () => {
    const start = await h.poll("?channel=room:readback", bob());
    const ok = await h.apiPublish("room:readback", { text: "  stamped  " }, { cookie: bob() });
    assert.equal(ok.status, 200);
    const got = await h.poll(`?channel=room:readback&cursor=${start.body.cursor}&timeout=5`, bob());
    const data = got.body.messages[0].data;
    assert.equal(data.text, "stamped");
    assert.equal(data.user, "bob");
  });

  it("with the API key the publish is the server's: no hook, the data as sent", async () => {
    const before = await hookCounts(h.hl.url);
    const start = await h.poll("?channel=room:raw", bob());
    const ok = await h.serverPublish("room:raw", { text: "  raw  " });
    assert.equal(ok.status, 200);
    const after = await hookCounts(h.hl.url);
    assert.equal(after("publish", "ok") + after("publish", "refused"), before("publish", "ok") + before("publish", "refused"));
    const got = await h.poll(`?channel=room:raw&cursor=${start.body.cursor}&timeout=5`, bob());
    assert.deepEqual(got.body.messages[0].data, { text: "  raw  " });
  });
});

describe("HTTP hooks: publish on a server without --api-key", () => {
  let keyless: ChildServer;
  before(async () => {
    keyless = await startChildServer(h.backend.proxyArgs());
  });
  after(() => keyless?.stop());

  const post = (channel: string, data: unknown, headers: Record<string, string>) =>
    getJson(`${keyless.url}/api/publish`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ channel, data }) });

  it("a POST /api/publish from this machine without credentials is the server's, as SPEC §1 allows", async () => {
    assert.equal((await post("news", { raw: true }, {})).status, 200);
  });

  // SPEC §8: "A POST /api/publish without the API key but with a client's credentials (cookie or
  // token) is a client publish: connect, then the publish hook, decide it", loopback or not; else an
  // SSE or polling browser on a developer's machine would publish past the application.
  it("a POST /api/publish from this machine with a session cookie is a client's: the publish hook decides", async () => {
    const start = await getJson(`${keyless.url}/poll?channel=room:dev`, { headers: { cookie: alice() } });
    const ok = await post("room:dev", { text: "  hi  " }, { cookie: alice() });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const got = await getJson(`${keyless.url}/poll?channel=room:dev&cursor=${start.body.cursor}&timeout=5`, { headers: { cookie: alice() } });
    assert.equal(got.body.messages[0].data.text, "hi", "rewritten by the publish hook");
    assert.equal(got.body.messages[0].data.user, "alice");
    const refused = await post("news", { text: "x" }, { cookie: alice() });
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, "publish_not_allowed");
  });
});

describe("HTTP hooks: afterwards", () => {
  it("the server is up, counted every outcome, and holds no connection", async () => {
    assert.equal(h.hl.child.exitCode, null);
    assert.equal((await getJson(`${h.hl.url}/healthz`)).status, 200);
    h.closeAll();
    const counts = await hookCounts(h.hl.url);
    for (const hook of ["connect", "subscribe", "publish"]) {
      assert.ok(counts(hook, "ok") > 0, `${hook} ok`);
      assert.ok(counts(hook, "refused") > 0, `${hook} refused`);
      assert.equal(counts(hook, "unavailable"), 0, `${hook} unavailable`);
    }
    await waitFor(async () => {
      const n = await openConnections(h.hl.url);
      return n.ws === 0 && n.sse === 0 && n.poll === 0;
    }, 5000, "no connection left open");
  });
});
