/**
 * The server API's channel endpoints (SPEC §10) over real sockets, on one
 * node: GET /api/channels[?prefix=], GET /api/channels/<name>,
 * GET /api/history/<channel> and DELETE /api/history/<channel> (a reset on
 * every transport), with the library's channels(), channel(), history() and
 * removeHistory(); the credential; hostile queries.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HeartlineError } from "../../src/index.js";
import { getJson, publishHttp, waitFor, withServer, WsClient, type TestServer } from "../helpers/server.js";
import { SseStream } from "../helpers/sse.js";

const API_KEY = "channels-key";
const key = { Authorization: `Bearer ${API_KEY}` };

const get = (s: TestServer, path: string, headers: Record<string, string> = key) => getJson(`${s.url}${path}`, { headers });

function assertError(r: { status: number; body: any }, status: number, code: string) {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.error.code, code);
}

async function publishMany(s: TestServer, channel: string, n: number) {
  for (let i = 1; i <= n; i++) assert.equal((await publishHttp(s, channel, i, key)).status, 200);
}

describe("server API: channels", () => {
  const s = withServer({ apiKey: API_KEY, maxChannelsPerConnection: 1100 });

  it("lists channels with WS and SSE subscribers, by name, with their counts; prefix filters; closed subscribers leave the list", async () => {
    const w1 = await WsClient.connect(`${s.wsUrl}/ws?channel=list:a&channel=list:b`);
    const w2 = await WsClient.connect(`${s.wsUrl}/ws?channel=list:a`);
    const sse = await SseStream.open(`${s.url}/sse?channel=list:c&channel=other:x`);
    await sse.next((e) => e.event === "position");
    await w1.next((f) => f.type === "subscribed" && f.channel === "list:b");
    await w2.next((f) => f.type === "subscribed");

    const all = await get(s, "/api/channels");
    assert.equal(all.status, 200);
    assert.deepEqual(all.body, {
      channels: [
        { channel: "list:a", subscribers: 2 },
        { channel: "list:b", subscribers: 1 },
        { channel: "list:c", subscribers: 1 },
        { channel: "other:x", subscribers: 1 },
      ],
    });
    assert.deepEqual((await get(s, "/api/channels?prefix=list:")).body.channels.map((c: any) => c.channel), ["list:a", "list:b", "list:c"]);
    assert.deepEqual((await get(s, "/api/channels?prefix=nothing")).body, { channels: [] });
    assert.deepEqual(await s.hl.channels("other"), { channels: [{ channel: "other:x", subscribers: 1 }] });

    const info = await get(s, "/api/channels/list%3Aa");
    assert.equal(info.status, 200);
    assert.equal(info.body.subscribers, 2);
    assert.equal(info.body.offset, 0);
    assert.equal((await s.hl.channel("list:c")).subscribers, 1);

    w1.close();
    w2.close();
    sse.close();
    await waitFor(() => s.hl.connections === 0, 5000, "the subscribers to leave");
    assert.deepEqual((await get(s, "/api/channels")).body, { channels: [] });
  });

  it("lists at most 1,000 channels (the first by name) and says there are more", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws`);
    for (let i = 0; i < 1001; i++) ws.send({ type: "subscribe", channel: `many:${String(i).padStart(4, "0")}` });
    await waitFor(() => ws.frames.filter((f) => f.type === "subscribed").length === 1001, 10_000, "1001 subscriptions");
    const r = await get(s, "/api/channels?prefix=many:");
    assert.equal(r.body.channels.length, 1000);
    assert.equal(r.body.more, true);
    assert.equal(r.body.channels[0].channel, "many:0000");
    assert.equal(r.body.channels[999].channel, "many:0999");
    assert.equal((await get(s, "/api/channels?prefix=many:1")).body.more, undefined);
    ws.close();
    await waitFor(() => s.hl.connections === 0, 5000, "the subscriber to leave");
  });

  it("needs the API key and refuses hostile prefixes and names", async () => {
    assertError(await get(s, "/api/channels", {}), 401, "unauthorized");
    assertError(await get(s, "/api/channels/x:1", { Authorization: "Bearer wrong" }), 401, "unauthorized");
    for (const q of ["prefix=a%20b", `prefix=${"a".repeat(256)}`, "prefix=%E2%9C%93", "prefix=a*"]) {
      assertError(await get(s, `/api/channels?${q}`), 400, "bad_request");
    }
    assertError(await get(s, "/api/channels/bad%20name"), 400, "bad_channel");
    assertError(await get(s, "/api/channels/%E0%A4%A"), 400, "bad_channel");
    const post = await getJson(`${s.url}/api/channels`, { method: "POST", headers: key });
    assertError(post, 405, "method_not_allowed");
    await assert.rejects(s.hl.channels("a b"), (e: unknown) => e instanceof HeartlineError && e.code === "bad_request");
    await assert.rejects(s.hl.channels(7 as unknown as string), (e: unknown) => e instanceof HeartlineError && e.code === "bad_request");
  });
});

describe("server API: history", () => {
  const s = withServer({ apiKey: API_KEY, historySize: 10 });

  it("reads the latest messages, or those after `since`, at most `limit`, oldest first", async () => {
    await publishMany(s, "h:1", 5);
    const all = await get(s, "/api/history/h:1");
    assert.equal(all.status, 200);
    assert.equal(all.body.channel, "h:1");
    assert.equal(all.body.offset, 5);
    assert.equal(all.body.recovered, true);
    assert.deepEqual(all.body.messages, [1, 2, 3, 4, 5].map((i) => ({ channel: "h:1", offset: i, data: i })));
    assert.deepEqual((await get(s, "/api/history/h:1?since=2")).body.messages.map((m: any) => m.offset), [3, 4, 5]);
    assert.deepEqual((await get(s, "/api/history/h:1?limit=2")).body.messages.map((m: any) => m.offset), [4, 5]);
    assert.deepEqual((await get(s, "/api/history/h:1?since=2&limit=1")).body.messages.map((m: any) => m.offset), [3]);
    assert.deepEqual((await get(s, "/api/history/h:1?since=5")).body.messages, []);
    const past = (await get(s, "/api/history/h:1?since=99")).body;
    assert.deepEqual([past.messages, past.recovered, past.offset], [[], false, 5]);
    // A channel never published to.
    const empty = (await get(s, "/api/history/h:none")).body;
    assert.deepEqual([empty.offset, empty.messages, empty.recovered], [0, [], true]);
    const lib = await s.hl.history("h:1", { since: 3 });
    assert.deepEqual(lib.messages, [4, 5].map((i) => ({ channel: "h:1", offset: i, data: i })));
    assert.equal(lib.epoch, all.body.epoch);
  });

  it("when history no longer reaches back, answers from the oldest message it holds (recovered:false after `since`)", async () => {
    await publishMany(s, "h:2", 25); // historySize 10: 16..25 are kept
    const after = (await get(s, "/api/history/h:2?since=3")).body;
    assert.equal(after.recovered, false);
    assert.deepEqual(after.messages.map((m: any) => m.offset), [16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    const latest = (await get(s, "/api/history/h:2?limit=20")).body;
    assert.equal(latest.recovered, true);
    assert.deepEqual(latest.messages.map((m: any) => m.offset), [16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    assert.deepEqual((await get(s, "/api/history/h:2?limit=3")).body.messages.map((m: any) => m.offset), [23, 24, 25]);
  });

  it("needs the API key and refuses hostile queries and names", async () => {
    assertError(await get(s, "/api/history/h:1", {}), 401, "unauthorized");
    assertError(await getJson(`${s.url}/api/history/h:1`, { method: "DELETE" }), 401, "unauthorized");
    for (const q of ["since=-1", "since=abc", "since=1.5", "since=", "since=99999999999999999", "limit=0", "limit=1001", "limit=x", "limit=2e2", "limit=-5"]) {
      assertError(await get(s, `/api/history/h:1?${q}`), 400, "bad_request");
    }
    assertError(await get(s, "/api/history/bad%20name"), 400, "bad_channel");
    assertError(await get(s, "/api/history/"), 400, "bad_channel");
    const post = await getJson(`${s.url}/api/history/h:1`, { method: "POST", headers: key });
    assertError(post, 405, "method_not_allowed");
    assert.equal(post.headers.get("allow"), "GET, DELETE");
    await assert.rejects(s.hl.history("h:1", { limit: 0 }), (e: unknown) => e instanceof HeartlineError && e.code === "bad_request");
    await assert.rejects(s.hl.history("h:1", { since: -1 }), (e: unknown) => e instanceof HeartlineError && e.code === "bad_request");
    await assert.rejects(s.hl.history("h:1", { since: "2" as unknown as number }), (e: unknown) => e instanceof HeartlineError && e.code === "bad_request");
    await assert.rejects(s.hl.removeHistory("x y"), (e: unknown) => e instanceof HeartlineError && e.code === "bad_channel");
  });

  it("DELETE removes the history: a new epoch, and WS, SSE and waiting polls get a reset at once", async () => {
    await publishMany(s, "h:3", 3);
    const before = (await get(s, "/api/history/h:3")).body;
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=h:3`);
    await ws.next((f) => f.type === "subscribed");
    const sse = await SseStream.open(`${s.url}/sse?channel=h:3`);
    await sse.next((e) => e.event === "position");
    const start = await getJson(`${s.url}/poll?channel=h:3`);
    const held = getJson(`${s.url}/poll?channel=h:3&cursor=${start.body.cursor}&timeout=20`);
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");

    const r = await getJson(`${s.url}/api/history/h:3`, { method: "DELETE", headers: key });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.channel, "h:3");
    assert.equal(r.body.offset, 0);
    assert.notEqual(r.body.epoch, before.epoch);

    const reset = await ws.next((f) => f.type === "reset");
    assert.deepEqual(reset, { type: "reset", channel: "h:3", epoch: r.body.epoch, offset: 0 });
    const sseReset = await sse.next((e) => e.event === "reset");
    assert.deepEqual(JSON.parse(sseReset.data!), { channel: "h:3", epoch: r.body.epoch, offset: 0 });
    const polled = await held;
    assert.equal(polled.status, 200);
    assert.deepEqual(polled.body.resets, [{ channel: "h:3", epoch: r.body.epoch, offset: 0 }]);

    const now = (await get(s, "/api/history/h:3")).body;
    assert.deepEqual([now.epoch, now.offset, now.messages], [r.body.epoch, 0, []]);
    // The stream goes on in the new epoch, without a second reset.
    await publishHttp(s, "h:3", "new", key);
    const m = await ws.next((f) => f.type === "message");
    assert.deepEqual([m.offset, m.data], [1, "new"]);
    await sse.next((e) => e.data?.includes('"new"') === true);
    assert.equal(ws.frames.filter((f) => f.type === "reset").length, 1);
    assert.equal(sse.events.filter((e) => e.event === "reset").length, 1);

    const lib = await s.hl.removeHistory("h:3");
    await ws.next((f) => f.type === "reset" && f.epoch === lib.epoch);
    assert.deepEqual((await s.hl.history("h:3")).messages, []);
    ws.close();
    sse.close();
  });
});
