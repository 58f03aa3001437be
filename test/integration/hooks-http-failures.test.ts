/**
 * The HTTP hooks fail closed (SPEC §8): a backend that hangs past
 * `--proxy-timeout`, is down, answers 500, answers garbage or answers 10 MB
 * makes the client's request fail with `503 hook_unavailable` on every
 * transport (an `error` frame on an open WebSocket, which stays open), lets
 * nothing through, and leaves Heartline up, counting each failure in
 * `/metrics` and holding no connection afterwards. Heartline and the example
 * backend run as child processes.
 */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { ALL_HOOKS, hookCounts, openConnections, startBackend, type Backend, type HookName } from "../helpers/backend.js";
import { startChildServer, type ChildServer } from "../helpers/child.js";
import { getJson, upgrade, waitFor, WsClient } from "../helpers/server.js";
import { SseStream } from "../helpers/sse.js";

const API_KEY = "hooks-failure-key";
/** `--proxy-timeout` of these servers, in seconds: short, so that a hung backend costs little. */
const TIMEOUT_S = 0.5;

/** A port on which nothing listens: connections to it are refused. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

type Mode = "hang" | "down" | "500" | "garbage" | "huge" | "huge-chunked" | "reset" | "shapeless";
const MODES: readonly Mode[] = ["hang", "down", "500", "garbage", "huge", "huge-chunked", "reset", "shapeless"];
const TITLES: Record<Mode, string> = {
  hang: `hung past --proxy-timeout ${TIMEOUT_S}`,
  down: "down (connection refused)",
  500: "answering 500",
  garbage: "answering cut-off JSON",
  huge: "answering 10 MB",
  "huge-chunked": "streaming 10 MB without a length",
  reset: "closing the connection without an answer",
  shapeless: "answering JSON of the wrong shape",
};

/** Backends for the file: a healthy one, and one per fault with every hook failing that way. */
const backends = new Map<string, Backend>();
const servers: ChildServer[] = [];
let healthy: Backend;
let cookie: string;
let dead: number;

before(async () => {
  healthy = await startBackend();
  cookie = await healthy.login("alice");
  dead = await deadPort();
  for (const mode of MODES) {
    if (mode === "down") continue;
    backends.set(mode, await startBackend({ faults: ALL_HOOKS.map((h) => `${h}=${mode}`).join(",") }));
  }
});

after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await Promise.all([healthy, ...backends.values()].map((b) => b?.stop()));
});

/** The failing URL of a hook in a mode. */
function failingUrl(mode: Mode, hook: HookName): string {
  return mode === "down" ? `http://127.0.0.1:${dead}/hooks/${hook}` : backends.get(mode)!.hookUrl(hook);
}

/** Starts Heartline with the hooks in `failing` pointing at the failing backend of `mode`, the others at the healthy one. */
async function heartline(mode: Mode, failing: readonly HookName[]): Promise<ChildServer> {
  const args = ALL_HOOKS.flatMap((h) => [`--proxy-${h}-url`, failing.includes(h) ? failingUrl(mode, h) : healthy.hookUrl(h)]);
  const s = await startChildServer([...args, "--api-key", API_KEY, "--proxy-timeout", String(TIMEOUT_S)]);
  servers.push(s);
  return s;
}

