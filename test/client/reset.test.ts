/**
 * Loss is announced, never silent: a position gone from history surfaces as a
 * reset on every transport; and whatever a server or a transport hands over
 * twice or out of order never reaches a handler.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { waitFor } from "../helpers/server.js";
import { client, connected, dropConnection, Recorder, onServer, publishMany, scriptedWsServer, serverBehindProxy } from "./helpers.js";

const TRANSPORTS = ["ws", "sse", "poll"] as const;
const FAST = { backoffBase: 0.02, backoffMax: 0.1 };

describe("Heartline client: resets", () => {
  const fx = serverBehindProxy({ historySize: 3 });

  for (const t of TRANSPORTS) {
    it(`${t}: a position trimmed from history is surfaced to sub.on("reset"), then delivery goes on live`, async () => {
      const channel = `reset:${t}`;
      const hl = client(fx.proxy.url, { transports: [t], ...FAST });
      const r = new Recorder();
      const sub = r.subscribe(hl, channel);
      try {
        await connected(hl, t);
        await onServer(fx.s, channel, t);
        await publishMany(fx.s, channel, 1, 2);
        await r.until(2);
        await dropConnection(fx.proxy, hl, []);
        await publishMany(fx.s, channel, 3, 10); // history keeps 8..10 only
        fx.proxy.unblock();
        await waitFor(() => r.resets.length > 0 || undefined, 5000, "a reset");
        const epoch = sub.position?.epoch;
        assert.equal(typeof epoch, "string");
        assert.deepEqual(r.resets, [{ channel, epoch, offset: 10 }]);
        await connected(hl, t);
        await onServer(fx.s, channel, t);
        await publishMany(fx.s, channel, 11, 11);
        await r.until(3);
        assert.deepEqual(r.offsets(), [1, 2, 11]);
        assert.deepEqual(sub.position, { epoch, offset: 11 });
      } finally {
        hl.close();
      }
    });
  }
});

describe("Heartline client: last line of defence", () => {
  const fx = scriptedWsServer((ws) => {
    const send = (f: object): void => ws.send(JSON.stringify(f));
    send({ type: "subscribed", channel: "dup", epoch: "E1", offset: 0, recovered: false });
    for (const offset of [1, 2, 2, 1, 3, 3, 5, 4, 6]) send({ type: "message", channel: "dup", offset, data: offset });
    send({ type: "reset", channel: "dup", epoch: "E2", offset: 0 });
    send({ type: "reset", channel: "dup", epoch: "E2", offset: 0 });
    for (const offset of [1, 1, 2]) send({ type: "message", channel: "dup", offset, data: `E2.${offset}` });
    send({ type: "ping" });
  });

  it("drops duplicate and out-of-order offsets, announces one reset once, answers pings", async () => {
    const hl = client(fx.url, { transports: ["ws"] });
    const r = new Recorder();
    const sub = r.subscribe(hl, "dup");
    try {
      await r.until(7);
      await waitFor(() => fx.frames.includes('{"type":"pong"}') || undefined, 2000, "a pong");
      assert.deepEqual(r.messages.map((m) => m.data), [1, 2, 3, 5, 6, "E2.1", "E2.2"]);
      assert.deepEqual(r.resets, [{ channel: "dup", epoch: "E2", offset: 0 }]);
      assert.deepEqual(sub.position, { epoch: "E2", offset: 2 });
      assert.deepEqual(JSON.parse(fx.frames[0]!), { type: "subscribe", channel: "dup" });
    } finally {
      hl.close();
    }
  });
});
