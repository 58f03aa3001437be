/**
 * The server API's actions on connections (SPEC §10) over real sockets, on
 * one node: POST /api/disconnect, /api/unsubscribe and /api/revoke and the
 * library's disconnect(), unsubscribe() and revoke(), on every transport;
 * the credential; hostile bodies.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HeartlineError, type Hooks } from "../../src/index.js";
import { nowSec, sign } from "../helpers/auth.js";
import { getJson, publishHttp, waitFor, withServer, WsClient, type TestServer } from "../helpers/server.js";
import { SseStream } from "../helpers/sse.js";

const API_KEY = "server-api-key";
const SECRET = "server-api-secret-that-is-long-enough-for-hs256";
const key = { Authorization: `Bearer ${API_KEY}` };

function post(s: TestServer, path: string, body: unknown, headers: Record<string, string> = key) {
  return getJson(`${s.url}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** A token for `sub` on every `room:` channel, issued `age` seconds ago (no `iat` with age null). */
function token(sub: string, age: number | null = 60): Promise<string> {
  const claims: Record<string, unknown> = { sub, exp: nowSec() + 3600, channels: ["room:*"] };
  if (age !== null) claims.iat = nowSec() - age;
  return sign(claims, SECRET);
}

/** One client of `user` on each transport, subscribed to `channel`; the poll is held. */
async function clients(s: TestServer, user: string, channel: string, tok?: string) {
  const t = tok ?? (await token(user));
  const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=${channel}&token=${t}`);
  await ws.next((f) => f.type === "subscribed");
  const sse = await SseStream.open(`${s.url}/sse?channel=${channel}&token=${t}`);
  await sse.next((e) => e.event === "position");
  const start = await getJson(`${s.url}/poll?channel=${channel}&token=${t}`);
  assert.equal(start.status, 200);
  const before = s.hl.connectionsByTransport.poll;
  const poll = getJson(`${s.url}/poll?channel=${channel}&cursor=${start.body.cursor}&timeout=20&token=${t}`);
  await waitFor(() => s.hl.connectionsByTransport.poll === before + 1, 5000, "the poll to be held");
  return { ws, sse, poll };
}

function assertError(r: { status: number; body: any }, status: number, code: string) {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.error.code, code);
  assert.equal(typeof r.body.error.message, "string");
}

describe("server API: disconnect", () => {
  const s = withServer({ apiKey: API_KEY, jwtSecret: SECRET });

  it("with reconnect:false closes every connection of the user: WS 4403, SSE event disconnect then the end, a held poll 403; others stay", async () => {
    const a = await clients(s, "alice", "room:d1");
    const b = await clients(s, "bob", "room:d1");
    const r = await post(s, "/api/disconnect", { user: "alice", reconnect: false });
    assert.deepEqual(r.body, { disconnected: 3 });
    await a.ws.closed;
    assert.equal(a.ws.closeCode, 4403);
    assert.equal(a.ws.closeReason, "disconnected by the server");
    assert.equal(await a.sse.ended, true);
    const last = a.sse.events.at(-1)!;
    assert.equal(last.event, "disconnect");
    assert.deepEqual(JSON.parse(last.data!), { reconnect: false });
    const polled = await a.poll;
    assertError(polled, 403, "disconnected");
    assert.equal(polled.headers.get("retry-after"), null, "for good: no Retry-After");
    // Bob is untouched and still receives.
    await publishHttp(s, "room:d1", "still here", key);
    await b.ws.next((f) => f.type === "message" && f.data === "still here");
    await b.sse.next((e) => e.event === undefined && e.data?.includes("still here") === true);
    assert.equal((await b.poll).body.messages[0].data, "still here");
    b.ws.close();
    await b.sse.close();
    await waitFor(() => s.hl.connections === 0, 5000, "every connection to be gone");
  });

  it("by default asks the client to reconnect: WS 4002, SSE {reconnect:true}", async () => {
    const a = await clients(s, "carol", "room:d2");
    const r = await post(s, "/api/disconnect", { user: "carol" });
    assert.deepEqual(r.body, { disconnected: 3 });
    await a.ws.closed;
    assert.equal(a.ws.closeCode, 4002);
    await a.sse.ended;
    assert.deepEqual(JSON.parse(a.sse.events.at(-1)!.data!), { reconnect: true });
    const polled = await a.poll;
    assertError(polled, 403, "disconnected");
    assert.equal(polled.headers.get("retry-after"), "1", "a poll may come back: it is told when");
    // Reconnecting is allowed.
    const again = await WsClient.connect(`${s.wsUrl}/ws?channel=room:d2&token=${await token("carol")}`);
    await again.next((f) => f.type === "subscribed");
    again.close();
  });

  it("answers {disconnected:0} for a user with no connection, and for a client id that is not connected", async () => {
    assert.deepEqual((await post(s, "/api/disconnect", { user: "nobody" })).body, { disconnected: 0 });
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=room:d3&token=${await token("dave")}`);
    await ws.next((f) => f.type === "subscribed");
    assert.deepEqual((await post(s, "/api/disconnect", { user: "dave", client: "not-a-client" })).body, { disconnected: 0 });
    assert.equal(s.hl.connections, 1);
    assert.deepEqual(await s.hl.disconnect("dave"), { disconnected: 1 });
    await ws.closed;
  });

  it("with `client`, closes only that client's connections and held polls (its client= id)", async () => {
    const t = await token("olga");
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=room:d5&client=tab-1&token=${t}`);
    await ws.next((f) => f.type === "subscribed");
    const sse = await SseStream.open(`${s.url}/sse?channel=room:d5&client=tab-2&token=${t}`);
    await sse.next((e) => e.event === "position");
    const start = await getJson(`${s.url}/poll?channel=room:d5&client=tab-1&token=${t}`);
    const held = getJson(`${s.url}/poll?channel=room:d5&cursor=${start.body.cursor}&timeout=20&client=tab-1&token=${t}`);
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    assert.deepEqual((await post(s, "/api/disconnect", { user: "olga", client: "tab-1" })).body, { disconnected: 2 });
    await ws.closed;
    assert.equal(ws.closeCode, 4002);
    assertError(await held, 403, "disconnected");
    assert.equal(sse.finished, false, "the other client's stream stays");
    assert.deepEqual(await s.hl.disconnect("olga", { client: "tab-2" }), { disconnected: 1 });
    assert.equal(await sse.ended, true);
  });

  it("refuses without the API key (401) and refuses hostile bodies with 400/415, closing nothing", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=room:d4&token=${await token("erin")}`);
    await ws.next((f) => f.type === "subscribed");
    assertError(await post(s, "/api/disconnect", { user: "erin" }, {}), 401, "unauthorized");
    assertError(await post(s, "/api/disconnect", { user: "erin" }, { Authorization: "Bearer wrong" }), 401, "unauthorized");
    const bad: Array<[unknown, number, string]> = [
      ["{nope", 400, "bad_json"],
      [[], 400, "bad_request"],
      ["null", 400, "bad_request"],
      [{}, 400, "bad_request"],
      [{ user: "" }, 400, "bad_request"],
      [{ user: 7 }, 400, "bad_request"],
      [{ user: "x".repeat(1025) }, 400, "bad_request"],
      [{ user: "erin", client: 5 }, 400, "bad_request"],
      [{ user: "erin", client: "" }, 400, "bad_request"],
      [{ user: "erin", reconnect: "no" }, 400, "bad_request"],
      [{ user: { $ne: null } }, 400, "bad_request"],
    ];
    for (const [body, status, code] of bad) assertError(await post(s, "/api/disconnect", body), status, code);
    const big = await post(s, "/api/disconnect", { user: "erin", pad: "x".repeat(20_000) });
    assertError(big, 413, "message_too_large");
    const plain = await getJson(`${s.url}/api/disconnect`, { method: "POST", headers: { "Content-Type": "text/plain", ...key }, body: '{"user":"erin"}' });
    assertError(plain, 415, "unsupported_media_type");
    assertError(await getJson(`${s.url}/api/disconnect`, { headers: key }), 405, "method_not_allowed");
    assert.equal(s.hl.connections, 1, "nothing was closed");
    await assert.rejects(s.hl.disconnect("", {}), (e: unknown) => e instanceof HeartlineError && e.code === "bad_request");
    await assert.rejects(s.hl.disconnect("erin", { reconnect: 1 as unknown as boolean }), (e: unknown) => e instanceof HeartlineError && e.code === "bad_request");
    ws.close();
  });
});

