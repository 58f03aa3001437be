/**
 * The application's hooks in library form (SPEC §8) over real sockets: a
 * cookie session named by `connect` on WebSocket, SSE and long polling;
 * `subscribe` deciding channels; `publish` allowing, rewriting and refusing
 * client publishes (frame and POST /api/publish); `rpc` over the frame and
 * POST /api/rpc; `disconnect`; and what a hook that throws, hangs or answers
 * garbage gives the client. Counters go back to 0 after each.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HookError, type Heartline, type HookContext, type Hooks } from "../../src/index.js";
import { attempt, TRANSPORTS } from "../helpers/attempt.js";
import { SseStream } from "../helpers/sse.js";
import { getJson, publishHttp, waitFor, withServer, WsClient, type TestServer } from "../helpers/server.js";

const API_KEY = "hooks-api-key";


/** The application: sessions by cookie, `room:*` for anyone logged in, `private:<user>` for that user. */
function app() {
  const calls: Array<{ hook: string; ctx: HookContext & Record<string, unknown> }> = [];
  /** RPCs the hook is answering now, and the most at once. */
  const rpcs = { now: 0, max: 0 };
  const sessions = new Map([["s-alice", "alice"], ["s-bob", "bob"]]);
  const record = (hook: string, ctx: HookContext) => calls.push({ hook, ctx: ctx as HookContext & Record<string, unknown> });
  const hooks: Hooks = {
    connect(ctx) {
      record("connect", ctx);
      const user = sessions.get(ctx.cookies.sid ?? "");
      if (ctx.cookies.sid === "throw") throw new Error("the database is down");
      if (ctx.cookies.sid === "garbage") return { nope: true } as never;
      if (ctx.cookies.sid === "hang") return new Promise(() => {});
      if (user === undefined) throw new HookError(401, "not_logged_in", "log in first");
      return { user, info: { name: user.toUpperCase() }, channels: [`inbox:${user}`] };
    },
    subscribe(ctx) {
      record("subscribe", ctx);
      if (ctx.channel.startsWith("room:")) return { info: { joined: ctx.channel } };
      if (ctx.channel === `private:${ctx.user}`) return undefined;
      if (ctx.channel === "slow:1") return new Promise((r) => setTimeout(r, 5000));
      throw new HookError(403, "not_your_channel", `${ctx.user} may not read ${ctx.channel}`);
    },
    async publish(ctx) {
      record("publish", ctx);
      if (!ctx.channel.startsWith("room:")) throw new HookError(403, "read_only", "only rooms take messages");
      const text = String((ctx.data as { text?: unknown })?.text ?? "").trim();
      if (text === "") throw new HookError(400, "empty_message", "say something");
      return { data: { text: text.slice(0, 20), from: ctx.user } };
    },
    async rpc(ctx) {
      record("rpc", ctx);
      if (ctx.method === "whoami") return { user: ctx.user, info: ctx.info };
      if (ctx.method === "sleep") {
        rpcs.max = Math.max(rpcs.max, ++rpcs.now);
        await new Promise((r) => setTimeout(r, Number(ctx.params)));
        rpcs.now--;
        return Number(ctx.params);
      }
      if (ctx.method === "circular") {
        const o: Record<string, unknown> = {};
        o.self = o;
        return o;
      }
      throw new HookError(404, "unknown_method", `no method ${ctx.method}`);
    },
    disconnect(ctx) {
      record("disconnect", ctx);
    },
  };
  return { hooks, calls, rpcs };
}

const cookie = (sid: string) => ({ Cookie: `theme=dark; sid=${sid}` });

async function assertIdle(hl: Heartline): Promise<void> {
  await waitFor(() => hl.connections === 0 && hl.hub.totalSubscriptions === 0 && hl.hub.totalWaiters === 0, 5000, "connections to close");
}

