/**
 * The hook runner's own logic, without sockets: cookie parsing, HookError's
 * checks, what answers fail closed, the timeout, RPC method names, and the
 * reuse of connect/subscribe answers for polls (timed by a fake clock).
 */
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { describe, it } from "node:test";
import pino from "pino";
import { Auth } from "../../src/auth/auth.js";
import { ManualClock } from "../../src/clock.js";
import { configFromOptions, type HeartlineOptions } from "../../src/config.js";
import { HeartlineError, HookError } from "../../src/errors.js";
import { cookiesOf, HookRunner, STATELESS_REUSE_MS } from "../../src/hooks/runner.js";
import type { Hooks } from "../../src/hooks/types.js";
import { LogLimiter } from "../../src/log.js";
import { Stats } from "../../src/stats.js";

function runner(hooks: Hooks, options: HeartlineOptions = {}) {
  const config = configFromOptions(options);
  const clock = new ManualClock();
  const log = pino({ level: "silent" });
  const stats = new Stats();
  const auth = new Auth(config, { clock, tickMs: 250, log, stats });
  return { r: new HookRunner({ config, auth, log, logs: new LogLimiter(log, clock), stats, now: () => clock.now() }, hooks), clock };
}

const req = (headers: Record<string, string> = {}) => ({ headers }) as unknown as IncomingMessage;
const url = (q = "") => new URL(`http://h/poll?${q}`);

async function code(p: Promise<unknown> | undefined): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof HeartlineError, String(err));
    return err.code;
  }
  return "none";
}

describe("cookiesOf", () => {
  it("reads name=value pairs, unquotes, decodes, keeps the first of a repeated name, skips garbage", () => {
    assert.deepEqual({ ...cookiesOf('a=1; b="two"; c=%E2%9C%93; a=9; =x; junk; d=%ZZ') }, { a: "1", b: "two", c: "✓", d: "%ZZ" });
    assert.deepEqual({ ...cookiesOf(undefined) }, {});
    assert.equal(cookiesOf("__proto__=1").__proto__, "1");
  });
});

describe("HookError", () => {
  it("carries the application's status and code; refuses a status outside 400–599 or a code that is not snake_case", () => {
    const e = new HookError(402, "payment_required", "pay first");
    assert.equal(e.status, 402);
    assert.equal(e.code, "payment_required");
    assert.deepEqual(e.toJSON(), { error: { code: "payment_required", message: "pay first" } });
    assert.throws(() => new HookError(200, "ok", "x"), TypeError);
    assert.throws(() => new HookError(403, "Bad Code", "x"), TypeError);
    assert.throws(() => new HookError(403, "a".repeat(65), "x"), TypeError);
    assert.equal(new HookError(403, "long", "m".repeat(5000)).message.length, 1000);
  });
});

