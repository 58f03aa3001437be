/**
 * Presence through the client (SPEC §9), against a real server: one client id
 * per instance sent as `client=` on every transport and kept across
 * reconnections and fallbacks; `sub.presence()` and the `presence`, `join`
 * and `leave` events on WebSocket, SSE and long polling; the list kept from
 * them equal to `GET /api/presence` after churn; a reconnection within the
 * grace that the other members never see.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Heartline, PresenceMember, Subscription } from "../../src/client/index.js";
import { getJson, waitFor, WsClient } from "../helpers/server.js";
import { client, connected, dropConnection, onServer, scriptedWsServer, serverBehindProxy } from "./helpers.js";

const TRANSPORTS = ["ws", "sse", "poll"] as const;
const FAST = { backoffBase: 0.02, backoffMax: 0.1 };
const API_KEY = "client-presence-key";

const clientsOf = (list: readonly PresenceMember[] | undefined): string[] => (list ?? []).map((m) => m.client).sort();

/**
 * A subscription that records its presence events as `join:<client>`,
 * `leave:<client>` and `presence:<clients>`, and `stale:<event>` when a
 * listener read a `sub.presence()` that did not include the event yet.
 */
function watch(hl: Heartline, channel: string): { sub: Subscription; events: string[] } {
  const events: string[] = [];
  const has = (m: PresenceMember) => sub.presence()?.some((x) => x.client === m.client) === true;
  const sub: Subscription = hl
    .subscribe(channel, () => {})
    .on("presence", (list) => events.push(JSON.stringify(sub.presence()) === JSON.stringify(list) ? "presence:" + clientsOf(list).join(",") : "stale:presence"))
    .on("join", (m) => events.push(has(m) ? "join:" + m.client : "stale:join"))
    .on("leave", (m) => events.push(has(m) ? "stale:leave" : "leave:" + m.client));
  return { sub, events };
}