describe("server API: disconnect one client (client ids from the connect hook)", () => {
  const seen: Array<{ client: string | undefined; user: string }> = [];
  const hooks: Hooks = {
    connect: (ctx) => {
      const user = ctx.query.user ?? "";
      seen.push({ client: ctx.client, user });
      return { user };
    },
  };
  const s = withServer({ apiKey: API_KEY }, { hooks });

  it("closes only the connection of that client; the user's other connection stays", async () => {
    const one = await WsClient.connect(`${s.wsUrl}/ws?channel=public:c1&user=frank`);
    await one.next((f) => f.type === "subscribed");
    const two = await SseStream.open(`${s.url}/sse?channel=public:c1&user=frank`);
    await two.next((e) => e.event === "position");
    const wsClient = seen.find((x) => x.user === "frank")!.client!;
    assert.equal(typeof wsClient, "string");
    const r = await post(s, "/api/disconnect", { user: "frank", client: wsClient, reconnect: false });
    assert.deepEqual(r.body, { disconnected: 1 });
    await one.closed;
    assert.equal(one.closeCode, 4403);
    assert.equal(two.finished, false);
    assert.equal(s.hl.connections, 1);
    assert.deepEqual(await s.hl.disconnect("frank", { reconnect: false }), { disconnected: 1 });
    assert.equal(await two.ended, true);
  });
});

