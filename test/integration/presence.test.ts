/**
 * Presence on one node (SPEC §9) over real sockets: snapshots and join/leave
 * on WebSocket, SSE and long polls; the grace that keeps a reconnecting
 * client from leaving; an unsubscribe that leaves at once; members with the
 * user and info the application gave; GET /api/presence; hostile input.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Hooks } from "../../src/index.js";
import { nowSec, sign } from "../helpers/auth.js";
import { SseStream } from "../helpers/sse.js";
import { getJson, withServer, WsClient, type Frame, type TestServer } from "../helpers/server.js";

const API_KEY = "presence-key";
const SECRET = "presence-test-secret-0123456789abcdef";
const auth = { Authorization: `Bearer ${API_KEY}` };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const clientsOf = (f: Frame | { members: Array<{ client: string }> }) => (f.members as Array<{ client: string }>).map((m) => m.client).sort();

async function ws(s: TestServer, client: string, channel = "room:1"): Promise<WsClient> {
  return WsClient.connect(`${s.wsUrl}/ws?channel=${channel}&client=${client}`);
}

async function presenceOf(s: TestServer, channel: string) {
  const r = await getJson(`${s.url}/api/presence/${channel}`, { headers: auth });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body as { channel: string; members: Array<{ client: string; user: string | null; info: unknown }>; users: number; clients: number };
}

function poll(s: TestServer, query: string) {
  return getJson(`${s.url}/poll?${query}`);
}

describe("presence", () => {
  // Users and info come from the connect hook: `?user=` names the user, `?info=` its info.
  const hooks: Hooks = {
    connect: (ctx) => ({ user: ctx.query.user ?? "", info: ctx.query.info === undefined ? undefined : { name: ctx.query.info } }),
  };
  const s = withServer({ apiKey: API_KEY, presence: "room:*,big:*", presenceGrace: 0.6 }, { hooks });

  it("WebSocket: a snapshot after subscribed, then joins and leaves of others", async () => {
    const a = await ws(s, "wa");
    const snapA = await a.next((f) => f.type === "presence");
    assert.equal(snapA.channel, "room:1");
    assert.deepEqual(snapA.members, [{ client: "wa", user: null, info: null }]);
    const subscribedAt = a.frames.findIndex((f) => f.type === "subscribed");
    assert.ok(subscribedAt >= 0 && subscribedAt < a.frames.indexOf(snapA), "the snapshot follows subscribed");

    const b = await ws(s, "wb");
    const snapB = await b.next((f) => f.type === "presence");
    assert.deepEqual(clientsOf(snapB), ["wa", "wb"]);
    const join = await a.next((f) => f.type === "join");
    assert.deepEqual(join, { type: "join", channel: "room:1", client: "wb", user: null, info: null });

    b.send({ type: "unsubscribe", channel: "room:1" });
    const leave = await a.next((f) => f.type === "leave");
    assert.deepEqual(leave, { type: "leave", channel: "room:1", client: "wb", user: null, info: null });
    assert.deepEqual(clientsOf(await presenceOf(s, "room:1")), ["wa"]);
    a.close();
    b.close();
  });

  it("members carry the user and info the application gave; GET /api/presence counts users and clients", async () => {
    const a = await WsClient.connect(`${s.wsUrl}/ws?channel=room:u&client=c1&user=ann&info=Ann`);
    const b = await WsClient.connect(`${s.wsUrl}/ws?channel=room:u&client=c2&user=ann`);
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=room:u&client=c3&user=bob`);
    await c.next((f) => f.type === "presence");
    const p = await presenceOf(s, "room:u");
    assert.equal(p.channel, "room:u");
    assert.equal(p.clients, 3);
    assert.equal(p.users, 2);
    const c1 = p.members.find((m) => m.client === "c1");
    assert.deepEqual(c1, { client: "c1", user: "ann", info: { name: "Ann" } });
    // The library answers the same.
    const lib = await s.hl.presence("room:u");
    assert.deepEqual({ ...lib, members: lib.members.map((m) => m.client).sort() }, { channel: "room:u", members: ["c1", "c2", "c3"], users: 2, clients: 3 });
    await assert.rejects(s.hl.presence("plain:x"), (e: any) => e.code === "not_found");
    await assert.rejects(s.hl.presence("bad name"), (e: any) => e.code === "bad_channel");
    for (const x of [a, b, c]) x.close();
  });

  it("SSE: event: presence, then event: join / event: leave with the same objects", async () => {
    const es = await SseStream.open(`${s.url}/sse?channel=room:s&client=s1`);
    const snap = await es.next((e) => e.event === "presence");
    assert.deepEqual(JSON.parse(snap.data!), { type: "presence", channel: "room:s", members: [{ client: "s1", user: null, info: null }] });
    assert.equal(snap.id, undefined, "a presence event does not move the position");
    const other = await ws(s, "s2", "room:s");
    const join = await es.next((e) => e.event === "join");
    assert.deepEqual(JSON.parse(join.data!), { type: "join", channel: "room:s", client: "s2", user: null, info: null });
    other.send({ type: "unsubscribe", channel: "room:s" });
    const leave = await es.next((e) => e.event === "leave");
    assert.equal(JSON.parse(leave.data!).client, "s2");
    es.close();
    other.close();
  });

  it("long polls: a snapshot in the first answer, joins in a held one, an empty presence array otherwise", async () => {
    const first = await poll(s, "channel=room:p&client=p1");
    assert.equal(first.status, 200);
    assert.deepEqual(first.body.presence, [{ type: "presence", channel: "room:p", members: [{ client: "p1", user: null, info: null }] }]);
    // Nothing new: a short hold answers with an empty presence array.
    const quiet = await poll(s, `channel=room:p&client=p1&cursor=${first.body.cursor}&timeout=0.3`);
    assert.deepEqual(quiet.body.presence, []);
    // A join wakes a held poll.
    const held = poll(s, `channel=room:p&client=p1&cursor=${first.body.cursor}&timeout=10`);
    await sleep(100);
    const other = await ws(s, "p2", "room:p");
    const woken = await held;
    assert.deepEqual(woken.body.presence, [{ type: "join", channel: "room:p", client: "p2", user: null, info: null }]);
    assert.deepEqual(woken.body.messages, []);
    // A poll without client= is no member and hears nothing of presence.
    const anon = await poll(s, "channel=room:p");
    assert.deepEqual(anon.body.presence, []);
    assert.deepEqual(clientsOf(await presenceOf(s, "room:p")), ["p1", "p2"]);
    other.close();
  });

  it("a poller that stops polling leaves after the grace; one that polls on stays", async () => {
    const watcher = await ws(s, "pw", "room:q");
    await watcher.next((f) => f.type === "presence");
    const first = await poll(s, "channel=room:q&client=pq");
    await watcher.next((f) => f.type === "join" && f.client === "pq");
    for (let i = 0; i < 3; i++) {
      await sleep(300);
      await poll(s, `channel=room:q&client=pq&cursor=${first.body.cursor}&timeout=0`);
    }
    assert.equal(watcher.frames.filter((f) => f.type === "leave").length, 0, "polling on within the grace is no leave");
    const leave = await watcher.next((f) => f.type === "leave", 5000);
    assert.equal(leave.client, "pq");
    watcher.close();
  });

  it("a reconnect within the grace with the same client id causes no leave and no join", async () => {
    const watcher = await ws(s, "g0", "room:g");
    await watcher.next((f) => f.type === "presence");
    const a = await ws(s, "g1", "room:g");
    await watcher.next((f) => f.type === "join" && f.client === "g1");
    a.ws.terminate();
    await sleep(200);
    const again = await ws(s, "g1", "room:g");
    const snap = await again.next((f) => f.type === "presence");
    assert.deepEqual(clientsOf(snap), ["g0", "g1"]);
    await sleep(1000);
    assert.deepEqual(
      watcher.frames.filter((f) => f.type === "join" || f.type === "leave").map((f) => `${f.type}:${f.client}`),
      ["join:g1"],
      "no leave/join pair for the reconnect",
    );
    // Gone for good: the leave comes after the grace, not before.
    again.close();
    await sleep(300);
    assert.equal(watcher.frames.filter((f) => f.type === "leave").length, 0, "still within the grace");
    const leave = await watcher.next((f) => f.type === "leave", 3000);
    assert.equal(leave.client, "g1");
    watcher.close();
  });

  it("the same client id under another user is another member", async () => {
    const a = await WsClient.connect(`${s.wsUrl}/ws?channel=room:b&client=same&user=ann`);
    await a.next((f) => f.type === "presence");
    const b = await WsClient.connect(`${s.wsUrl}/ws?channel=room:b&client=same&user=eve`);
    const join = await a.next((f) => f.type === "join");
    assert.equal(join.user, "eve");
    assert.equal((await presenceOf(s, "room:b")).members.length, 2);
    a.close();
    b.close();
  });

  it("channels outside --presence send no presence frames and have no presence endpoint", async () => {
    const a = await ws(s, "n1", "plain:1");
    await a.next((f) => f.type === "subscribed");
    const b = await ws(s, "n2", "plain:1");
    await b.next((f) => f.type === "subscribed");
    await sleep(200);
    assert.equal(a.frames.filter((f) => ["presence", "join", "leave"].includes(f.type)).length, 0);
    const r = await getJson(`${s.url}/api/presence/plain:1`, { headers: auth });
    assert.equal(r.status, 404);
    const p = await poll(s, "channel=plain:1&client=n3");
    assert.deepEqual(p.body.presence, []);
    a.close();
    b.close();
  });

  it("hostile input: bad client ids, bad channel names, no credentials; info over the cap is listed as null", async () => {
    for (const bad of ["", "a b", "x".repeat(65), "%00", "é"]) {
      const r = await poll(s, `channel=room:h&client=${encodeURIComponent(bad)}`);
      assert.equal(r.status, 400, `client=${JSON.stringify(bad)}`);
      assert.equal(r.body.error.code, "bad_request");
    }
    assert.equal((await getJson(`${s.url}/api/presence/bad%20name`, { headers: auth })).status, 400);
    assert.equal((await getJson(`${s.url}/api/presence/%E0%A4%A`, { headers: auth })).status, 400);
    const big = await WsClient.connect(`${s.wsUrl}/ws?channel=room:h&client=h1&info=${"x".repeat(2000)}`);
    const snap = await big.next((f) => f.type === "presence");
    assert.deepEqual(snap.members, [{ client: "h1", user: null, info: null }]);
    big.close();
  });

  it("a client that reconnects in a loop is bounded: one member, nothing left after", async () => {
    await sleep(1000); // earlier tests' members are past their grace
    const heldBefore = s.hl.hub.presence.held;
    const watcher = await ws(s, "f0", "room:f");
    await watcher.next((f) => f.type === "presence");
    for (let i = 0; i < 30; i++) {
      const c = await ws(s, "flood", "room:f");
      await c.next((f) => f.type === "presence");
      c.ws.terminate();
    }
    assert.equal(s.hl.hub.presence.held - heldBefore, 2);
    assert.equal(watcher.frames.filter((f) => f.type === "join").length, 1);
    const leave = await watcher.next((f) => f.type === "leave", 3000);
    assert.equal(leave.client, "flood");
    watcher.close();
    await sleep(900);
    assert.equal(s.hl.hub.presence.held, heldBefore, "every hold let go");
  });
});

describe("presence with tokens", () => {
  const s = withServer({ jwtSecret: SECRET, apiKey: API_KEY, presence: "room:*" });
  const token = (channels: string[]) => sign({ sub: "tina", exp: nowSec() + 3600, channels }, SECRET);

  it("GET /api/presence: 401 without credentials, 403 with a token that may not subscribe, 200 with one that may", async () => {
    const a = await WsClient.connect(`${s.wsUrl}/ws?channel=room:t&client=t1&token=${await token(["room:*"])}`);
    const snap = await a.next((f) => f.type === "presence");
    assert.deepEqual(snap.members, [{ client: "t1", user: "tina", info: null }]);
    assert.equal((await getJson(`${s.url}/api/presence/room:t`)).status, 401);
    assert.equal((await getJson(`${s.url}/api/presence/room:t`, { headers: { Authorization: `Bearer ${await token(["other:*"])}` } })).status, 403);
    const ok = await getJson(`${s.url}/api/presence/room:t`, { headers: { Authorization: `Bearer ${await token(["room:t"])}` } });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { channel: "room:t", members: [{ client: "t1", user: "tina", info: null }], users: 1, clients: 1 });
    a.close();
  });
});
