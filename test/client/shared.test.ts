/**
 * Cross-tab sharing, on Node: a SharedWorker stand-in runs the worker side
 * (createHub) behind real MessagePorts in this process, so clients made
 * without `shared: false` ("tabs") hold one server connection between them.
 * The same code runs in a real SharedWorker in test/e2e/tabs.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { EventSource } from "eventsource";
import WebSocket from "ws";
import { Heartline, HeartlineError } from "../../src/client/index.js";
import { setLinker } from "../../src/client/link.js";
import { installSharing } from "../../src/client/shared.js";
import { publishHttp, waitFor, withServer } from "../helpers/server.js";
import { connected, CutProxy, fakeSharedWorkers, Recorder } from "./helpers.js";

const workers = fakeSharedWorkers();

const globals = globalThis as Record<string, unknown>;

describe("Heartline client: tabs sharing one connection", () => {
  let proxy: CutProxy;
  // Registered before the server's own hook, so it runs before the server closes.
  after(async () => {
    setLinker(undefined);
    delete globals.SharedWorker;
    delete globals.WebSocket;
    delete globals.EventSource;
    workers.close();
    await proxy.close();
  });
  const s = withServer({ clientPublish: ["game:*"], presence: ["room:*"] });
  before(async () => {
    proxy = await CutProxy.start(s.port);
    globals.SharedWorker = workers.SharedWorker;
    // The worker's own client finds the platform's constructors, as in a browser.
    globals.WebSocket = WebSocket;
    globals.EventSource = EventSource;
    installSharing();
  });

  it("holds one server connection for several tabs, fans messages out, and closes it with the last tab", async () => {
    const tabs = [new Heartline(proxy.url), new Heartline(proxy.url), new Heartline(proxy.url)];
    const recs = tabs.map(() => new Recorder());
    tabs.forEach((hl, i) => hl.subscribe("shared:a", recs[i]!.handler));
    for (const hl of tabs) await connected(hl, "ws");
    await waitFor(() => s.hl.hub.subscriberCount("shared:a") === 1 || undefined);
    assert.equal(s.hl.connections, 1);
    assert.equal(proxy.requests.filter((l) => l.startsWith("GET /ws")).length, 1);

    await publishHttp(s, "shared:a", "one");
    for (const r of recs) await r.until(1);

    // A tab publishes through the worker's WebSocket: the answer comes back to it.
    const res = await tabs[1]!.publish("game:1", { x: 1 });
    assert.equal(res.offset, 1);
    await assert.rejects(tabs[1]!.publish("chat:x", 1), (e: unknown) => e instanceof HeartlineError && e.code === "forbidden");

    // The first tab goes: the others keep the connection.
    tabs[0]!.close();
    assert.equal(tabs[0]!.state, "closed");
    await publishHttp(s, "shared:a", "two");
    for (const r of recs.slice(1)) await r.until(2);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(recs[0]!.offsets(), [1]);
    for (const r of recs.slice(1)) assert.deepEqual(r.offsets(), [1, 2]);
    assert.equal(s.hl.connections, 1);

    // A tab that closes stops receiving; the channel stays for the tab still on it.
    tabs[1]!.close();
    await publishHttp(s, "shared:a", "three");
    await recs[2]!.until(3);
    assert.deepEqual(recs[1]!.offsets(), [1, 2]);

    tabs[2]!.close();
    await waitFor(() => (s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0) || undefined, 5000, "the shared connection to close");
  });

  it("mirrors the worker's connection state in every tab, and resumes across a cut without loss", async () => {
    const a = new Heartline(proxy.url, { backoffBase: 0.02 });
    const b = new Heartline(proxy.url, { backoffBase: 0.02 });
    const ra = new Recorder();
    const rb = new Recorder();
    a.subscribe("shared:b", ra.handler);
    b.subscribe("shared:b", rb.handler);
    const states: string[] = [];
    b.on("state", ({ to }) => states.push(to));
    try {
      await connected(a, "ws");
      await connected(b, "ws");
      await waitFor(() => s.hl.hub.subscriberCount("shared:b") === 1 || undefined);
      await publishHttp(s, "shared:b", 1);
      await rb.until(1);
      proxy.block();
      proxy.cut();
      await waitFor(() => b.state !== "connected" || undefined);
      await publishHttp(s, "shared:b", 2);
      await publishHttp(s, "shared:b", 3);
      proxy.unblock();
      await ra.until(3);
      await rb.until(3);
      assert.deepEqual(ra.offsets(), [1, 2, 3]);
      assert.deepEqual(rb.offsets(), [1, 2, 3]);
      assert.ok(states.includes("disconnected") && states.at(-1) === "connected", states.join(","));
      // Both tabs show the worker's transport (it may have fallen back while the proxy refused WebSocket).
      assert.ok(b.transport !== undefined);
      assert.equal(b.transport, a.transport);
    } finally {
      a.close();
      b.close();
    }
    await waitFor(() => s.hl.connections === 0 || undefined);
  });

  it("presence: relayed to every tab on the channel, the known list given at once to a tab that subscribes later; the tabs are one member", async () => {
    const a = new Heartline(proxy.url);
    const b = new Heartline(proxy.url);
    const other = new Heartline(proxy.url, { shared: false, WebSocket });
    const events: Array<[string, string, string]> = [];
    const record = (tab: string, hl: Heartline) =>
      hl
        .subscribe("room:tabs", () => {})
        .on("presence", (l) => events.push([tab, "presence", l.map((m) => m.client).sort().join(",")]))
        .on("join", (m) => events.push([tab, "join", m.client]))
        .on("leave", (m) => events.push([tab, "leave", m.client]));
    try {
      const sa = record("a", a);
      await connected(a, "ws");
      await waitFor(() => sa.presence() ?? undefined, 5000, "a's snapshot");
      const id = a.clientId;
      assert.deepEqual(sa.presence(), [{ client: id, user: null, info: null }]);
      // A second tab on the same channel: the hub's list, at once, without a new server subscription.
      const sb = record("b", b);
      await waitFor(() => sb.presence() ?? undefined, 5000, "b's list");
      assert.equal(b.clientId, id, "the tabs share the hub's id");
      assert.deepEqual(sb.presence(), [{ client: id, user: null, info: null }]);
      assert.equal(s.hl.hub.subscriberCount("room:tabs"), 1);

      const so = other.subscribe("room:tabs", () => {});
      await waitFor(() => events.filter((e) => e[1] === "join").length === 2 || undefined, 5000, "both tabs hear the join");
      assert.deepEqual(
        events.filter((e) => e[1] === "join").map((e) => e[0] + ":" + e[2]).sort(),
        [`a:${other.clientId}`, `b:${other.clientId}`],
      );
      const both = [id, other.clientId].sort();
      for (const sub of [sa, sb]) assert.deepEqual(sub.presence()!.map((m) => m.client).sort(), both);
      const server = await fetch(`${s.url}/api/presence/room:tabs`).then((r) => r.json() as Promise<{ members: Array<{ client: string }> }>);
      assert.deepEqual(server.members.map((m) => m.client).sort(), both);

      so.unsubscribe();
      await waitFor(() => events.filter((e) => e[1] === "leave").length === 2 || undefined, 5000, "both tabs hear the leave");
      for (const sub of [sa, sb]) assert.deepEqual(sub.presence(), [{ client: id, user: null, info: null }]);
    } finally {
      for (const hl of [a, b, other]) hl.close();
    }
    await waitFor(() => s.hl.connections === 0 || undefined);
  });

  it("asks the tabs for tokens, and keeps clients with injected constructors or shared: false on their own", async () => {
    const from = proxy.requests.length;
    const withToken = new Heartline(proxy.url, { getToken: () => "tab-token" });
    withToken.subscribe("shared:c", () => {});
    const own = new Heartline(proxy.url, { shared: false, WebSocket });
    own.subscribe("shared:c", () => {});
    const injected = new Heartline(proxy.url, { WebSocket });
    injected.subscribe("shared:c", () => {});
    try {
      for (const hl of [withToken, own, injected]) await connected(hl, "ws");
      await waitFor(() => s.hl.connections === 3 || undefined);
      const ws = proxy.requests.slice(from).filter((l) => l.startsWith("GET /ws"));
      assert.equal(ws.length, 3);
      assert.equal(ws.filter((l) => l.includes("token=tab-token")).length, 1);
    } finally {
      for (const hl of [withToken, own, injected]) hl.close();
    }
    await waitFor(() => s.hl.connections === 0 || undefined);
  });
});