describe("server API: unsubscribe", () => {
  const s = withServer({ apiKey: API_KEY, jwtSecret: SECRET });

  it("removes the user's subscription on WS and SSE: the client is told, gets no more of it, keeps its other channels", async () => {
    const t = await token("gina");
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=room:u1&channel=room:u2&token=${t}`);
    await ws.next((f) => f.type === "subscribed" && f.channel === "room:u2");
    const sse = await SseStream.open(`${s.url}/sse?channel=room:u1&channel=room:u2&token=${t}`);
    await sse.next((e) => e.event === "position");
    const other = await WsClient.connect(`${s.wsUrl}/ws?channel=room:u1&token=${await token("hank")}`);
    await other.next((f) => f.type === "subscribed");

    const r = await post(s, "/api/unsubscribe", { user: "gina", channel: "room:u1" });
    assert.deepEqual(r.body, { unsubscribed: 2 });
    await ws.next((f) => f.type === "unsubscribed" && f.channel === "room:u1");
    const ev = await sse.next((e) => e.event === "unsubscribed");
    assert.deepEqual(JSON.parse(ev.data!), { channel: "room:u1" });
    assert.equal(s.hl.hub.subscriberCount("room:u1"), 1, "only hank's subscription is left");

    await publishHttp(s, "room:u1", "gone", key);
    await publishHttp(s, "room:u2", "kept", key);
    await other.next((f) => f.type === "message" && f.data === "gone");
    await ws.next((f) => f.type === "message" && f.data === "kept");
    await sse.next((e) => e.data?.includes('"kept"') === true);
    assert.equal(ws.messages("room:u1").length, 0);
    assert.ok(!sse.events.some((e) => e.data?.includes('"gone"')));
    // A second time there is nothing left to remove.
    assert.deepEqual(await s.hl.unsubscribe("gina", "room:u1"), { unsubscribed: 0 });
    ws.close();
    other.close();
    await sse.close();
  });

  it("refuses without the key and refuses hostile bodies", async () => {
    assertError(await post(s, "/api/unsubscribe", { user: "gina", channel: "room:u1" }, {}), 401, "unauthorized");
    const bad: Array<[unknown, number, string]> = [
      ["{", 400, "bad_json"],
      [{ user: "gina" }, 400, "bad_channel"],
      [{ channel: "room:u1" }, 400, "bad_request"],
      [{ user: "gina", channel: "bad channel" }, 400, "bad_channel"],
      [{ user: "gina", channel: "x".repeat(256) }, 400, "bad_channel"],
      [{ user: "gina", channel: ["room:u1"] }, 400, "bad_channel"],
    ];
    for (const [body, status, code] of bad) assertError(await post(s, "/api/unsubscribe", body), status, code);
    assert.deepEqual((await post(s, "/api/unsubscribe", { user: "nobody", channel: "room:u1" })).body, { unsubscribed: 0 });
    await assert.rejects(s.hl.unsubscribe("gina", "no spaces"), (e: unknown) => e instanceof HeartlineError && e.code === "bad_channel");
  });
});

describe("server API: revoke", () => {
  const s = withServer({ apiKey: API_KEY, jwtSecret: SECRET });

  it("closes the user's connections holding older tokens (WS 4001, SSE error token_revoked, held poll 401) and refuses those tokens from now on", async () => {
    const old = await token("ivan", 120);
    const a = await clients(s, "ivan", "room:r1", old);
    const b = await clients(s, "judy", "room:r1");
    const r = await post(s, "/api/revoke", { user: "ivan", before: nowSec() - 60 });
    assert.deepEqual(r.body, { closed: 3 });
    await a.ws.closed;
    assert.equal(a.ws.closeCode, 4001);
    assert.equal(a.ws.closeReason, "token revoked");
    assert.equal(await a.sse.ended, true);
    const last = a.sse.events.at(-1)!;
    assert.equal(last.event, "error");
    assert.equal(JSON.parse(last.data!).code, "token_revoked");
    assertError(await a.poll, 401, "token_revoked");

    // The old token is refused everywhere; a token issued after the revocation is fine.
    assertError(await getJson(`${s.url}/poll?channel=room:r1&token=${old}`), 401, "token_revoked");
    const refused = await SseStream.attempt(`${s.url}/sse?channel=room:r1&token=${old}`);
    assert.equal((refused as { status: number }).status, 401);
    const fresh = await WsClient.connect(`${s.wsUrl}/ws?channel=room:r1&token=${await token("ivan", 0)}`);
    await fresh.next((f) => f.type === "subscribed");
    // A token without iat cannot show it is newer: refused.
    assertError(await getJson(`${s.url}/poll?channel=room:r1&token=${await token("ivan", null)}`), 401, "token_revoked");
    // A refresh to a revoked token is refused, the connection keeps its own.
    fresh.send({ type: "refresh", token: old, id: 1 });
    const err = await fresh.next((f) => f.type === "error" && f.id === 1);
    assert.equal(err.code, "token_revoked");

    // Judy is untouched.
    await publishHttp(s, "room:r1", "judy's", key);
    await b.ws.next((f) => f.type === "message" && f.data === "judy's");
    assert.equal((await b.poll).status, 200);
    b.ws.close();
    fresh.close();
    await b.sse.close();
  });

  it("through the library too, and a later revocation moves the line forward only", async () => {
    const t = await token("kim", 30);
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=room:r2&token=${t}`);
    await ws.next((f) => f.type === "subscribed");
    assert.deepEqual(await s.hl.revoke("kim", nowSec() - 100), { closed: 0 }, "the token is newer than the line");
    assert.deepEqual(await s.hl.revoke("kim", nowSec()), { closed: 1 });
    await ws.closed;
    assert.equal(ws.closeCode, 4001);
    // An earlier line does not bring the old tokens back.
    await s.hl.revoke("kim", nowSec() - 1000);
    assertError(await getJson(`${s.url}/poll?channel=room:r2&token=${t}`), 401, "token_revoked");
  });

  it("refuses `before` that is not a number, negative or in the future, and other hostile bodies", async () => {
    const bad: Array<[unknown, number, string]> = [
      [{ user: "liz", before: "123" }, 400, "bad_request"],
      [{ user: "liz", before: null }, 400, "bad_request"],
      [{ user: "liz" }, 400, "bad_request"],
      [{ user: "liz", before: -1 }, 400, "bad_request"],
      [{ user: "liz", before: nowSec() + 3600 }, 400, "bad_request"],
      [{ before: nowSec() }, 400, "bad_request"],
      // Infinity once parsed.
      ['{"user":"liz","before":1e999}', 400, "bad_request"],
      ["[1]", 400, "bad_request"],
    ];
    for (const [body, status, code] of bad) assertError(await post(s, "/api/revoke", body), status, code);
    assertError(await post(s, "/api/revoke", { user: "liz", before: nowSec() }, {}), 401, "unauthorized");
    await assert.rejects(s.hl.revoke("liz", NaN), (e: unknown) => e instanceof HeartlineError && e.code === "bad_request");
    await assert.rejects(s.hl.revoke("liz", Date.now()), (e: unknown) => e instanceof HeartlineError && e.code === "bad_request", "milliseconds are in the future");
    // Nothing was revoked by the refusals.
    assert.equal((await getJson(`${s.url}/poll?channel=room:r3&token=${await token("liz", 10)}`)).status, 200);
  });
});

