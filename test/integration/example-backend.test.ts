/**
 * The example application backend (examples/backend/server.mjs) on its own,
 * as a child process: sessions, the JSON each hook answers, hostile input,
 * and the test-only faults the hook tests rely on.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { BACKEND_SCRIPT, startBackend, type Backend } from "../helpers/backend.js";
import { getJson, readAnswer, type HttpAnswer } from "../helpers/server.js";

/** POSTs `body` (JSON unless a string) to the backend. */
function post(backend: Backend, path: string, body: unknown, headers: Record<string, string> = {}) {
  return getJson(`${backend.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Calls a hook as Heartline does and answers the parsed body (status must be 200). */
async function hook(backend: Backend, name: string, body: Record<string, unknown>): Promise<any> {
  const res = await post(backend, `/hooks/${name}`, { transport: "ws", ip: "127.0.0.1", headers: {}, ...body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

describe("example backend", () => {
  let backend: Backend;
  before(async () => {
    backend = await startBackend({ args: ["--max-sessions", "3"] });
  });
  after(() => backend.stop());

  describe("sessions", () => {
    it("logs in with JSON or a form, sets an HttpOnly SameSite=Lax cookie on /, and connect names the user", async () => {
      const res = await fetch(`${backend.url}/login`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "name=alice",
      });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { user: "alice" });
      const setCookie = res.headers.get("set-cookie") ?? "";
      assert.match(setCookie, /^sid=[A-Za-z0-9_-]{32}; HttpOnly; SameSite=Lax; Path=\//);
      const cookie = setCookie.split(";")[0]!;
      const answer = await hook(backend, "connect", { transport: "sse", headers: { cookie: `theme=dark; ${cookie}` } });
      assert.equal(answer.result.user, "alice");
      assert.equal(answer.result.info.name, "alice");
      assert.equal(answer.result.info.transport, "sse");

      const bobCookie = await backend.login("bob");
      assert.notEqual(bobCookie, cookie, "every session gets its own random id");
      assert.equal((await hook(backend, "connect", { headers: { cookie: bobCookie } })).result.user, "bob");
    });

    it("refuses connect without a cookie, with an unknown one, and after logout", async () => {
      const refusal = { error: { status: 401, code: "not_logged_in", message: "No valid session cookie: log in first." } };
      assert.deepEqual(await hook(backend, "connect", {}), refusal);
      assert.deepEqual(await hook(backend, "connect", { headers: { cookie: "sid=forged" } }), refusal);
      assert.deepEqual(await hook(backend, "connect", { headers: { cookie: 42 } }), refusal);
      const cookie = await backend.login("carol");
      assert.equal((await hook(backend, "connect", { headers: { cookie } })).result.user, "carol");
      const out = await fetch(`${backend.url}/logout`, { method: "POST", headers: { cookie } });
      assert.equal(out.status, 200);
      assert.match(out.headers.get("set-cookie") ?? "", /^sid=; .*Max-Age=0/);
      assert.deepEqual(await hook(backend, "connect", { headers: { cookie } }), refusal);
    });

    it("keeps at most --max-sessions sessions, forgetting the oldest", async () => {
      const cookies = [];
      for (const name of ["u1", "u2", "u3", "u4"]) cookies.push(await backend.login(name));
      assert.equal((await hook(backend, "connect", { headers: { cookie: cookies[0] } })).error.code, "not_logged_in");
      for (const [i, cookie] of cookies.slice(1).entries()) {
        assert.equal((await hook(backend, "connect", { headers: { cookie } })).result.user, `u${i + 2}`);
      }
    });

    it("refuses a bad name with 400 bad_name", async () => {
      for (const name of ["", "a b", "x".repeat(65), "é", 7]) {
        const res = await post(backend, "/login", { name });
        assert.equal(res.status, 400, String(name));
        assert.equal(res.body.error.code, "bad_name");
      }
    });
  });

  describe("hooks", () => {
    it("subscribe: private:<user> for that user only, room:* for anyone logged in, nothing else", async () => {
      assert.deepEqual(await hook(backend, "subscribe", { user: "alice", channel: "private:alice" }), { result: {} });
      assert.deepEqual(await hook(backend, "subscribe", { user: "alice", channel: "room:lobby" }), { result: { info: { user: "alice" } } });
      assert.deepEqual(await hook(backend, "subscribe", { user: "alice", channel: "private:bob" }), {
        error: { status: 403, code: "channel_not_allowed", message: "alice may not subscribe to private:bob." },
      });
      assert.equal((await hook(backend, "subscribe", { user: "alice", channel: "news" })).error.status, 403);
      assert.equal((await hook(backend, "subscribe", { channel: "room:lobby" })).error.code, "not_logged_in");
      const cookie = await backend.login("dave");
      assert.deepEqual(await hook(backend, "subscribe", { headers: { cookie }, channel: "private:dave" }), { result: {} });
    });

    it("publish: room:* text is trimmed, capped at 500 and stamped; no text is 400; other channels 403", async () => {
      const before = Date.now();
      const { result } = await hook(backend, "publish", { user: "alice", channel: "room:lobby", data: { text: `  ${"y".repeat(600)}  `, extra: 1 } });
      assert.deepEqual(Object.keys(result.data).sort(), ["at", "text", "user"]);
      assert.equal(result.data.text, "y".repeat(500));
      assert.equal(result.data.user, "alice");
      assert.ok(result.data.at >= before && result.data.at <= Date.now());
      for (const data of [{ text: "   " }, { text: 5 }, "hi", null, [1]]) {
        assert.equal((await hook(backend, "publish", { user: "alice", channel: "room:lobby", data })).error.code, "bad_message");
      }
      assert.deepEqual(await hook(backend, "publish", { user: "alice", channel: "private:alice", data: { text: "x" } }), {
        error: { status: 403, code: "publish_not_allowed", message: "Clients may not publish to private:alice." },
      });
    });

    it("rpc: whoami, echo, add, sleep, context, and 404 unknown_method", async () => {
      assert.deepEqual(await hook(backend, "rpc", { user: "alice", method: "whoami" }), { result: { user: "alice" } });
      assert.deepEqual(await hook(backend, "rpc", { user: "alice", method: "echo", params: { a: [1, "two"] } }), { result: { a: [1, "two"] } });
      assert.deepEqual(await hook(backend, "rpc", { user: "alice", method: "echo" }), { result: null });
      assert.deepEqual(await hook(backend, "rpc", { user: "alice", method: "add", params: { a: 2, b: 40 } }), { result: 42 });
      assert.equal((await hook(backend, "rpc", { user: "alice", method: "add", params: { a: "2", b: 1 } })).error.code, "bad_params");
      assert.deepEqual(
        await hook(backend, "rpc", { user: "alice", method: "context", transport: "http", ip: "10.0.0.1", headers: { cookie: "sid=x", "user-agent": "t" } }),
        { result: { user: "alice", transport: "http", ip: "10.0.0.1", client: null, headers: ["cookie", "user-agent"] } },
      );
      const slept = hook(backend, "rpc", { user: "alice", method: "sleep", params: { ms: 500 } });
      const t0 = Date.now();
      assert.deepEqual(await hook(backend, "rpc", { user: "alice", method: "sleep", params: { ms: 0 } }), { result: { slept: 0 } });
      assert.ok(Date.now() - t0 < 500, "a sleeping RPC does not hold up others");
      assert.deepEqual(await slept, { result: { slept: 500 } });
      for (const params of [{ ms: -1 }, { ms: 10_001 }, { ms: "1" }, null]) {
        assert.equal((await hook(backend, "rpc", { user: "alice", method: "sleep", params })).error.code, "bad_params");
      }
      assert.deepEqual(await hook(backend, "rpc", { user: "alice", method: "toString" }), {
        error: { status: 404, code: "unknown_method", message: "There is no method toString." },
      });
    });
  });

  describe("hostile input", () => {
    it("answers 400 to bad JSON, a JSON non-object and a headers field that is not an object", async () => {
      for (const [body, code] of [
        ["{bad", "bad_json"],
        ["", "bad_json"],
        ["[1,2]", "bad_json"],
        ["null", "bad_json"],
        ['"x"', "bad_json"],
        ['{"headers":"cookie"}', "bad_request"],
        ['{"headers":null}', "bad_request"],
      ] as const) {
        const res = await post(backend, "/hooks/connect", body);
        assert.equal(res.status, 400, body);
        assert.equal(res.body.error.code, code, body);
      }
    });

    it("answers 404 to unknown paths (prototype names included) and 405 to other methods", async () => {
      for (const path of ["/", "/__proto__", "/constructor", "/hooks/toString", "/hooks/disconnect"]) {
        assert.equal((await post(backend, path, {})).status, 404, path);
      }
      const res = await getJson(`${backend.url}/hooks/rpc`);
      assert.equal(res.status, 405);
      assert.equal(res.body.error.code, "method_not_allowed");
    });

    it("answers 413 to a body over 256 KiB, declared or streamed, and closes the connection", async () => {
      const declared = await rawPost(backend.port, "/hooks/rpc", { "content-length": String(50 * 1024 * 1024) }, Buffer.alloc(1024));
      assert.equal(declared.status, 413);
      assert.equal(declared.headers.connection, "close");
      assert.equal(declared.body.error.code, "body_too_large");
      const streamed = await rawPost(backend.port, "/hooks/rpc", { "transfer-encoding": "chunked" }, Buffer.alloc(300 * 1024, "{"));
      assert.equal(streamed.status, 413);
      assert.equal(streamed.body.error.code, "body_too_large");
    });

    it("still answers after all of it", async () => {
      assert.deepEqual(await hook(backend, "rpc", { user: "alice", method: "add", params: { a: 1, b: 1 } }), { result: 2 });
      assert.equal(backend.child.exitCode, null);
      assert.equal(backend.stderr(), "");
    });
  });
});

describe("example backend test-only faults (BACKEND_FAULTS)", () => {
  let backend: Backend;
  before(async () => {
    backend = await startBackend({ faults: "connect=hang,subscribe=500,publish=garbage,rpc=huge" });
  });
  after(() => backend.stop());

  it("hang never answers, 500 answers 500, garbage is cut-off JSON, huge is 10 MB of valid JSON", async () => {
    const hung = await Promise.race([
      post(backend, "/hooks/connect", {}).then(
        () => "answered",
        () => "failed",
      ),
      new Promise((resolve) => setTimeout(() => resolve("waiting"), 300)),
    ]);
    assert.equal(hung, "waiting");
    assert.equal((await post(backend, "/hooks/subscribe", { user: "a", channel: "room:x" })).status, 500);
    const garbage = await fetch(`${backend.url}/hooks/publish`, { method: "POST", body: "{}" });
    assert.equal(garbage.status, 200);
    const garbageText = await garbage.text();
    assert.throws(() => JSON.parse(garbageText) as unknown);
    const huge = await fetch(`${backend.url}/hooks/rpc`, { method: "POST", body: "{}" });
    assert.ok(Number(huge.headers.get("content-length")) > 10 * 1024 * 1024);
    const text = await huge.text();
    assert.ok(text.length > 10 * 1024 * 1024);
    assert.equal((JSON.parse(text) as { result: { user: string } }).result.user, "huge");
  });

  it("reset closes the connection without an answer; shapeless answers JSON of no documented shape; huge-chunked streams 10 MB; slow:<ms> answers late", async () => {
    const b = await startBackend({ faults: "connect=reset,rpc=slow:300,publish=shapeless,subscribe=huge-chunked" });
    try {
      await assert.rejects(post(b, "/hooks/connect", {}));
      assert.deepEqual((await post(b, "/hooks/publish", {})).body, { ok: true });
      const chunked = await fetch(`${b.url}/hooks/subscribe`, { method: "POST", body: "{}" });
      assert.equal(chunked.headers.get("content-length"), null);
      assert.equal(chunked.headers.get("transfer-encoding"), "chunked");
      assert.equal((JSON.parse(await chunked.text()) as { result: { user: string } }).result.user, "huge");
      const t0 = Date.now();
      const res = await post(b, "/hooks/rpc", { user: "a", method: "whoami" });
      assert.deepEqual(res.body, { result: { user: "a" } });
      assert.ok(Date.now() - t0 >= 290);
    } finally {
      await b.stop();
    }
  });

  it("exits 2 on an unknown fault or hook, before it listens", async () => {
    for (const faults of ["rpc=explode", "disconnect=hang", "rpc"]) {
      const child = spawn(process.execPath, [BACKEND_SCRIPT, "--port", "0"], { env: { ...process.env, BACKEND_FAULTS: faults }, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      const [code] = (await once(child, "close")) as [number];
      assert.equal(code, 2, faults);
      assert.equal(stdout, "", faults);
    }
  });
});

/** A POST through node:http with the given framing headers: `body` is written, then the request ends. */
function rawPost(port: number, path: string, headers: Record<string, string>, body: Buffer): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method: "POST", headers });
    req.on("response", (res) => void readAnswer(res).then(resolve));
    req.on("error", reject);
    req.end(body);
  });
}
