/**
 * Cross-tab sharing where SharedWorker is missing, on Node: clients made
 * without `shared: false` ("tabs") elect a leader with a Web Lock and talk to
 * it over real BroadcastChannels. Node 20 has BroadcastChannel but not
 * `navigator.locks`, so a small first-come-first-served lock manager stands in
 * for it. The same code runs with the browser's own locks in
 * test/e2e/tabs.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { EventSource } from "eventsource";
import WebSocket from "ws";
import { Heartline, HeartlineError } from "../../src/client/index.js";
import { setLinker } from "../../src/client/link.js";
import { installSharing } from "../../src/client/shared.js";
import { publishHttp, waitFor, WsClient } from "../helpers/server.js";
import { connected, publishMany, Recorder, serverBehindProxy } from "./helpers.js";
import { rpcApp } from "./rpc-app.js";

/** Exclusive locks granted in request order, released when the callback's promise settles. */
class Locks {
  private readonly queues = new Map<string, Array<() => void>>();
  private readonly held = new Set<string>();

  request(name: string, options: { signal?: AbortSignal }, fn: () => Promise<unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const grant = (): void => {
        options.signal?.removeEventListener("abort", abort);
        this.held.add(name);
        void Promise.resolve()
          .then(fn)
          .then(resolve, reject)
          .finally(() => {
            this.held.delete(name);
            this.queues.get(name)?.shift()?.();
          });
      };
      const abort = (): void => {
        const q = this.queues.get(name)!;
        q.splice(q.indexOf(grant), 1);
        reject(new DOMException("aborted", "AbortError"));
      };
      if (!this.held.has(name)) return grant();
      options.signal?.addEventListener("abort", abort);
      (this.queues.get(name) ?? this.queues.set(name, []).get(name)!).push(grant);
    });
  }
}

const globals = globalThis as Record<string, unknown>;