function rpcHttp(s: TestServer, body: unknown, headers: Record<string, string> = {}) {
  return getJson(`${s.url}/api/rpc`, { method: "POST", headers: { "Content-Type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
}

async function metric(s: TestServer, name: string): Promise<string> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  return text.split("\n").filter((l) => l.startsWith(name)).join("\n");
}

describe("library hooks", () => {
  const a = app();
  // No RPC rate limit here: the flood below is about the in-flight cap (the limit has its own test).
  const s = withServer({ apiKey: API_KEY, proxyTimeout: 0.3, clientRpcRate: 0 }, () => ({ hooks: a.hooks }));

  for (const t of TRANSPORTS) {
    describe(`${t}`, () => {
      it("connect names the user from the session cookie; a refusal is the hook's status and code", async () => {
        a.calls.length = 0;
        assert.equal((await attempt(s, t, "channel=room:1", cookie("s-alice"))).status, t === "ws" ? 101 : 200);
        const c = a.calls.find((x) => x.hook === "connect")!;
        assert.equal(c.ctx.transport, t);
        assert.equal(c.ctx.cookies.sid, "s-alice");
        assert.equal(c.ctx.headers.cookie, "theme=dark; sid=s-alice");
        assert.equal(c.ctx.ip, "127.0.0.1");
        assert.equal(c.ctx.client === undefined, t === "poll");
        const sub = a.calls.find((x) => x.hook === "subscribe")!;
        assert.equal(sub.ctx.user, "alice");
        assert.equal(sub.ctx.channel, "room:1");
        const r = await attempt(s, t, "channel=room:1", cookie("nobody"));
        assert.equal(r.status, 401);
        assert.equal(r.body.error.code, "not_logged_in");
        assert.equal(r.body.error.message, "log in first");
        await assertIdle(s.hl);
      });

      it("subscribe refuses a channel with the hook's 403; connect's channels need no subscribe call", async () => {
        const r = await attempt(s, t, "channel=private:bob", cookie("s-alice"));
        assert.equal(r.status, 403);
        assert.equal(r.body.error.code, "not_your_channel");
        a.calls.length = 0;
        assert.equal((await attempt(s, t, "channel=inbox:alice", cookie("s-alice"))).status, t === "ws" ? 101 : 200);
        assert.equal(a.calls.filter((x) => x.hook === "subscribe").length, 0);
        await assertIdle(s.hl);
      });

      it("a connect hook that throws, answers garbage or hangs → 503 hook_unavailable, nothing leaks", async () => {
        for (const sid of ["throw", "garbage", "hang"]) {
          const r = await attempt(s, t, "channel=room:1", cookie(sid));
          assert.equal(r.status, 503, sid);
          assert.equal(r.body.error.code, "hook_unavailable", sid);
        }
        await assertIdle(s.hl);
        assert.match(await metric(s, "heartline_hook_requests_total"), /hook="connect",outcome="unavailable"\} [1-9]/);
      });
    });
  }

  it("a poller's connect and subscribe answers are reused for the same credentials", async () => {
    // Another sid than the other tests use: nothing reused from them.
    const before = a.calls.length;
    for (let i = 0; i < 5; i++) assert.equal((await attempt(s, "poll", "channel=room:reuse", cookie("s-bob"))).status, 200);
    const made = a.calls.slice(before);
    assert.equal(made.filter((x) => x.hook === "connect").length, 1);
    assert.equal(made.filter((x) => x.hook === "subscribe").length, 1);
    assert.match(await metric(s, "heartline_hook_reused_total"), /hook="connect"\} [4-9]/);
  });

  it("WebSocket: connect's channels are subscribed at once; a subscribe frame asks the hook; a refusal is an error frame and the connection stays", async () => {
    const c = await WsClient.connect(`${s.wsUrl}/ws`, { headers: cookie("s-alice") });
    await c.next((f) => f.type === "subscribed" && f.channel === "inbox:alice");
    c.send({ type: "subscribe", channel: "private:bob", id: 1 });
    const e = await c.next((f) => f.type === "error" && f.id === 1);
    assert.equal(e.code, "not_your_channel");
    c.send({ type: "subscribe", channel: "room:7", id: 2 });
    await c.next((f) => f.type === "subscribed" && f.channel === "room:7");
    c.send({ type: "subscribe", channel: "slow:1", id: 3 });
    const slow = await c.next((f) => f.type === "error" && f.id === 3);
    assert.equal(slow.code, "hook_unavailable");
    assert.equal(c.ws.readyState, c.ws.OPEN);
    await publishHttp(s, "room:7", { text: "after" }, { Authorization: `Bearer ${API_KEY}` });
    await c.next((f) => f.type === "message" && f.channel === "room:7");
    c.close();
    await assertIdle(s.hl);
  });

  it("WebSocket publish frames go through the publish hook: rewritten, refused with the hook's code", async () => {
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=room:p`, { headers: cookie("s-alice") });
    await c.next((f) => f.type === "subscribed" && f.channel === "room:p");
    c.send({ type: "publish", channel: "room:p", data: { text: "   hello there, this is long   " }, id: 1 });
    await waitFor(() => c.frames.some((f) => f.type === "published" && f.id === 1));
    const m = c.messages("room:p")[0]!;
    assert.deepEqual(m.data, { text: "hello there, this is", from: "alice" });
    c.send({ type: "publish", channel: "news", data: { text: "x" }, id: 2 });
    assert.equal((await c.next((f) => f.type === "error" && f.id === 2)).code, "read_only");
    c.send({ type: "publish", channel: "room:p", data: { text: " " }, id: 3 });
    assert.equal((await c.next((f) => f.type === "error" && f.id === 3)).code, "empty_message");
    c.close();
    await assertIdle(s.hl);
  });

  it("POST /api/publish with a session cookie is a client publish: connect, then the hook", async () => {
    const sse = await SseStream.open(`${s.url}/sse?channel=room:h`, cookie("s-bob"));
    const r = await publishHttp(s, "room:h", { text: "from http" }, cookie("s-bob"));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const ev = await sse.next((e) => e.data !== undefined && e.event === undefined);
    assert.deepEqual(JSON.parse(ev.data!).data, { text: "from http", from: "bob" });
    const refused = await publishHttp(s, "room:h", { text: "x" }, cookie("nobody"));
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error.code, "not_logged_in");
    const ro = await publishHttp(s, "news", { text: "x" }, cookie("s-bob"));
    assert.equal(ro.status, 403);
    assert.equal(ro.body.error.code, "read_only");
    // The API key still publishes anywhere, without the hooks.
    assert.equal((await publishHttp(s, "news", { raw: true }, { Authorization: `Bearer ${API_KEY}` })).status, 200);
    sse.close();
    await assertIdle(s.hl);
  });

  it("rpc over the WebSocket frame: results, errors, out-of-order answers, bad method names", async () => {
    const c = await WsClient.connect(`${s.wsUrl}/ws`, { headers: cookie("s-alice") });
    c.send({ type: "rpc", id: 1, method: "sleep", params: 150 });
    c.send({ type: "rpc", id: 2, method: "whoami" });
    const first = await c.next((f) => f.type === "rpc");
    assert.equal(first.id, 2);
    assert.deepEqual(first.result, { user: "alice", info: { name: "ALICE" } });
    assert.equal((await c.next((f) => f.type === "rpc" && f.id === 1)).result, 150);
    c.send({ type: "rpc", id: "x", method: "nope" });
    assert.deepEqual((await c.next((f) => f.type === "rpc" && f.id === "x")).error, { code: "unknown_method", message: "no method nope" });
    c.send({ type: "rpc", id: 3, method: "has space" });
    assert.equal(((await c.next((f) => f.type === "rpc" && f.id === 3)).error as any).code, "bad_request");
    c.send({ type: "rpc", id: 4, method: "a".repeat(101) });
    assert.equal(((await c.next((f) => f.type === "rpc" && f.id === 4)).error as any).code, "bad_request");
    c.send({ type: "rpc", id: 5, method: "circular" });
    assert.equal(((await c.next((f) => f.type === "rpc" && f.id === 5)).error as any).code, "hook_unavailable");
    c.send({ type: "rpc", method: "whoami" });
    assert.equal((await c.next((f) => f.type === "error")).code, "bad_request");
    c.close();
    await assertIdle(s.hl);
  });

  it("a client that sends 10,000 RPCs without waiting has at most 32 at the hook at once; the rest are refused at once", async () => {
    const c = await WsClient.connect(`${s.wsUrl}/ws`, { headers: cookie("s-alice") });
    const before = a.calls.filter((x) => x.hook === "rpc").length;
    a.rpcs.max = 0;
    try {
      for (let i = 0; i < 10_000; i++) c.ws.send(JSON.stringify({ type: "rpc", id: i, method: "sleep", params: 100 }));
      await waitFor(() => c.frames.filter((f) => f.type === "rpc").length === 10_000, 30_000, "every rpc answered");
      const answers = c.frames.filter((f) => f.type === "rpc");
      assert.equal(new Set(answers.map((f) => f.id)).size, 10_000, "one answer per id");
      const busy = answers.filter((f) => (f.error as any)?.code === "too_many_requests").length;
      const called = a.calls.filter((x) => x.hook === "rpc").length - before;
      // Each RPC either reached the hook (answered with its result, or hook_unavailable on a slow machine) or was refused at once.
      assert.equal(called + busy, 10_000);
      assert.ok(called >= 32 && busy > 9000, `${called} reached the hook, ${busy} refused`);
      assert.equal(a.rpcs.max, 32, "RPCs at the hook at once");
    } finally {
      c.close();
    }
    await assertIdle(s.hl);
  });

  it("POST /api/rpc answers SSE and poll clients with the same credentials", async () => {
    const r = await rpcHttp(s, { method: "whoami" }, cookie("s-bob"));
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { result: { user: "bob", info: { name: "BOB" } } });
    const e = await rpcHttp(s, { method: "nope" }, cookie("s-bob"));
    assert.equal(e.status, 404);
    assert.equal(e.body.error.code, "unknown_method");
    assert.equal((await rpcHttp(s, { method: "whoami" }, cookie("nobody"))).status, 401);
    assert.equal((await rpcHttp(s, "{not json", cookie("s-bob"))).body.error.code, "bad_json");
    assert.equal((await rpcHttp(s, [1], cookie("s-bob"))).body.error.code, "bad_request");
    assert.equal((await rpcHttp(s, { method: 7 }, cookie("s-bob"))).body.error.code, "bad_request");
    const text = await getJson(`${s.url}/api/rpc`, { method: "POST", headers: { "Content-Type": "text/plain", ...cookie("s-bob") }, body: "{}" });
    assert.equal(text.status, 415);
    const big = await rpcHttp(s, { method: "whoami", params: "x".repeat(200_000) }, cookie("s-bob"));
    assert.equal(big.status, 413);
  });

  it("disconnect is told when a WebSocket or SSE connection closes, with the user and the reason", async () => {
    a.calls.length = 0;
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=room:d`, { headers: cookie("s-alice") });
    await c.next((f) => f.type === "subscribed");
    c.close();
    const d = await waitFor(() => a.calls.find((x) => x.hook === "disconnect"));
    assert.equal(d.ctx.user, "alice");
    assert.equal(d.ctx.transport, "ws");
    assert.equal(typeof d.ctx.reason, "string");
    const connect = a.calls.find((x) => x.hook === "connect")!;
    assert.equal(d.ctx.client, connect.ctx.client);
    await assertIdle(s.hl);
  });
});

