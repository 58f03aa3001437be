/**
 * The server API on two nodes meeting through a private redis-server (SPEC
 * §10: "acts on every node"): a disconnect, unsubscribe, revoke or history
 * removal asked of node A reaches connections on node B, and the channel
 * counts asked of A include B's subscribers.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { nowSec, sign } from "../helpers/auth.js";
import { RedisServer, redisSkip } from "../helpers/redis.js";
import { getJson, publishHttp, startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";
import { SseStream } from "../helpers/sse.js";

const API_KEY = "cluster-api-key";
const SECRET = "cluster-api-secret-that-is-long-enough-for-hs256";
const key = { Authorization: `Bearer ${API_KEY}` };

function post(s: TestServer, path: string, body: unknown) {
  return getJson(`${s.url}${path}`, { method: "POST", headers: { "Content-Type": "application/json", ...key }, body: JSON.stringify(body) });
}

const token = (sub: string, age = 60) => sign({ sub, iat: nowSec() - age, exp: nowSec() + 3600, channels: ["room:*"] }, SECRET);

describe("server API across two nodes", { skip: redisSkip }, () => {
  let redis: RedisServer;
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    redis = await RedisServer.start();
    [a, b] = await Promise.all([0, 1].map(() => startServer({ redis: redis.url, apiKey: API_KEY, jwtSecret: SECRET })));
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await redis?.stop();
  });

  it("a broadcast to 1,000 channels asked of node A reaches subscribers on node B, each channel its own offset", async () => {
    const channels = Array.from({ length: 1000 }, (_, i) => `room:bc${i}`);
    const t = await token("bea");
    const subs = await Promise.all([0, 500, 999].map(async (i) => {
      const c = await WsClient.connect(`${b.wsUrl}/ws?channel=room:bc${i}&token=${t}`);
      await c.next((f) => f.type === "subscribed");
      return c;
    }));
    const r = await post(a, "/api/broadcast", { channels, data: { all: true }, idempotencyKey: "bc-1" });
    assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 200));
    assert.equal(r.body.results.length, 1000);
    assert.ok(r.body.results.every((x: any) => x.offset === 1));
    for (const c of subs) assert.deepEqual((await c.next((f) => f.type === "message")).data, { all: true });
    // The same key through node B: answered the first results, stored nothing.
    const again = await post(b, "/api/broadcast", { channels, data: { all: true }, idempotencyKey: "bc-1" });
    assert.deepEqual(again.body.results.map((x: any) => x.offset), r.body.results.map((x: any) => x.offset));
    await new Promise((res) => setTimeout(res, 200));
    for (const c of subs) {
      assert.equal(c.messages().length, 1);
      c.close();
    }
  });

  it("a disconnect asked of node A closes the user's WS, SSE and held poll on node B, and counts them", async () => {
    const t = await token("ann");
    const ws = await WsClient.connect(`${b.wsUrl}/ws?channel=room:x1&token=${t}`);
    await ws.next((f) => f.type === "subscribed");
    const sse = await SseStream.open(`${b.url}/sse?channel=room:x1&token=${t}`);
    await sse.next((e) => e.event === "position");
    const start = await getJson(`${b.url}/poll?channel=room:x1&token=${t}`);
    const held = getJson(`${b.url}/poll?channel=room:x1&cursor=${start.body.cursor}&timeout=20&token=${t}`);
    await waitFor(() => b.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held on B");

    const r = await post(a, "/api/disconnect", { user: "ann", reconnect: false });
    assert.deepEqual(r.body, { disconnected: 3 });
    await ws.closed;
    assert.equal(ws.closeCode, 4403);
    assert.equal(await sse.ended, true);
    assert.equal(sse.events.at(-1)!.event, "disconnect");
    const p = await held;
    assert.equal(p.status, 403);
    assert.equal(p.body.error.code, "disconnected");
    await waitFor(() => b.hl.connections === 0, 5000, "B to hold nothing");
  });

  it("an unsubscribe asked of node A removes the subscription on node B", async () => {
    const ws = await WsClient.connect(`${b.wsUrl}/ws?channel=room:x2&channel=room:x3&token=${await token("ben")}`);
    await ws.next((f) => f.type === "subscribed" && f.channel === "room:x3");
    assert.deepEqual(await a.hl.unsubscribe("ben", "room:x2"), { unsubscribed: 1 });
    await ws.next((f) => f.type === "unsubscribed" && f.channel === "room:x2");
    assert.equal(b.hl.hub.subscriberCount("room:x2"), 0);
    await publishHttp(a, "room:x3", "kept", key);
    await ws.next((f) => f.type === "message" && f.data === "kept");
    ws.close();
  });

  it("a revocation asked of node A closes the connection on node B (4001), and B refuses the token from then on", async () => {
    const t = await token("cat", 100);
    const ws = await WsClient.connect(`${b.wsUrl}/ws?channel=room:x4&token=${t}`);
    await ws.next((f) => f.type === "subscribed");
    assert.deepEqual((await post(a, "/api/revoke", { user: "cat", before: nowSec() - 10 })).body, { closed: 1 });
    await ws.closed;
    assert.equal(ws.closeCode, 4001);
    const refused = await getJson(`${b.url}/poll?channel=room:x4&token=${t}`);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error.code, "token_revoked");
  });

  it("a history removal asked of node A resets node B's subscribers and held polls at once, both nodes agreeing on the new epoch", async () => {
    for (let i = 1; i <= 3; i++) await publishHttp(a, "room:x5", i, key);
    const t = await token("dan");
    const ws = await WsClient.connect(`${b.wsUrl}/ws?channel=room:x5&token=${t}`);
    await ws.next((f) => f.type === "subscribed");
    const start = await getJson(`${b.url}/poll?channel=room:x5&token=${t}`);
    const held = getJson(`${b.url}/poll?channel=room:x5&cursor=${start.body.cursor}&timeout=20&token=${t}`);
    await waitFor(() => b.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held on B");
    const r = await getJson(`${a.url}/api/history/room:x5`, { method: "DELETE", headers: key });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const reset = await ws.next((f) => f.type === "reset");
    assert.equal(reset.epoch, r.body.epoch);
    const polled = await held;
    assert.deepEqual(polled.body.resets, [{ channel: "room:x5", epoch: r.body.epoch, offset: 0 }]);
    const onB = await getJson(`${b.url}/api/history/room:x5`, { headers: key });
    assert.deepEqual([onB.body.epoch, onB.body.offset, onB.body.messages], [r.body.epoch, 0, []]);
    await publishHttp(a, "room:x5", "after", key);
    const m = await ws.next((f) => f.type === "message");
    assert.deepEqual([m.offset, m.data], [1, "after"]);
    ws.close();
  });

  it("channel counts asked of either node include both nodes' subscribers", async () => {
    const t = await token("eve");
    const onA = await WsClient.connect(`${a.wsUrl}/ws?channel=room:y1&token=${t}`);
    const onB1 = await WsClient.connect(`${b.wsUrl}/ws?channel=room:y1&channel=room:y2&token=${t}`);
    const onB2 = await SseStream.open(`${b.url}/sse?channel=room:y1&token=${t}`);
    await onA.next((f) => f.type === "subscribed");
    await onB1.next((f) => f.type === "subscribed" && f.channel === "room:y2");
    await onB2.next((e) => e.event === "position");
    const list = await getJson(`${a.url}/api/channels?prefix=room:y`, { headers: key });
    assert.deepEqual(list.body, {
      channels: [
        { channel: "room:y1", subscribers: 3 },
        { channel: "room:y2", subscribers: 1 },
      ],
    });
    assert.equal((await getJson(`${b.url}/api/channels/room:y1`, { headers: key })).body.subscribers, 3);
    assert.equal((await a.hl.channel("room:y2")).subscribers, 1);
    onA.close();
    onB1.close();
    onB2.close();
  });
});