describe("server API: actions arriving from other nodes as signals", () => {
  const s = withServer({ apiKey: API_KEY, jwtSecret: SECRET });
  const signal = (payload: unknown) => s.hl.hub.signal(typeof payload === "string" ? payload : JSON.stringify(payload));

  it("applies an action another node sent, and drops malformed signals without harm", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=room:s1&token=${await token("mia")}`);
    await ws.next((f) => f.type === "subscribed");
    const garbage = [
      "not json",
      "[1,2]",
      "null",
      { hl: "act", id: "", from: "node-b", a: { t: "disconnect", user: 5, reconnect: false } },
      { hl: "act", id: "", from: "node-b", a: { t: "disconnect", user: "mia" } },
      { hl: "act", id: "", from: "node-b", a: { t: "unsubscribe", user: "mia", channel: "bad channel" } },
      { hl: "act", id: "", from: "node-b", a: { t: "revoke", user: "mia", before: "soon" } },
      { hl: "act", id: "", from: "node-b", a: { t: "explode" } },
      { hl: "act", id: 7, from: "node-b", a: { t: "count", channel: "room:s1" } },
      { hl: "re", id: "unknown", to: "someone-else", n: 5 },
      { hl: "re", id: "unknown", n: -1 },
    ];
    for (const g of garbage) await signal(g);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(s.hl.connections, 1, "nothing was closed by a malformed signal");
    assert.equal((await s.hl.channel("room:s1")).subscribers, 1, "and counts are not polluted by stray answers");

    await signal({ hl: "act", id: "", from: "node-b", a: { t: "unsubscribe", user: "mia", channel: "room:s1" } });
    await ws.next((f) => f.type === "unsubscribed" && f.channel === "room:s1");
    await signal({ hl: "act", id: "req-1", from: "node-b", a: { t: "disconnect", user: "mia", reconnect: false } });
    await ws.closed;
    assert.equal(ws.closeCode, 4403);
  });
});