describe("HookRunner", () => {
  it("without hooks is disabled", () => {
    assert.equal(runner({}).r.enabled, false);
  });

  it("gives a hook only the --proxy-headers the request carried, and the query without cursor, token and the like", async () => {
    let seen: any;
    const { r } = runner({ connect: (ctx) => ((seen = ctx), { user: "u" }) }, { proxyHeaders: "cookie,x-tenant" });
    const s = r.session("poll", req({ cookie: "sid=1", "x-tenant": "t", authorization: "Bearer x" }), url("room=5&cursor=abc&token=t&timeout=3"), "10.0.0.1", undefined);
    await r.connect(s);
    assert.deepEqual(seen.headers, { cookie: "sid=1", "x-tenant": "t" });
    assert.deepEqual(seen.query, { room: "5" });
    assert.equal(seen.cookies.sid, "1");
    assert.equal(seen.ip, "10.0.0.1");
    assert.equal(s.user, "u");
  });

  it("fails closed on every answer of the wrong shape", async () => {
    const bad: unknown[] = [undefined, null, "alice", { user: 5 }, { user: "x".repeat(257) }, { user: "u", channels: ["bad channel"] }, { user: "u", channels: "room:1" }, { user: "u", expireAt: "soon" }];
    for (const answer of bad) {
      const { r } = runner({ connect: () => answer as never });
      assert.equal(await code(r.connect(r.session("ws", req(), url(), "ip", undefined))), "hook_unavailable", JSON.stringify(answer));
    }
    const { r } = runner({ subscribe: () => "yes" as never, publish: () => 5 as never });
    const s = r.session("ws", req(), url(), "ip", undefined);
    assert.equal(await code(r.checkChannel(s, undefined, "room:1")), "hook_unavailable");
    assert.equal(await code(r.publish(s, "room:1", {})), "hook_unavailable");
  });

  it("a throw that is not a HookError, and a HookError, give different answers", async () => {
    const { r } = runner({ connect: (ctx) => { if (ctx.cookies.sid) throw new HookError(401, "who", "log in"); throw new Error("db down"); } });
    assert.equal(await code(r.connect(r.session("sse", req(), url(), "ip", undefined))), "hook_unavailable");
    assert.equal(await code(r.connect(r.session("sse", req({ cookie: "sid=1" }), url(), "ip", undefined))), "who");
  });

  it("a hook that never answers fails after --proxy-timeout, and its signal is aborted", async () => {
    let signal: AbortSignal | undefined;
    const { r } = runner({ rpc: (ctx) => ((signal = ctx.signal), new Promise(() => {})) }, { proxyTimeout: 0.05 });
    const s = r.session("http", req(), url(), "ip", undefined);
    const t0 = performance.now();
    assert.equal(await code(r.rpc(s, "m", null)), "hook_unavailable");
    assert.ok(performance.now() - t0 < 2000);
    assert.equal(signal?.aborted, true);
  });

  it("checks RPC method names before calling the hook", async () => {
    let calls = 0;
    const { r } = runner({ rpc: () => ++calls });
    const s = r.session("http", req(), url(), "ip", undefined);
    for (const m of ["", "a b", "a".repeat(101), 5, null, "ünï", "x\n"]) assert.equal(await code(r.rpc(s, m, null)), "bad_request", String(m));
    assert.equal(calls, 0);
    assert.equal(await r.rpc(s, "ns.sub:do/it-1_2", null), "1");
    assert.equal(await code(runner({ connect: () => ({ user: "" }) }).r.rpc(s, "m", null)), "rpc_not_configured");
  });

  it("reuses a poll's connect and subscribe answers for the same credentials, for a few seconds only", async () => {
    let connects = 0;
    let subscribes = 0;
    const { r, clock } = runner({ connect: () => (++connects, { user: "u" }), subscribe: () => void ++subscribes });
    const poll = async (cookie: string) => {
      // X-Request-ID differs on every request: it must not defeat the reuse.
      const s = r.session("poll", req({ cookie, "x-request-id": String(Math.random()) }), url("cursor=x" + Math.random()), "ip", undefined);
      await r.connect(s);
      await r.checkChannel(s, undefined, "room:1");
    };
    await poll("sid=1");
    await poll("sid=1");
    assert.deepEqual([connects, subscribes], [1, 1]);
    await poll("sid=2");
    assert.deepEqual([connects, subscribes], [2, 2]);
    clock.advance(STATELESS_REUSE_MS + 1);
    await poll("sid=1");
    assert.deepEqual([connects, subscribes], [3, 3]);
    // A WebSocket or SSE connection asks every time.
    await r.connect(r.session("ws", req({ cookie: "sid=1" }), url(), "ip", undefined));
    assert.equal(connects, 4);
  });

  it("never reuses a refusal", async () => {
    let n = 0;
    const { r } = runner({ connect: () => { n++; throw new HookError(401, "no", "no"); } });
    for (let i = 0; i < 3; i++) assert.equal(await code(r.connect(r.session("poll", req(), url(), "ip", undefined))), "no");
    assert.equal(n, 3);
  });

  it("an expireAt in the past refuses at once", async () => {
    const { r } = runner({ connect: () => ({ user: "u", expireAt: Date.now() / 1000 - 10 }) });
    assert.equal(await code(r.connect(r.session("ws", req(), url(), "ip", undefined))), "token_expired");
  });
});