function post(s: ChildServer, path: string, body: unknown, headers: Record<string, string>) {
  return getJson(`${s.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
}

/** Asserts a `503 hook_unavailable` answer naming the hook. */
function assertUnavailable(res: { status: number; body: any }, hook: HookName, what: string): void {
  assert.equal(res.status, 503, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(res.body?.error?.code, "hook_unavailable", what);
  assert.match(res.body.error.message, new RegExp(`\\b${hook}\\b`), what);
}

/** The server is alive, answers, and holds no subscriber connection. */
async function assertSettled(s: ChildServer): Promise<void> {
  assert.equal(s.child.exitCode, null, "the Heartline process is still running");
  assert.equal(s.child.signalCode, null);
  assert.equal((await getJson(`${s.url}/healthz`)).status, 200);
  await waitFor(
    async () => {
      const n = await openConnections(s.url);
      return n.ws === 0 && n.sse === 0 && n.poll === 0;
    },
    5000,
    "every connection counter back to 0",
  );
}

for (const mode of MODES) {
  describe(`HTTP hooks fail closed: backend ${TITLES[mode]}`, () => {
    describe("connect fails", () => {
      let s: ChildServer;
      before(async () => {
        s = await heartline(mode, ["connect"]);
      });

      it("WebSocket upgrade, SSE, poll, POST /api/rpc and a client's POST /api/publish → 503 hook_unavailable", async () => {
        const offset = (await getJson(`${s.url}/api/channels/room:lobby`, { headers: { authorization: `Bearer ${API_KEY}` } })).body.offset;
        const started = Date.now();
        const wsRes = await upgrade(s.port, "/ws?channel=room:lobby", { cookie });
        assert.equal(wsRes.status, 503, JSON.stringify(wsRes.body));
        assertUnavailable(wsRes, "connect", "ws");
        const sse = await SseStream.attempt(`${s.url}/sse?channel=room:lobby`, { cookie });
        assert.ok(!(sse instanceof SseStream), "the stream is refused");
        assertUnavailable(sse, "connect", "sse");
        assertUnavailable(await getJson(`${s.url}/poll?channel=room:lobby`, { headers: { cookie } }), "connect", "poll");
        assertUnavailable(await post(s, "/api/rpc", { method: "whoami" }, { cookie }), "connect", "rpc");
        assertUnavailable(await post(s, "/api/publish", { channel: "room:lobby", data: { text: "x" } }, { cookie }), "connect", "publish");
        if (mode === "hang") assert.ok(Date.now() - started >= 5 * TIMEOUT_S * 1000 - 100, "each waited for --proxy-timeout");
        assert.equal((await getJson(`${s.url}/api/channels/room:lobby`, { headers: { authorization: `Bearer ${API_KEY}` } })).body.offset, offset, "nothing was published");
        const counts = await hookCounts(s.url);
        assert.equal(counts("connect", "unavailable"), 5);
        assert.equal(counts("connect", "ok"), 0);
        for (const hook of ["subscribe", "publish", "rpc"]) assert.equal(counts(hook, "ok") + counts(hook, "unavailable"), 0, `${hook} never asked`);
      });

      it("the server publishes with its API key, is up, and holds no connection", async () => {
        assert.equal((await post(s, "/api/publish", { channel: "public:ok", data: 1 }, { authorization: `Bearer ${API_KEY}` })).status, 200);
        await assertSettled(s);
      });
    });

    describe("subscribe, publish and rpc fail", () => {
      let s: ChildServer;
      before(async () => {
        s = await heartline(mode, ["subscribe", "publish", "rpc"]);
      });

      it("on an open WebSocket: error frames with hook_unavailable, the connection kept and still served", async () => {
        const c = await WsClient.connect(`${s.wsUrl}/ws`, { headers: { cookie } });
        try {
          c.send({ type: "subscribe", channel: "room:lobby" });
          const sub = await c.next((f) => f.type === "error" || f.type === "subscribed", 5000);
          assert.equal(sub.type, "error", JSON.stringify(sub));
          assert.equal(sub.code, "hook_unavailable");
          assert.equal(sub.channel, "room:lobby");

          c.send({ type: "publish", channel: "room:lobby", data: { text: "x" } });
          const pub = await c.next((f) => f.type === "error" || f.type === "published", 5000);
          assert.equal(pub.type, "error", JSON.stringify(pub));
          assert.equal(pub.code, "hook_unavailable");

          c.send({ type: "rpc", id: 7, method: "whoami" });
          const rpc = await c.next((f) => f.type === "rpc" && f.id === 7, 5000);
          assert.equal((rpc.error as { code: string }).code, "hook_unavailable", JSON.stringify(rpc));
          assert.equal(rpc.result, undefined);

          // Still open and served: a public channel needs no hook, and its messages arrive.
          assert.equal(c.ws.readyState, 1);
          c.send({ type: "subscribe", channel: "public:ok" });
          assert.equal((await c.next((f) => f.type === "subscribed" || f.type === "error")).type, "subscribed");
          assert.equal((await post(s, "/api/publish", { channel: "public:ok", data: { n: 1 } }, { authorization: `Bearer ${API_KEY}` })).status, 200);
          assert.deepEqual((await c.next((f) => f.type === "message")).data, { n: 1 });
          assert.equal((await getJson(`${s.url}/api/channels/room:lobby`, { headers: { authorization: `Bearer ${API_KEY}` } })).body.offset, 0, "nothing was published on room:lobby");
        } finally {
          c.close();
        }
      });

      if (mode === "hang") {
        it("a hook waiting on the backend does not delay delivery to the same or other connections", async () => {
          const c = await WsClient.connect(`${s.wsUrl}/ws?channel=public:fast`, { headers: { cookie } });
          const other = await WsClient.connect(`${s.wsUrl}/ws?channel=public:fast`, { headers: { cookie } });
          try {
            await c.next((f) => f.type === "subscribed");
            await other.next((f) => f.type === "subscribed");
            c.send({ type: "rpc", id: 1, method: "whoami" });
            c.send({ type: "publish", channel: "room:lobby", data: { text: "x" } });
            const t0 = Date.now();
            assert.equal((await post(s, "/api/publish", { channel: "public:fast", data: 2 }, { authorization: `Bearer ${API_KEY}` })).status, 200);
            await c.next((f) => f.type === "message");
            await other.next((f) => f.type === "message");
            assert.ok(Date.now() - t0 < TIMEOUT_S * 1000, `delivered in ${Date.now() - t0} ms, before the hooks gave up`);
            assert.equal(((await c.next((f) => f.type === "rpc" && f.id === 1, 5000)).error as { code: string }).code, "hook_unavailable");
            assert.equal((await c.next((f) => f.type === "error" || f.type === "published", 5000)).code, "hook_unavailable");
          } finally {
            c.close();
            other.close();
          }
        });
      }

      it("SSE and poll subscribing a hooked channel, POST /api/rpc and a client's POST /api/publish → 503 hook_unavailable", async () => {
        const sse = await SseStream.attempt(`${s.url}/sse?channel=room:lobby`, { cookie });
        assert.ok(!(sse instanceof SseStream), "the stream is refused");
        assertUnavailable(sse, "subscribe", "sse");
        assertUnavailable(await getJson(`${s.url}/poll?channel=room:lobby`, { headers: { cookie } }), "subscribe", "poll");
        assertUnavailable(await post(s, "/api/rpc", { method: "whoami" }, { cookie }), "rpc", "rpc");
        assertUnavailable(await post(s, "/api/publish", { channel: "room:lobby", data: { text: "x" } }, { cookie }), "publish", "publish");
        assert.equal((await getJson(`${s.url}/api/channels/room:lobby`, { headers: { authorization: `Bearer ${API_KEY}` } })).body.offset, 0, "nothing was published");
      });

      it("counts each failure once in heartline_hook_requests_total, is up, and holds no connection", async () => {
        const counts = await hookCounts(s.url);
        const hung = mode === "hang" ? 1 : 0;
        assert.equal(counts("subscribe", "unavailable"), 3, "ws, sse, poll");
        assert.equal(counts("publish", "unavailable"), 2 + hung, "ws, http");
        assert.equal(counts("rpc", "unavailable"), 2 + hung, "ws, http");
        for (const hook of ["subscribe", "publish", "rpc"]) assert.equal(counts(hook, "ok") + counts(hook, "refused"), 0, hook);
        assert.ok(counts("connect", "ok") >= 1);
        assert.equal(counts("connect", "unavailable"), 0);
        await assertSettled(s);
      });
    });
  });
}

describe("HTTP hooks fail closed: shutdown while hooks hang", () => {
  it("SIGTERM ends the process within --drain-timeout though the backend never answers (--proxy-timeout 30)", async () => {
    const hung = backends.get("hang")!;
    const drain = ["--proxy-timeout", "30", "--drain-timeout", "1"];
    // One server whose connect works but whose rpc and subscribe hang; one whose connect hangs.
    const open = await startChildServer(["--proxy-connect-url", healthy.hookUrl("connect"), "--proxy-rpc-url", hung.hookUrl("rpc"), "--proxy-subscribe-url", hung.hookUrl("subscribe"), ...drain]);
    const closed = await startChildServer([...hung.proxyArgs(), ...drain]);
    servers.push(open, closed);
    const c = await WsClient.connect(`${open.wsUrl}/ws`, { headers: { cookie } });
    c.send({ type: "rpc", id: 1, method: "whoami" });
    c.send({ type: "subscribe", channel: "room:lobby" });
    const upgrading = upgrade(closed.port, "/ws", { cookie });
    // Time for the hooks to be asked: they wait on the backend from then on.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const t0 = Date.now();
    const exits = [open, closed].map((s) => new Promise<number | null>((resolve) => s.child.once("exit", (code) => resolve(code))));
    open.child.kill("SIGTERM");
    closed.child.kill("SIGTERM");
    assert.deepEqual(await Promise.all(exits), [0, 0]);
    assert.ok(Date.now() - t0 < 3000, `exited after ${Date.now() - t0} ms`);
    await c.closed;
    assert.equal(c.closeCode, 1012, "service restart: reconnect elsewhere");
    const refused = await upgrading;
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, "hook_unavailable");
  });
});

describe("HTTP hooks fail closed: afterwards", () => {
  it("the backends that misbehaved are still up too", async () => {
    for (const [mode, b] of backends) {
      assert.equal(b.child.exitCode, null, mode);
      const res = await fetch(`${b.url}/login`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"name":"z"}' });
      assert.equal(res.status, 200, mode);
    }
  });
});