describe("without an rpc hook", () => {
  const s = withServer(
    {},
    {
      hooks: {
        connect: (ctx) => {
          if (!ctx.cookies.sid) throw new HookError(401, "not_logged_in", "log in first");
          return { user: "u" };
        },
      },
    },
  );
  it("POST /api/rpc and the rpc frame answer rpc_not_configured (404), before asking connect", async () => {
    const r = await rpcHttp(s, { method: "x" });
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, "rpc_not_configured");
    const c = await WsClient.connect(`${s.wsUrl}/ws`, { headers: cookie("s-any") });
    c.send({ type: "rpc", id: 1, method: "x" });
    assert.equal(((await c.next((f) => f.type === "rpc")).error as any).code, "rpc_not_configured");
    c.close();
  });
  it("with a connect hook and no subscribe hook, an admitted client may subscribe to any channel", async () => {
    // connect is the gate: without its cookie the client is refused, with it any channel is open.
    assert.equal((await attempt(s, "sse", "channel=anything", {})).status, 401);
    for (const t of TRANSPORTS) assert.equal((await attempt(s, t, "channel=anything", cookie("s-any"))).status, t === "ws" ? 101 : 200, t);
  });
});

describe("a publish from this machine without --api-key", () => {
  const s = withServer({}, { hooks: { publish: () => { throw new HookError(403, "no_browsers", "not from a browser"); } } });
  it("is the server's without client credentials, and a client's (through the hook) with a cookie or a token", async () => {
    assert.equal((await publishHttp(s, "news", { n: 1 })).status, 200);
    const withCookie = await publishHttp(s, "news", { n: 2 }, cookie("s-alice"));
    assert.equal(withCookie.status, 403);
    assert.equal(withCookie.body.error.code, "no_browsers");
    assert.equal((await publishHttp(s, "news", { n: 3 }, { Authorization: "Bearer some.token" })).body.error.code, "no_browsers");
  });
});

