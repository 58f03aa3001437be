import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock, type Heartline } from "../../src/index.js";
import { channelKey } from "../../src/hub/cursor.js";
import { getJson, waitFor, withServer, WsClient, type Frame, type TestServer } from "../helpers/server.js";
import { SseStream } from "../helpers/sse.js";

/** The next SSE event that carries data (a message or a reset), with its data parsed. */
async function nextData(sse: SseStream): Promise<{ event: string | undefined; data: any; id: string | undefined }> {
  const e = await sse.next((e) => e.data !== undefined && e.event !== "position");
  return { event: e.event, data: JSON.parse(e.data!), id: e.id };
}

async function assertIdle(hl: Heartline): Promise<void> {
  await waitFor(() => hl.connections === 0 && hl.hub.totalSubscriptions === 0 && hl.hub.totalWaiters === 0, 5000, "connections to close");
  assert.deepEqual({ ...hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
}

const cursorAt = (channel: string, epoch: string, offset: number) => `1~${channelKey(channel)}.${epoch}.${offset}`;

async function channelInfo(s: TestServer, channel: string): Promise<{ epoch: string; offset: number }> {
  const r = await getJson(`${s.url}/api/channels/${channel}`);
  assert.equal(r.status, 200);
  return r.body;
}

/** Frames of `channel` other than subscribed/ping, in arrival order. */
const streamOf = (ws: WsClient, channel: string) =>
  ws.frames.filter((f: Frame) => (f.type === "message" || f.type === "reset") && f.channel === channel);

/**
 * "Never silent loss": every offset up to `latest` of the final epoch was
 * either delivered or lies at or below an announced reset of that epoch.
 */
function assertNoSilentLoss(events: Array<{ kind: "reset" | "message"; epoch?: string; offset: number }>, epoch: string, latest: number): void {
  let covered = -1;
  const delivered = new Set<number>();
  for (const e of events) {
    if (e.kind === "reset" && e.epoch === epoch) {
      covered = e.offset;
      delivered.clear();
    } else if (e.kind === "message" && covered >= 0) delivered.add(e.offset);
  }
  assert.ok(covered >= 0, "the epoch change was announced");
  for (let o = covered + 1; o <= latest; o++) assert.ok(delivered.has(o), `offset ${o} was delivered after the reset`);
}

describe("history", () => {
  describe("trimmed by historySize", () => {
    const s = withServer({ historySize: 3 });

    it("answers a trimmed position with a reset on every transport, then delivers what follows", async () => {
      const ch = "trim:all";
      await s.hl.publish(ch, 1);
      const old = (await getJson(`${s.url}/poll?channel=${ch}`)).body.cursor as string;
      for (let i = 2; i <= 10; i++) await s.hl.publish(ch, i);
      const { epoch } = await channelInfo(s, ch);

      const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=${ch}&cursor=${old}`);
      const wsFrame = await WsClient.connect(`${s.wsUrl}/ws`);
      wsFrame.send({ type: "subscribe", channel: ch, since: { epoch, offset: 1 } });
      const sse = await SseStream.open(`${s.url}/sse?channel=${ch}`, { "Last-Event-ID": old });
      try {
        for (const c of [ws, wsFrame]) {
          assert.deepEqual(await c.next((f) => f.type === "subscribed"), { type: "subscribed", channel: ch, epoch, offset: 10, recovered: false });
          assert.deepEqual(await c.next((f) => f.type === "reset"), { type: "reset", channel: ch, epoch, offset: 10 });
        }
        const sseReset = await nextData(sse);
        assert.equal(sseReset.event, "reset");
        assert.deepEqual(sseReset.data, { channel: ch, epoch, offset: 10 });

        const polled = (await getJson(`${s.url}/poll?channel=${ch}&cursor=${old}`)).body;
        assert.deepEqual(polled.messages, []);
        assert.deepEqual(polled.resets, [{ channel: ch, epoch, offset: 10 }]);

        await s.hl.publish(ch, 11);
        const expected = { channel: ch, offset: 11, data: 11 };
        for (const c of [ws, wsFrame]) {
          assert.deepEqual(await c.next((f) => f.type === "message"), { type: "message", ...expected });
          assert.deepEqual(streamOf(c, ch).map((f) => f.type), ["reset", "message"], "nothing older than the reset");
        }
        const sseMsg = await nextData(sse);
        assert.equal(sseMsg.event, undefined);
        assert.deepEqual(sseMsg.data, expected);
        const next = (await getJson(`${s.url}/poll?channel=${ch}&cursor=${polled.cursor}`)).body;
        assert.deepEqual(next.messages, [expected]);
        assert.deepEqual(next.resets, []);
      } finally {
        ws.close();
        wsFrame.close();
        sse.close();
      }
      await assertIdle(s.hl);
    });

    it("replays without a reset a position still in history, and resets one just before it", async () => {
      const ch = "trim:edge";
      for (let i = 1; i <= 10; i++) await s.hl.publish(ch, i);
      const { epoch } = await channelInfo(s, ch);
      // History holds 8, 9, 10: from 7 everything is there, from 6 message 7 is gone.
      const kept = [8, 9, 10].map((o) => ({ channel: ch, offset: o, data: o }));

      const ws = await WsClient.connect(`${s.wsUrl}/ws`);
      ws.send({ type: "subscribe", channel: ch, since: { epoch, offset: 7 } });
      assert.equal((await ws.next((f) => f.type === "subscribed")).recovered, true);
      for (const m of kept) assert.deepEqual(await ws.next((f) => f.type === "message"), { type: "message", ...m });
      ws.send({ type: "subscribe", channel: ch, since: { epoch, offset: 6 } });
      assert.equal((await ws.next((f) => f.type === "subscribed")).recovered, false);
      assert.deepEqual(await ws.next((f) => f.type === "reset"), { type: "reset", channel: ch, epoch, offset: 10 });
      assert.equal(ws.messages(ch).length, 3);

      const sse7 = await SseStream.open(`${s.url}/sse?channel=${ch}&lastEventId=${cursorAt(ch, epoch, 7)}`);
      const sse6 = await SseStream.open(`${s.url}/sse?channel=${ch}&lastEventId=${cursorAt(ch, epoch, 6)}`);
      try {
        for (const m of kept) assert.deepEqual((await nextData(sse7)).data, m);
        const r = await nextData(sse6);
        assert.equal(r.event, "reset");
        assert.deepEqual(r.data, { channel: ch, epoch, offset: 10 });
      } finally {
        sse7.close();
        sse6.close();
        ws.close();
      }
      assert.ok(!sse7.events.some((e) => e.event === "reset"));

      const p7 = (await getJson(`${s.url}/poll?channel=${ch}&cursor=${cursorAt(ch, epoch, 7)}`)).body;
      assert.deepEqual(p7, { messages: kept, cursor: cursorAt(ch, epoch, 10), resets: [], presence: [] });
      const p6 = (await getJson(`${s.url}/poll?channel=${ch}&cursor=${cursorAt(ch, epoch, 6)}`)).body;
      assert.deepEqual(p6, { messages: [], cursor: cursorAt(ch, epoch, 10), resets: [{ channel: ch, epoch, offset: 10 }], presence: [] });
      await assertIdle(s.hl);
    });
  });

  describe("expired by historyTtl", () => {
    const clock = new ManualClock();
    const s = withServer({ historyTtl: 1 }, { clock });

    it("gives the channel a new epoch once its history expired, announced to live subscribers before the next message", async () => {
      const ch = "exp:live";
      const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=${ch}`);
      const sub = await ws.next((f) => f.type === "subscribed");
      const sse = await SseStream.open(`${s.url}/sse?channel=${ch}`);
      await waitFor(() => s.hl.hub.subscriberCount(ch) === 2);
      const first = await s.hl.publish(ch, "old");
      assert.equal(first.epoch, sub.epoch);
      await ws.next((f) => f.type === "message");
      assert.deepEqual((await nextData(sse)).data, { channel: ch, offset: 1, data: "old" });
      const { cursor } = (await getJson(`${s.url}/poll?channel=${ch}`)).body;
      const held = getJson(`${s.url}/poll?channel=${ch}&cursor=${cursor}`);
      await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");

      try {
        clock.advance(2000); // past historyTtl with no message: the history expires
        const next = await s.hl.publish(ch, "new");
        assert.notEqual(next.epoch, first.epoch, "a new epoch after expiry");
        assert.equal(next.offset, 1);

        const reset = await ws.next((f) => f.type === "reset");
        assert.deepEqual(reset, { type: "reset", channel: ch, epoch: next.epoch, offset: 0 });
        const msg = await ws.next((f) => f.type === "message");
        assert.deepEqual(msg, { type: "message", channel: ch, offset: 1, data: "new" });
        assert.deepEqual(streamOf(ws, ch).map((f) => f.type), ["message", "reset", "message"]);

        const sseReset = await nextData(sse);
        assert.equal(sseReset.event, "reset");
        assert.deepEqual(sseReset.data, { channel: ch, epoch: next.epoch, offset: 0 });
        const sseMsg = await nextData(sse);
        assert.equal(sseMsg.event, undefined);
        assert.deepEqual(sseMsg.data, { channel: ch, offset: 1, data: "new" });

        const polled = await held;
        assert.equal(polled.status, 200);
        assert.equal(polled.body.resets.length, 1);
        assert.equal(polled.body.resets[0].channel, ch);
        assert.equal(polled.body.resets[0].epoch, next.epoch);
        assertNoSilentLoss(
          [
            ...polled.body.resets.map((r: any) => ({ kind: "reset" as const, ...r })),
            ...polled.body.messages.map((m: any) => ({ kind: "message" as const, ...m })),
          ],
          next.epoch,
          1,
        );
      } finally {
        ws.close();
        sse.close();
      }
      await assertIdle(s.hl);
    });

    it("answers a cursor from the expired epoch with a reset on every transport, then delivers what follows", async () => {
      const ch = "exp:resume";
      const first = await s.hl.publish(ch, "a");
      await s.hl.publish(ch, "b");
      const old = cursorAt(ch, first.epoch, 1);
      clock.advance(2000);
      const fresh = await s.hl.publish(ch, "c");
      assert.notEqual(fresh.epoch, first.epoch);
      assert.equal((await channelInfo(s, ch)).epoch, fresh.epoch);

      const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=${ch}&cursor=${old}`);
      const wsFrame = await WsClient.connect(`${s.wsUrl}/ws`);
      wsFrame.send({ type: "subscribe", channel: ch, since: { epoch: first.epoch, offset: 2 } });
      const sse = await SseStream.open(`${s.url}/sse?channel=${ch}`, { "Last-Event-ID": old });
      try {
        for (const c of [ws, wsFrame]) {
          assert.deepEqual(await c.next((f) => f.type === "subscribed"), {
            type: "subscribed",
            channel: ch,
            epoch: fresh.epoch,
            offset: 1,
            recovered: false,
          });
          assert.deepEqual(await c.next((f) => f.type === "reset"), { type: "reset", channel: ch, epoch: fresh.epoch, offset: 1 });
        }
        const sseReset = await nextData(sse);
        assert.equal(sseReset.event, "reset");
        assert.deepEqual(sseReset.data, { channel: ch, epoch: fresh.epoch, offset: 1 });
        const polled = (await getJson(`${s.url}/poll?channel=${ch}&cursor=${old}`)).body;
        assert.deepEqual(polled, { messages: [], cursor: cursorAt(ch, fresh.epoch, 1), resets: [{ channel: ch, epoch: fresh.epoch, offset: 1 }], presence: [] });

        await s.hl.publish(ch, "d");
        const expected = { channel: ch, offset: 2, data: "d" };
        for (const c of [ws, wsFrame]) {
          assert.deepEqual(await c.next((f) => f.type === "message"), { type: "message", ...expected });
          assert.deepEqual(streamOf(c, ch).map((f) => f.type), ["reset", "message"]);
        }
        assert.deepEqual((await nextData(sse)).data, expected);
        const next = (await getJson(`${s.url}/poll?channel=${ch}&cursor=${polled.cursor}`)).body;
        assert.deepEqual(next, { messages: [expected], cursor: cursorAt(ch, fresh.epoch, 2), resets: [], presence: [] });
      } finally {
        ws.close();
        wsFrame.close();
        sse.close();
      }
      await assertIdle(s.hl);
    });

    it("keeps history while messages keep coming within historyTtl", async () => {
      const ch = "exp:busy";
      const first = await s.hl.publish(ch, 1);
      for (let i = 2; i <= 4; i++) {
        clock.advance(750);
        const r = await s.hl.publish(ch, i);
        assert.equal(r.epoch, first.epoch, "each message renews the history");
      }
      const polled = (await getJson(`${s.url}/poll?channel=${ch}&cursor=${cursorAt(ch, first.epoch, 0)}`)).body;
      assert.deepEqual(polled.resets, []);
      assert.deepEqual(polled.messages.map((m: any) => m.data), [1, 2, 3, 4]);
      await assertIdle(s.hl);
    });
  });
});
