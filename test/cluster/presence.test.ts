/**
 * Presence and the event feed across Heartline nodes sharing one private
 * redis-server (SPEC §9): members, snapshots and joins/leaves cluster-wide on
 * every transport; a client that moves to another node within the grace
 * causes no leave/join; occupied/vacated count every node; a node killed with
 * SIGKILL loses its members within the documented bound.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { HOLD_REFRESH_MS, HOLD_TTL_MS } from "../../src/hub/presence.js";
import { startChildServer } from "../helpers/child.js";
import { SseStream } from "../helpers/sse.js";
import { getJson, startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";
import { RedisServer, redisSkip } from "../helpers/redis.js";

const API_KEY = "cluster-presence-key";
const FEED = "system:events";
const auth = { Authorization: `Bearer ${API_KEY}` };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const OPTIONS = { apiKey: API_KEY, presence: "room:*", presenceGrace: 0.5, eventsChannel: FEED };

const clientsOf = (members: Array<{ client: string }>) => members.map((m) => m.client).sort();

describe("presence in a cluster", { skip: redisSkip }, () => {
  let redis: RedisServer;
  const nodes: TestServer[] = [];

  before(async () => {
    redis = await RedisServer.start();
    for (let i = 0; i < 2; i++) nodes.push(await startServer({ redis: redis.url, ...OPTIONS }));
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    await redis?.stop();
  });

  const presence = async (node: TestServer, channel: string) => (await getJson(`${node.url}/api/presence/${channel}`, { headers: auth })).body;

  it("members on two nodes: snapshots, joins and leaves on WebSocket, SSE and polls, and GET /api/presence on either node", async () => {
    const [a, b] = nodes as [TestServer, TestServer];
    const wa = await WsClient.connect(`${a.wsUrl}/ws?channel=room:1&client=na`);
    await wa.next((f) => f.type === "presence");
    const sb = await SseStream.open(`${b.url}/sse?channel=room:1&client=nb`);
    const snapB = JSON.parse((await sb.next((e) => e.event === "presence")).data!);
    assert.deepEqual(clientsOf(snapB.members), ["na", "nb"]);
    const join = await wa.next((f) => f.type === "join");
    assert.equal(join.client, "nb");
    const poll = await getJson(`${b.url}/poll?channel=room:1&client=np`);
    assert.deepEqual(clientsOf(poll.body.presence[0].members), ["na", "nb", "np"]);
    await wa.next((f) => f.type === "join" && f.client === "np");
    for (const n of nodes) assert.deepEqual(clientsOf((await presence(n, "room:1")).members), ["na", "nb", "np"]);
    // The poller's first poll to node A gets a snapshot there; a held one then hears a leave made on node B.
    const onA = await getJson(`${a.url}/poll?channel=room:1&client=np&cursor=${poll.body.cursor}&timeout=0`);
    assert.deepEqual(onA.body.presence.map((p: any) => p.type), ["presence"]);
    assert.deepEqual(clientsOf(onA.body.presence[0].members), ["na", "nb", "np"]);
    const held = getJson(`${a.url}/poll?channel=room:1&client=np&cursor=${onA.body.cursor}&timeout=10`);
    await sleep(200);
    sb.close();
    const woken = await held;
    assert.deepEqual(woken.body.presence.map((p: any) => `${p.type}:${p.client}`), ["leave:nb"]);
    wa.close();
  });

  it("a client that moves to the other node within the grace causes no leave and no join", async () => {
    const [a, b] = nodes as [TestServer, TestServer];
    const watcher = await WsClient.connect(`${a.wsUrl}/ws?channel=room:2&client=w2`);
    await watcher.next((f) => f.type === "presence");
    const first = await WsClient.connect(`${a.wsUrl}/ws?channel=room:2&client=mover`);
    await watcher.next((f) => f.type === "join" && f.client === "mover");
    first.ws.terminate();
    await sleep(100);
    const moved = await WsClient.connect(`${b.wsUrl}/ws?channel=room:2&client=mover`);
    assert.deepEqual(clientsOf((await moved.next((f) => f.type === "presence")).members as any), ["mover", "w2"]);
    await sleep(1500);
    assert.deepEqual(watcher.frames.filter((f) => f.type === "join" || f.type === "leave").map((f) => `${f.type}:${f.client}`), ["join:mover"]);
    moved.close();
    await watcher.next((f) => f.type === "leave" && f.client === "mover", 5000);
    watcher.close();
  });

  it("occupied and vacated count subscribers on every node: one occupied, one vacated", async () => {
    const [a, b] = nodes as [TestServer, TestServer];
    const feed = await WsClient.connect(`${b.wsUrl}/ws?channel=${FEED}`, { headers: auth });
    await feed.next((f) => f.type === "subscribed");
    const x = await WsClient.connect(`${a.wsUrl}/ws?channel=room:occ&client=o1`);
    await x.next((f) => f.type === "subscribed");
    const y = await WsClient.connect(`${b.wsUrl}/ws?channel=room:occ&client=o2`);
    await y.next((f) => f.type === "subscribed");
    x.close();
    await sleep(1500);
    y.close();
    await feed.next((f) => f.type === "message" && (f.data as any).event === "vacated" && (f.data as any).channel === "room:occ", 5000);
    const occ = feed.messages().map((m) => m.data as any).filter((e) => e.channel === "room:occ" && (e.event === "occupied" || e.event === "vacated"));
    assert.deepEqual(occ.map((e) => e.event), ["occupied", "vacated"]);
    feed.close();
  });

  it(`a node killed with SIGKILL: its members leave within ${(HOLD_TTL_MS + HOLD_REFRESH_MS) / 1000} s (and are unlisted within ${HOLD_TTL_MS / 1000} s)`, { timeout: 60_000 }, async () => {
    const [a] = nodes as [TestServer];
    const doomed = await startChildServer(["--redis", redis.url, "--api-key", API_KEY, "--presence", "room:*", "--events-channel", FEED]);
    try {
      const watcher = await WsClient.connect(`${a.wsUrl}/ws?channel=room:kill&client=kw`);
      await watcher.next((f) => f.type === "presence");
      const victim = await WsClient.connect(`${doomed.wsUrl}/ws?channel=room:kill&client=victim`);
      await victim.next((f) => f.type === "presence");
      await watcher.next((f) => f.type === "join" && f.client === "victim");
      const killedAt = Date.now();
      doomed.child.kill("SIGKILL");
      await waitFor(async () => !clientsOf((await presence(a, "room:kill")).members).includes("victim"), HOLD_TTL_MS + 2000, "victim unlisted");
      const unlistedAfter = Date.now() - killedAt;
      const leave = await watcher.next((f) => f.type === "leave" && f.client === "victim", HOLD_TTL_MS + HOLD_REFRESH_MS + 3000);
      const leftAfter = Date.now() - killedAt;
      assert.ok(leave);
      assert.ok(unlistedAfter <= HOLD_TTL_MS + 1000, `unlisted after ${unlistedAfter} ms`);
      assert.ok(leftAfter <= HOLD_TTL_MS + HOLD_REFRESH_MS + 1000, `left after ${leftAfter} ms`);
      watcher.close();
    } finally {
      await doomed.stop();
    }
  });
});
