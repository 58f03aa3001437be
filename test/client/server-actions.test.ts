/**
 * The client under the server API's actions (SPEC §10), against a real
 * server: a subscription the server removes (POST /api/unsubscribe) ends
 * with an `unsubscribed` event and is not resubscribed, on WebSocket and SSE,
 * in tabs sharing a connection too; the client's own unsubscribe is not taken
 * for the server's; a held long poll answered `403 disconnected` stops the
 * client, as WebSocket close 4403 does.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { EventSource } from "eventsource";
import WebSocket from "ws";
import { Heartline } from "../../src/client/index.js";
import { setLinker } from "../../src/client/link.js";
import { installSharing } from "../../src/client/shared.js";
import { nowSec, sign } from "../helpers/auth.js";
import { publishHttp, waitFor } from "../helpers/server.js";
import { client, connected, dropConnection, fakeSharedWorkers, onServer, Recorder, serverBehindProxy } from "./helpers.js";

const SECRET = "client-actions-secret-long-enough-for-hs256";
const FAST = { backoffBase: 0.02, backoffMax: 0.1 };
const tokenOf = (sub: string) => () => sign({ sub, iat: nowSec() - 5, exp: nowSec() + 3600, channels: ["room:*"] }, SECRET);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Heartline client: the server API's actions", () => {
  const fx = serverBehindProxy({ jwtSecret: SECRET, presence: ["room:*"] });

  for (const t of ["ws", "sse"] as const) {
    it(`${t}: a subscription the server removes ends with "unsubscribed" and stays gone across a reconnection; the others go on`, async () => {
      const { s, proxy } = fx;
      const user = `u-${t}`;
      const hl = client(proxy.url, { transports: [t], getToken: tokenOf(user), ...FAST });
      const gone = new Recorder();
      const kept = new Recorder();
      const ended: Array<{ channel: string }> = [];
      const sub = gone.subscribe(hl, `room:gone-${t}`).on("unsubscribed", (e) => ended.push(e));
      kept.subscribe(hl, `room:kept-${t}`);
      try {
        await connected(hl, t);
        await waitFor(() => (s.hl.hub.subscriberCount(`room:gone-${t}`) === 1 && s.hl.hub.subscriberCount(`room:kept-${t}`) === 1) || undefined, 5000, "both subscriptions");
        await publishHttp(s, `room:gone-${t}`, 1);
        await gone.until(1);

        assert.deepEqual(await s.hl.unsubscribe(user, `room:gone-${t}`), { unsubscribed: 1 });
        await waitFor(() => ended.length > 0 || undefined, 5000, "the unsubscribed event");
        assert.deepEqual(ended, [{ channel: `room:gone-${t}` }]);
        assert.equal(sub.closed, true);
        assert.equal(sub.presence(), undefined);

        await publishHttp(s, `room:gone-${t}`, 2);
        await publishHttp(s, `room:kept-${t}`, 1);
        await kept.until(1);
        // A reconnection subscribes what is left, not the removed channel.
        await dropConnection(proxy, hl);
        await connected(hl, t);
        await waitFor(() => s.hl.hub.subscriberCount(`room:kept-${t}`) === 1 || undefined, 5000, "the kept channel again");
        await publishHttp(s, `room:gone-${t}`, 3);
        await publishHttp(s, `room:kept-${t}`, 2);
        await kept.until(2);
        await sleep(100);
        assert.equal(s.hl.hub.subscriberCount(`room:gone-${t}`), 0);
        assert.deepEqual(gone.offsets(), [1]);
        assert.deepEqual(ended.length, 1);
        // The application may subscribe again: the usual rules let it in.
        const again = new Recorder();
        again.subscribe(hl, `room:gone-${t}`);
        await waitFor(() => s.hl.hub.subscriberCount(`room:gone-${t}`) === 1 || undefined, 5000, "the new subscription");
        await publishHttp(s, `room:gone-${t}`, 4);
        await again.until(1);
        assert.deepEqual(again.offsets(), [4]);
      } finally {
        hl.close();
      }
    });
  }

  it("ws: the client's own unsubscribe, answered by unsubscribed, does not end a subscription made right after it", async () => {
    const { s, proxy } = fx;
    const hl = client(proxy.url, { transports: ["ws"], getToken: tokenOf("u-own"), ...FAST });
    const first = hl.subscribe("room:own", () => {});
    try {
      await connected(hl, "ws");
      await onServer(s, "room:own", "ws");
      first.unsubscribe();
      const r = new Recorder();
      const ended: unknown[] = [];
      const second = r.subscribe(hl, "room:own").on("unsubscribed", (e) => ended.push(e));
      await sleep(200);
      assert.deepEqual(ended, []);
      assert.equal(second.closed, false);
      await waitFor(() => s.hl.hub.subscriberCount("room:own") === 1 || undefined, 5000, "the second subscription");
      await publishHttp(s, "room:own", 1);
      await r.until(1);
    } finally {
      hl.close();
    }
  });

  it("poll: a held poll answered 403 disconnected stops the client for good, as close 4403 does", async () => {
    const { s, proxy } = fx;
    const hl = client(proxy.url, { transports: ["poll"], getToken: tokenOf("u-poll"), ...FAST });
    const errors: string[] = [];
    hl.on("error", (e) => errors.push(e.code));
    hl.subscribe("room:poll", () => {});
    try {
      await connected(hl, "poll");
      await onServer(s, "room:poll", "poll");
      const from = proxy.requests.length;
      assert.deepEqual(await s.hl.disconnect("u-poll", { reconnect: false }), { disconnected: 1 });
      await waitFor(() => hl.state === "closed" || undefined, 5000, "the client to give up");
      assert.deepEqual(errors, ["disconnected"]);
      await sleep(300);
      assert.equal(proxy.requests.slice(from).filter((l) => l.startsWith("GET /poll")).length, 0, "no poll after it");
    } finally {
      hl.close();
    }
  });

  it("poll: a held poll answered 403 disconnected with Retry-After comes back, as after close 4002", async () => {
    const { s, proxy } = fx;
    const hl = client(proxy.url, { transports: ["poll"], getToken: tokenOf("u-poll-back"), ...FAST });
    const errors: string[] = [];
    hl.on("error", (e) => errors.push(e.code));
    hl.subscribe("room:pollback", () => {});
    try {
      await connected(hl, "poll");
      await onServer(s, "room:pollback", "poll");
      const from = proxy.requests.length;
      assert.deepEqual(await s.hl.disconnect("u-poll-back"), { disconnected: 1 });
      await waitFor(() => proxy.requests.slice(from).filter((l) => l.startsWith("GET /poll")).length >= 2 || undefined, 8000, "polls after the disconnect");
      assert.notEqual(hl.state, "closed");
      assert.deepEqual(errors, []);
    } finally {
      hl.close();
    }
  });

  it("sse: a disconnect that allows reconnecting is followed by a reconnection with the same client id, and no leave", async () => {
    const { s, proxy } = fx;
    const hl = client(proxy.url, { transports: ["sse"], getToken: tokenOf("u-back"), ...FAST });
    const leaves: string[] = [];
    const sub = hl.subscribe("room:back", () => {}).on("leave", (m) => leaves.push(m.client));
    const other = client(proxy.url, { transports: ["ws"], getToken: tokenOf("u-other"), ...FAST });
    const watched: string[] = [];
    other
      .subscribe("room:back", () => {})
      .on("join", (m) => watched.push("join:" + m.client))
      .on("leave", (m) => watched.push("leave:" + m.client));
    try {
      await connected(hl, "sse");
      await waitFor(() => sub.presence()?.length === 2 || undefined, 5000, "both members");
      const from = proxy.requests.length;
      const mark = watched.length;
      assert.deepEqual(await s.hl.disconnect("u-back"), { disconnected: 1 });
      await waitFor(() => proxy.requests.slice(from).some((l) => l.startsWith("GET /sse?") && l.includes(`client=${hl.clientId}`)) || undefined, 5000, "the reconnection");
      await connected(hl, "sse");
      await sleep(300);
      assert.equal(hl.state, "connected");
      assert.deepEqual(watched.slice(mark), [], "no leave/join pair");
      assert.deepEqual(leaves, []);
    } finally {
      hl.close();
      other.close();
    }
  });
});

describe("Heartline client: the server's unsubscribe in tabs sharing a connection", () => {
  const workers = fakeSharedWorkers();
  const globals = globalThis as Record<string, unknown>;
  const fx = serverBehindProxy({ jwtSecret: SECRET });
  before(() => {
    globals.SharedWorker = workers.SharedWorker;
    globals.WebSocket = WebSocket;
    globals.EventSource = EventSource;
    installSharing();
  });
  after(() => {
    setLinker(undefined);
    delete globals.SharedWorker;
    delete globals.WebSocket;
    delete globals.EventSource;
    workers.close();
  });

  it("every tab on the channel hears unsubscribed and its subscription ends; other channels go on", async () => {
    const { s, proxy } = fx;
    const a = new Heartline(proxy.url, { getToken: tokenOf("tabs") });
    const b = new Heartline(proxy.url, { getToken: tokenOf("tabs") });
    const ended: string[] = [];
    const sa = a.subscribe("room:t", () => {}).on("unsubscribed", () => ended.push("a"));
    const sb = b.subscribe("room:t", () => {}).on("unsubscribed", () => ended.push("b"));
    const kept = new Recorder();
    kept.subscribe(b, "room:k");
    try {
      await connected(a, "ws");
      await connected(b, "ws");
      await waitFor(() => (s.hl.hub.subscriberCount("room:t") === 1 && s.hl.hub.subscriberCount("room:k") === 1) || undefined, 5000, "the hub's subscriptions");
      assert.deepEqual(await s.hl.unsubscribe("tabs", "room:t"), { unsubscribed: 1 });
      await waitFor(() => ended.length === 2 || undefined, 5000, "both tabs told");
      assert.deepEqual(ended.sort(), ["a", "b"]);
      assert.equal(sa.closed && sb.closed, true);
      await publishHttp(s, "room:k", 1);
      await kept.until(1);
      await sleep(100);
      assert.equal(s.hl.hub.subscriberCount("room:t"), 0);
    } finally {
      a.close();
      b.close();
    }
  });
});