describe("Heartline client: tabs electing a leader (no SharedWorker)", () => {
  const app = rpcApp();
  const fx = serverBehindProxy({ clientPublish: ["game:*"], presence: ["room:*"], presenceGrace: 3 }, { hooks: app.hooks });
  const hadNavigator = "navigator" in globals;
  before(() => {
    if (!hadNavigator) globals.navigator = {};
    Object.defineProperty(globals.navigator, "locks", { value: new Locks(), configurable: true });
    // The leader's own client finds the platform's constructors, as in a browser.
    globals.WebSocket = WebSocket;
    globals.EventSource = EventSource;
    installSharing();
  });
  after(() => {
    setLinker(undefined);
    if (hadNavigator) delete (globals.navigator as Record<string, unknown>).locks;
    else delete globals.navigator;
    delete globals.WebSocket;
    delete globals.EventSource;
  });

  it("holds one connection; when the leader goes, another tab takes over and a channel that delivered nothing yet resumes from where it started", async () => {
    const { s, proxy } = fx;
    const opts = { backoffBase: 0.02, backoffMax: 0.1 };
    const tabs = [new Heartline(proxy.url, opts), new Heartline(proxy.url, opts), new Heartline(proxy.url, opts)];
    const recs = tabs.map(() => new Recorder());
    tabs.forEach((hl, i) => recs[i]!.subscribe(hl, "lead:a"));
    try {
      for (const hl of tabs) await connected(hl, "ws");
      await waitFor(() => s.hl.hub.subscriberCount("lead:a") === 1 || undefined);
      assert.equal(s.hl.connections, 1, "one connection for three tabs");
      // Every tab learns the position its (so far silent) subscription started from.
      await waitFor(() => tabs.every((hl) => hl.positionOf("lead:a")?.offset === 0) || undefined, 5000, "positions told");

      // The leader leaves while the server is out of reach; messages are published meanwhile.
      proxy.block();
      tabs[0]!.close();
      await waitFor(() => s.hl.hub.subscriberCount("lead:a") === 0 || undefined, 5000, "the old leader's subscription to go");
      await publishMany(s, "lead:a", 1, 3);
      proxy.unblock();
      for (const r of recs.slice(1)) await r.until(3);
      await publishMany(s, "lead:a", 4, 4);
      for (const r of recs.slice(1)) await r.until(4);
      for (const r of recs.slice(1)) {
        assert.deepEqual(r.offsets(), [1, 2, 3, 4]);
        assert.deepEqual(r.resets, []);
      }
      assert.deepEqual(recs[0]!.offsets(), []);
      await waitFor(() => s.hl.connections === 1 || undefined, 5000, "one connection for the two tabs left");
    } finally {
      for (const hl of tabs) hl.close();
    }
    await waitFor(() => (s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0) || undefined, 5000, "the last connection to close");
  });

  it("presence: the tabs are one member with the leader's client id, and a new leader keeps it (no leave, no join)", async () => {
    const { s, proxy } = fx;
    const opts = { backoffBase: 0.02, backoffMax: 0.1 };
    const watcher = await WsClient.connect(`${s.wsUrl}/ws?channel=room:lead&client=lw`);
    await watcher.next((f) => f.type === "presence");
    const a = new Heartline(proxy.url, opts);
    const b = new Heartline(proxy.url, opts);
    const leaves: string[] = [];
    try {
      const sb = b.subscribe("room:lead", () => {}).on("leave", (m) => leaves.push(m.client));
      a.subscribe("room:lead", () => {});
      await connected(a, "ws");
      await connected(b, "ws");
      const id = a.clientId;
      assert.equal(b.clientId, id, "the follower takes the leader's id");
      await watcher.next((f) => f.type === "join" && f.client === id);
      await waitFor(() => (sb.presence()?.length === 2 ? sb.presence() : undefined), 5000, "b's list");
      assert.deepEqual(sb.presence()!.map((m) => m.client).sort(), [id, "lw"].sort());

      a.close();
      await waitFor(() => s.hl.hub.subscriberCount("room:lead") === 2 || undefined, 5000, "the new leader's subscription");
      await connected(b, "ws");
      assert.equal(b.clientId, id, "the new leader connects with the same id");
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(
        watcher.frames.filter((f) => f.type === "join" || f.type === "leave").map((f) => `${f.type}:${f.client}`),
        [`join:${id}`],
        "the hand-over is no leave and join",
      );
      assert.deepEqual(leaves, []);
      assert.deepEqual(sb.presence()!.map((m) => m.client).sort(), [id, "lw"].sort());
    } finally {
      a.close();
      b.close();
      watcher.close();
    }
    await waitFor(() => s.hl.connections === 0 || undefined);
  });

  it("announces a reset to a tab whose position lies behind where the hub's subscription stands", async () => {
    const { s, proxy } = fx;
    const a = new Heartline(proxy.url);
    const b = new Heartline(proxy.url);
    const ra = new Recorder();
    const rb = new Recorder();
    try {
      a.subscribe("lead:b", ra.handler);
      await connected(a, "ws");
      await connected(b, "ws");
      await waitFor(() => a.positionOf("lead:b") ?? undefined, 5000, "a's position");
      await publishMany(s, "lead:b", 1, 3);
      await ra.until(3);
      const epoch = a.positionOf("lead:b")!.epoch;
      // b asks for everything after offset 1; the shared subscription is already past 3.
      b.subscribe("lead:b", rb.handler, { epoch, offset: 1 }).on("reset", rb.onReset);
      await waitFor(() => rb.resets.length > 0 || undefined, 5000, "b's reset");
      assert.deepEqual(rb.resets, [{ channel: "lead:b", epoch, offset: 3 }]);
      await publishHttp(s, "lead:b", 4);
      await rb.until(1);
      assert.deepEqual(rb.offsets(), [4]);
      assert.deepEqual(ra.offsets(), [1, 2, 3, 4]);
      assert.equal(s.hl.connections, 1);
    } finally {
      a.close();
      b.close();
    }
    await waitFor(() => s.hl.connections === 0 || undefined);
  });

  it("fails a publish the departed leader never answered, and serves the next through the new one", { timeout: 10_000 }, async () => {
    const { proxy } = fx;
    const a = new Heartline(proxy.url);
    const b = new Heartline(proxy.url);
    try {
      await connected(a, "ws");
      await connected(b, "ws");
      // The request is on its way to the leader when it goes.
      const lost = b.publish("game:1", { x: 1 });
      a.close();
      await assert.rejects(lost, (e: unknown) => e instanceof HeartlineError && e.code === "disconnected");
      await connected(b, "ws");
      const res = await b.publish("game:1", { x: 2 });
      assert.equal(res.channel, "game:1");
    } finally {
      a.close();
      b.close();
    }
  });

  it("calls through the leader; a call the departed leader never answered rejects with disconnected, the next goes through the new one", { timeout: 10_000 }, async () => {
    const { proxy } = fx;
    const a = new Heartline(proxy.url);
    const b = new Heartline(proxy.url);
    try {
      await connected(a, "ws");
      await connected(b, "ws");
      assert.equal(await b.rpc("value", false), false);
      const lost = b.rpc("wait", { key: "leader-gone" });
      await app.held("leader-gone");
      a.close();
      await assert.rejects(lost, (e: unknown) => e instanceof HeartlineError && e.code === "disconnected");
      await app.open("leader-gone");
      // The new leader's client calls over HTTP until its WebSocket is open.
      assert.equal((await b.rpc<{ params: number }>("echo", 2)).params, 2);
      assert.equal(app.callsOf("wait", "leader-gone").length, 1, "not sent again through the new leader");
    } finally {
      a.close();
      b.close();
    }
  });
});