describe("fairness (SPEC §11)", () => {
  const users = new Map([["s-1", "ann"], ["s-2", "ann"], ["s-3", "ann"], ["s-4", "ben"]]);
  const s = withServer(
    { maxConnectionsPerUser: 2, clientPublishRate: 5, clientRpcRate: 5, clientPublish: ["room:*"] },
    { hooks: { connect: (ctx) => ({ user: users.get(ctx.cookies.sid ?? "") ?? "" }), rpc: () => "ok" } },
  );

  it("--max-connections-per-user refuses a user's third connection with 429 too_many_connections, on WS and SSE; others are not affected; a slot comes back on close", async () => {
    const a1 = await WsClient.connect(`${s.wsUrl}/ws`, { headers: cookie("s-1") });
    const a2 = await SseStream.open(`${s.url}/sse?channel=x`, cookie("s-2"));
    for (const t of ["ws", "sse"] as const) {
      const r = await attempt(s, t, "channel=x", cookie("s-3"));
      assert.equal(r.status, 429, t);
      assert.equal(r.body.error.code, "too_many_connections");
    }
    assert.equal((await attempt(s, "ws", "channel=x", cookie("s-4"))).status, 101, "another user");
    assert.equal((await attempt(s, "sse", "channel=x", {})).status, 200, "anonymous clients are not counted");
    a1.close();
    await waitFor(() => s.hl.connections === 1);
    assert.equal((await attempt(s, "ws", "channel=x", cookie("s-3"))).status, 101, "the slot came back");
    a2.close();
    await assertIdle(s.hl);
  });

  it("--client-publish-rate and --client-rpc-rate: a burst of twice the rate passes, the rest get rate_limited, the connection stays", async () => {
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=room:r`);
    await c.next((f) => f.type === "subscribed");
    for (let i = 0; i < 30; i++) c.send({ type: "publish", channel: "room:r", data: i, id: `p${i}` });
    for (let i = 0; i < 30; i++) c.send({ type: "rpc", id: i, method: "m" });
    await waitFor(() => c.frames.filter((f) => (f.type === "published" || f.type === "error") && String(f.id).startsWith("p")).length === 30 && c.frames.filter((f) => f.type === "rpc").length === 30, 10_000, "every answer");
    const published = c.frames.filter((f) => f.type === "published").length;
    const limited = c.frames.filter((f) => f.type === "error" && f.code === "rate_limited").length;
    // 2 × 5 at once, plus what refills while the frames arrive (5 per second).
    assert.ok(published >= 10 && published <= 12, `${published} publishes passed`);
    assert.equal(published + limited, 30);
    const rpcOk = c.frames.filter((f) => f.type === "rpc" && f.result === "ok").length;
    const rpcLimited = c.frames.filter((f) => f.type === "rpc" && (f.error as any)?.code === "rate_limited").length;
    assert.ok(rpcOk >= 10 && rpcOk <= 12, `${rpcOk} RPCs passed`);
    assert.equal(rpcOk + rpcLimited, 30);
    assert.equal(c.ws.readyState, c.ws.OPEN);
    // The bucket refills: after a second, publishing works again.
    await new Promise((r) => setTimeout(r, 1100));
    c.send({ type: "publish", channel: "room:r", data: "later", id: "later" });
    await c.next((f) => f.type === "published" && f.id === "later");
    c.close();
    await assertIdle(s.hl);
  });
});

describe("limits come before hooks", () => {
  let connects = 0;
  const s = withServer({ maxConnectionsPerIp: 1 }, { hooks: { connect: () => (connects++, { user: "u" }) } });
  it("an address over --max-connections-per-ip is refused without a connect call", async () => {
    const held = await SseStream.open(`${s.url}/sse?channel=a`);
    const n = connects;
    for (const t of ["ws", "sse"] as const) assert.equal((await attempt(s, t, "channel=a", {})).status, 429);
    assert.equal(connects, n);
    held.close();
    await assertIdle(s.hl);
  });
});

describe("a hung hook delays only its own request", () => {
  const s = withServer({ apiKey: API_KEY, proxyTimeout: 10 }, { hooks: { rpc: () => new Promise(() => {}), subscribe: () => new Promise(() => {}), connect: () => ({ user: "u" }) } });
  it("delivery to other subscribers goes on while RPCs and subscribes hang", async () => {
    const listeners = await Promise.all(Array.from({ length: 20 }, () => WsClient.connect(`${s.wsUrl}/ws?channel=public:live`)));
    await Promise.all(listeners.map((l) => l.next((f) => f.type === "subscribed")));
    const hung = await WsClient.connect(`${s.wsUrl}/ws`);
    for (let i = 0; i < 32; i++) hung.send({ type: "rpc", id: i, method: "wait" });
    for (let i = 0; i < 50; i++) hung.send({ type: "subscribe", channel: `private:${i}` });
    const hungSse = Array.from({ length: 10 }, () => SseStream.attempt(`${s.url}/sse?channel=private:x`));
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      await publishHttp(s, "public:live", { i }, { Authorization: `Bearer ${API_KEY}` });
      await Promise.all(listeners.map((l) => l.next((f) => f.type === "message" && (f.data as any).i === i)));
      latencies.push(performance.now() - t0);
    }
    latencies.sort((x, y) => x - y);
    const p50 = latencies[10]!;
    // Delivery takes milliseconds; a wait on the hung hook would take its 10 s timeout.
    assert.ok(latencies[19]! < 1000, `slowest delivery ${latencies[19]} ms (median ${p50} ms) while hooks hang`);
    for (const l of listeners) l.close();
    hung.close();
    await s.hl.close(0.5);
    await Promise.allSettled(hungSse);
  });
});
