/**
 * The client resumes every subscription from its last position on whatever
 * transport it lands on: handlers see every offset once, in order, across cut
 * connections and changes of transport.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getJson, waitFor } from "../helpers/server.js";
import { client, connected, dropConnection, Recorder, onServer, publishMany, serverBehindProxy } from "./helpers.js";

const TRANSPORTS = ["ws", "sse", "poll"] as const;
const FAST = { backoffBase: 0.02, backoffMax: 0.1 };


const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, k) => from + k);


describe("Heartline client: resume", () => {
  const fx = serverBehindProxy({ historySize: 100 });

  for (const t of TRANSPORTS) {
    it(`${t}: handlers see every offset once, in order, across three cut connections`, async () => {
      const channel = `resume:${t}`;
      const hl = client(fx.proxy.url, { transports: [t], ...FAST });
      const r = new Recorder();
      const sub = r.subscribe(hl, channel);
      try {
        await connected(hl, t);
        await onServer(fx.s, channel, t);
        await publishMany(fx.s, channel, 1, 3);
        await r.until(3);
        let last = 3;
        for (let round = 0; round < 3; round++) {
          await dropConnection(fx.proxy, hl, []);
          await publishMany(fx.s, channel, last + 1, last + 4); // published while the client is away
          fx.proxy.unblock();
          await connected(hl, t);
          await publishMany(fx.s, channel, last + 5, last + 6);
          last += 6;
          await r.until(last);
        }
        await new Promise((res) => setTimeout(res, 50));
        assert.deepEqual(r.offsets(), range(1, last));
        assert.deepEqual(r.messages.map((m) => (m.data as { i: number }).i), range(1, last));
        assert.deepEqual(r.resets, []);
        assert.equal(sub.position?.offset, last);
      } finally {
        hl.close();
      }
      await waitFor(() => (fx.s.hl.connections === 0 && fx.s.hl.hub.totalSubscriptions === 0 && fx.s.hl.hub.totalWaiters === 0) || undefined);
    });
  }

  for (const t of TRANSPORTS) {
    it(`${t}: subscribe(channel, handler, since) replays after a kept position, and a foreign epoch is a reset`, async () => {
      const channel = `since:${t}`;
      await publishMany(fx.s, channel, 1, 4);
      const { body: info } = await getJson(`${fx.s.url}/api/channels/${channel}`);
      const hl = client(fx.proxy.url, { transports: [t], ...FAST });
      const r = new Recorder();
      const other = new Recorder();
      const sub = hl.subscribe(channel, r.handler, { epoch: info.epoch, offset: 2 });
      other.subscribe(hl, `${channel}:b`, { epoch: "OLDEPOCH", offset: 7 });
      try {
        await r.until(2);
        assert.deepEqual(r.offsets(), [3, 4]);
        await waitFor(() => other.resets.length === 1 || undefined);
        assert.equal(other.resets[0]!.channel, `${channel}:b`);
        assert.notEqual(other.resets[0]!.epoch, "OLDEPOCH");
        await onServer(fx.s, channel, t);
        await publishMany(fx.s, channel, 5, 5);
        await r.until(3);
        assert.deepEqual(r.offsets(), [3, 4, 5]);
        assert.deepEqual(sub.position, { epoch: info.epoch, offset: 5 });
      } finally {
        hl.close();
      }
    });
  }

  it("sse: a stream cut before its first message still resumes from where it started", async () => {
    const channel = "resume:quiet-sse";
    const hl = client(fx.proxy.url, { transports: ["sse"], ...FAST });
    const r = new Recorder();
    hl.subscribe(channel, r.handler);
    try {
      await connected(hl, "sse");
      await onServer(fx.s, channel, "sse");
      await dropConnection(fx.proxy, hl, []);
      await publishMany(fx.s, channel, 1, 2);
      fx.proxy.unblock();
      await r.until(2);
      assert.deepEqual(r.offsets(), [1, 2]);
    } finally {
      hl.close();
    }
  });

  it("carries positions across transports: ws → sse → poll → back to ws, every offset once", async () => {
    const channels = ["move:a", "move:b"];
    const hl = client(fx.proxy.url, { ...FAST, upgradeAfter: 0.2 });
    const rec = new Map(channels.map((c) => [c, new Recorder()]));
    for (const c of channels) rec.get(c)!.subscribe(hl, c);
    const seen: string[] = [];
    hl.on("transport", (t) => seen.push(t));
    let last = 0;
    const step = async (n: number): Promise<void> => {
      for (const c of channels) await publishMany(fx.s, c, last + 1, last + n);
      last += n;
      for (const c of channels) await rec.get(c)!.until(last);
    };
    try {
      await connected(hl, "ws");
      await onServer(fx.s, "move:b", "ws");
      await step(2);
      // WebSocket refused from now on: the client lands on SSE and resumes there.
      await dropConnection(fx.proxy, hl, ["/ws"]);
      for (const c of channels) await publishMany(fx.s, c, last + 1, last + 2);
      last += 2;
      await connected(hl, "sse");
      for (const c of channels) await rec.get(c)!.until(last);
      // SSE refused too: long polling, resumed from the SSE cursor.
      await dropConnection(fx.proxy, hl, ["/sse"]);
      for (const c of channels) await publishMany(fx.s, c, last + 1, last + 2);
      last += 2;
      await connected(hl, "poll");
      for (const c of channels) await rec.get(c)!.until(last);
      await step(1);
      // WebSocket works again: the client switches back by itself, without a disconnect.
      fx.proxy.unblock();
      const states: string[] = [];
      hl.on("state", ({ to }) => states.push(to));
      await connected(hl, "ws", 8000);
      assert.deepEqual(states, []);
      await step(2);
      await new Promise((res) => setTimeout(res, 50));
      for (const c of channels) {
        assert.deepEqual(rec.get(c)!.offsets(), range(1, last), c);
        assert.deepEqual(rec.get(c)!.resets, [], c);
      }
      assert.deepEqual(seen, ["ws", "sse", "poll", "ws"]);
    } finally {
      hl.close();
    }
    await waitFor(() => (fx.s.hl.connections === 0 && fx.s.hl.hub.totalSubscriptions === 0 && fx.s.hl.hub.totalWaiters === 0) || undefined);
  });
});