describe("Heartline client: presence", () => {
  const fx = serverBehindProxy({ apiKey: API_KEY, presence: ["room:*"], presenceGrace: 2 });

  async function serverClients(channel: string): Promise<string[]> {
    const r = await getJson(`${fx.s.url}/api/presence/${channel}`, { headers: { Authorization: `Bearer ${API_KEY}` } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return clientsOf(r.body.members);
  }

  it("keeps one random client id per instance; a clientId option is checked and used", () => {
    const a = client(fx.proxy.url, { shared: false });
    const b = client(fx.proxy.url);
    const c = client(fx.proxy.url, { clientId: "my-id_1.~" });
    try {
      assert.match(a.clientId, /^[a-z0-9]{8,64}$/);
      assert.notEqual(a.clientId, b.clientId);
      assert.equal(c.clientId, "my-id_1.~");
      for (const bad of ["", "a b", "x".repeat(65), "é", "a/b", "a?b", "%41"]) {
        assert.throws(
          () => client(fx.proxy.url, { clientId: bad as string }),
          (e: unknown) => e instanceof TypeError && /option clientId/.test(e.message),
          JSON.stringify(bad),
        );
      }
    } finally {
      for (const hl of [a, b, c]) hl.close();
    }
  });

  for (const t of TRANSPORTS) {
    it(`${t}: sends client=, gets the snapshot after subscribing, then joins and leaves; the list is the server's`, async () => {
      const channel = `room:${t}`;
      const from = fx.proxy.requests.length;
      const a = client(fx.proxy.url, { transports: [t], ...FAST });
      const b = client(fx.proxy.url, { transports: [t], ...FAST });
      const wa = watch(a, channel);
      try {
        assert.equal(wa.sub.presence(), undefined, "no list before the snapshot");
        await waitFor(() => wa.sub.presence() || undefined, 5000, "the snapshot");
        assert.deepEqual(wa.sub.presence(), [{ client: a.clientId, user: null, info: null }]);
        assert.deepEqual(wa.events, [`presence:${a.clientId}`]);
        const path = t === "ws" ? "/ws?" : `/${t}?`;
        const mine = fx.proxy.requests.slice(from).filter((l) => l.includes(path) && l.includes(`client=${a.clientId}`));
        assert.ok(mine.length > 0, `a ${t} request with client=${a.clientId}`);

        const wb = watch(b, channel);
        await waitFor(() => wa.events.includes(`join:${b.clientId}`) || undefined, 5000, "the join");
        await waitFor(() => wb.sub.presence() || undefined, 5000, "b's snapshot");
        const both = [a.clientId, b.clientId].sort();
        assert.deepEqual(clientsOf(wa.sub.presence()), both);
        assert.deepEqual(clientsOf(wb.sub.presence()), both);
        assert.deepEqual(await serverClients(channel), both);

        // b goes: a hears the leave (at once for an unsubscribe, after the grace for a poller that stops).
        wb.sub.unsubscribe();
        await waitFor(() => wa.events.includes(`leave:${b.clientId}`) || undefined, 5000, "the leave");
        assert.deepEqual(wa.sub.presence(), [{ client: a.clientId, user: null, info: null }]);
        assert.deepEqual(await serverClients(channel), [a.clientId]);
        assert.deepEqual(wa.events, [`presence:${a.clientId}`, `join:${b.clientId}`, `leave:${b.clientId}`]);
        // What presence() returns is a copy.
        wa.sub.presence()!.pop();
        assert.equal(wa.sub.presence()!.length, 1);
      } finally {
        a.close();
        b.close();
      }
    });
  }

  it("after churn on every transport, every list kept from events equals GET /api/presence", async () => {
    const channel = "room:churn";
    const watchers = TRANSPORTS.map((t) => {
      const hl = client(fx.proxy.url, { transports: [t], ...FAST });
      return { hl, ...watch(hl, channel) };
    });
    const others: Heartline[] = [];
    try {
      for (const w of watchers) await waitFor(() => w.sub.presence() || undefined, 5000, "a watcher's snapshot");
      // Members come and go on every transport: some unsubscribe, some close, some stay.
      const subs: Subscription[] = [];
      for (let i = 0; i < 9; i++) {
        const hl = client(fx.proxy.url, { transports: [TRANSPORTS[i % 3]!], ...FAST });
        others.push(hl);
        subs.push(hl.subscribe(channel, () => {}));
      }
      await waitFor(async () => (await serverClients(channel)).length === 12 || undefined, 5000, "12 members");
      subs[0]!.unsubscribe();
      subs[4]!.unsubscribe();
      others[2]!.close();
      others[7]!.close();
      const again = client(fx.proxy.url, { transports: ["sse"], ...FAST });
      others.push(again);
      again.subscribe(channel, () => {});
      subs[8]!.unsubscribe();
      const expected = [...watchers.map((w) => w.hl.clientId), ...[1, 3, 5, 6, 9].map((i) => others[i]!.clientId)].sort();
      await waitFor(async () => JSON.stringify(await serverClients(channel)) === JSON.stringify(expected) || undefined, 8000, "the server's list after churn");
      for (const w of watchers) {
        await waitFor(() => JSON.stringify(clientsOf(w.sub.presence())) === JSON.stringify(expected) || undefined, 5000, `${w.hl.transport}'s list`);
      }
      // Each list is exactly the server's, members' fields included.
      const server = await getJson(`${fx.s.url}/api/presence/${channel}`, { headers: { Authorization: `Bearer ${API_KEY}` } });
      const byClient = (l: PresenceMember[]) => [...l].sort((x, y) => (x.client < y.client ? -1 : 1));
      for (const w of watchers) assert.deepEqual(byClient(w.sub.presence()!), byClient(server.body.members));
    } finally {
      for (const hl of [...watchers.map((w) => w.hl), ...others]) hl.close();
    }
  });

  for (const t of TRANSPORTS) {
    it(`${t}: a reconnection within the grace keeps the client id: no leave, no join for the others`, async () => {
      const channel = `room:again-${t}`;
      const watcher = await WsClient.connect(`${fx.s.wsUrl}/ws?channel=${channel}&client=watcher`);
      await watcher.next((f) => f.type === "presence");
      const hl = client(fx.proxy.url, { transports: [t], ...FAST });
      const w = watch(hl, channel);
      try {
        await watcher.next((f) => f.type === "join" && f.client === hl.clientId);
        await connected(hl, t);
        const from = fx.proxy.requests.length;
        // New requests are refused until the client has noticed (a poll sent just after the cut would pass).
        await dropConnection(fx.proxy, hl, [t === "ws" ? "/ws" : `/${t}`]);
        fx.proxy.unblock();
        await connected(hl, t);
        if (t === "poll") await onServer(fx.s, channel, t);
        else await waitFor(() => fx.s.hl.hub.subscriberCount(channel) === 2 || undefined, 5000, "the resubscription");
        // The snapshot after the resubscription came (polls: the node remembers what it told this member).
        if (t !== "poll") await waitFor(() => w.events.filter((e) => e.startsWith("presence:")).length === 2 || undefined, 5000, "a second snapshot");
        assert.ok(fx.proxy.requests.slice(from).some((l) => l.includes(`client=${hl.clientId}`)), "the same client id after the reconnection");
        await new Promise((r) => setTimeout(r, 2300)); // past the grace
        assert.deepEqual(
          watcher.frames.filter((f) => f.type === "join" || f.type === "leave").map((f) => `${f.type}:${f.client}`),
          [`join:${hl.clientId}`],
          "no leave/join pair for the reconnection",
        );
        assert.deepEqual(clientsOf(w.sub.presence()), [hl.clientId, "watcher"].sort());
        assert.deepEqual(w.events.filter((e) => !e.startsWith("presence:")), [], "the client saw no join or leave either");
      } finally {
        hl.close();
        watcher.close();
      }
    });
  }

  it("a fallback to another transport keeps the client id: the member stays", async () => {
    const channel = "room:fallback";
    const watcher = await WsClient.connect(`${fx.s.wsUrl}/ws?channel=${channel}&client=fw`);
    await watcher.next((f) => f.type === "presence");
    const hl = client(fx.proxy.url, FAST);
    const w = watch(hl, channel);
    try {
      await connected(hl, "ws");
      await watcher.next((f) => f.type === "join" && f.client === hl.clientId);
      const from = fx.proxy.requests.length;
      await dropConnection(fx.proxy, hl, ["/ws"]);
      await connected(hl, "sse");
      await waitFor(() => fx.s.hl.hub.subscriberCount(channel) === 2 || undefined, 5000, "the SSE subscription");
      assert.ok(fx.proxy.requests.slice(from).some((l) => l.startsWith("GET /sse?") && l.includes(`client=${hl.clientId}`)));
      await new Promise((r) => setTimeout(r, 2300)); // past the grace
      assert.deepEqual(
        watcher.frames.filter((f) => f.type === "join" || f.type === "leave").map((f) => `${f.type}:${f.client}`),
        [`join:${hl.clientId}`],
      );
      assert.deepEqual(clientsOf(w.sub.presence()), [hl.clientId, "fw"].sort());
    } finally {
      fx.proxy.unblock();
      hl.close();
      watcher.close();
    }
  });

  it("a channel outside --presence has no list and no presence events", async () => {
    const hl = client(fx.proxy.url, { transports: ["ws"], ...FAST });
    const w = watch(hl, "plain:none");
    const other = client(fx.proxy.url, { transports: ["ws"], ...FAST });
    try {
      await connected(hl, "ws");
      await onServer(fx.s, "plain:none", "ws");
      other.subscribe("plain:none", () => {});
      await waitFor(() => fx.s.hl.hub.subscriberCount("plain:none") === 2 || undefined);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(w.sub.presence(), undefined);
      assert.deepEqual(w.events, []);
    } finally {
      hl.close();
      other.close();
    }
  });
});

describe("Heartline client: presence frames it cannot use", () => {
  const fx = scriptedWsServer((ws) => {
    const send = (f: unknown): void => ws.send(JSON.stringify(f));
    send({ type: "subscribed", channel: "room:x", epoch: "E", offset: 0, recovered: false });
    // A join before any snapshot, snapshots that are no lists, members that are no members, an unknown channel.
    send({ type: "join", channel: "room:x", client: "early", user: null, info: null });
    for (const members of [undefined, null, 7, "x", { length: 1 }, [null]]) send({ type: "presence", channel: "room:x", members });
    send({ type: "presence", channel: "room:other", members: [{ client: "z", user: null, info: null }] });
    send({ type: "unsubscribed", channel: "room:other" });
    send({ type: "presence", channel: "room:x", members: [{ client: "a", user: "u", info: { n: 1 } }] });
    send({ type: "leave", channel: "room:x", client: "nobody", user: null, info: null });
    send({ type: "join", channel: "room:x", client: "b", user: null, info: null });
    send({ type: "message", channel: "room:x", offset: 1, data: "after" });
  });

  it("ignores them without harm and keeps the list from the first good snapshot", async () => {
    const hl = client(fx.url, { transports: ["ws"] });
    const w = watch(hl, "room:x");
    const got: unknown[] = [];
    const other = hl.subscribe("room:y", (m) => got.push(m.data));
    try {
      await waitFor(() => w.sub.presence()?.length === 2 || undefined, 5000, "the good snapshot and a join");
      assert.deepEqual(w.sub.presence(), [
        { client: "a", user: "u", info: { n: 1 } },
        { client: "b", user: null, info: null },
      ]);
      assert.deepEqual(w.events, ["presence:a", "leave:nobody", "join:b"]);
      assert.equal(hl.state, "connected");
      assert.equal(other.closed, false);
    } finally {
      hl.close();
    }
  });
});
