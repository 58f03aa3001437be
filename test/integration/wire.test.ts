/**
 * Wire formats end to end: a stored message whose JSON spans several lines
 * (JSON allows line breaks as whitespace; a broker may hand back such text)
 * still arrives as one SSE event, one WebSocket message and one poll answer,
 * and the SSE stream goes on unbroken after it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Broker, ReadResult, StoredMessage } from "../../src/broker/broker.js";
import type { Position } from "../../src/cursor-layout.js";
import { MemoryBroker, systemClock } from "../../src/index.js";
import { getJson, publishHttp, startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";
import { isMessage, isPosition, SseStream } from "../helpers/sse.js";

/** Stored JSON pretty-printed over several lines, as another store might keep it. */
const multiline = (m: StoredMessage): StoredMessage => ({ ...m, json: JSON.stringify(JSON.parse(m.json), null, 2) });

/** A memory broker whose messages come back spread over several lines. */
class MultilineBroker implements Broker {
  private readonly inner = new MemoryBroker({ historySize: 100, historyTtl: 300, clock: systemClock });
  publish(channel: string, dataJson: string): Promise<StoredMessage> {
    return this.inner.publish(channel, dataJson).then(multiline);
  }
  async read(channel: string, since?: Position, limit?: number): Promise<ReadResult> {
    const r = await this.inner.read(channel, since, limit);
    return { ...r, messages: r.messages.map(multiline) };
  }
  readSync(channel: string, since?: Position, limit?: number): ReadResult {
    const r = this.inner.readSync(channel, since, limit);
    return { ...r, messages: r.messages.map(multiline) };
  }
  onMessage(listener: (message: StoredMessage) => void): void {
    this.inner.onMessage((m) => listener(multiline(m)));
  }
  isReady(): boolean {
    return this.inner.isReady();
  }
  sweep(now: number, inUse?: (channel: string) => boolean): void {
    this.inner.sweep(now, inUse);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe("wire formats with multi-line message JSON", () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({}, { broker: new MultilineBroker() });
  });
  after(() => s.close());

  it("SSE: each message is one event whose data is the message object, and the stream goes on", async () => {
    const stream = await SseStream.open(`${s.url}/sse?channel=ml:sse`);
    try {
      await stream.next(isPosition);
      await publishHttp(s, "ml:sse", { text: "a\nb", list: [1, 2] });
      await publishHttp(s, "ml:sse", 2);
      const first = await stream.next(isMessage);
      const second = await stream.next(isMessage);
      assert.deepEqual(JSON.parse(first.data!), { channel: "ml:sse", offset: 1, data: { text: "a\nb", list: [1, 2] } });
      assert.deepEqual(JSON.parse(second.data!), { channel: "ml:sse", offset: 2, data: 2 });
      assert.ok(first.id && second.id && first.id !== second.id, "each message carries its cursor");
      assert.match(first.raw, /^id: \S+\n(data: [^\n]*\n)+\n$/, "the id line, then only data: lines");
    } finally {
      stream.close();
    }
  });

  it("WebSocket and polls: the same message objects", async () => {
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=ml:ws`);
    try {
      await c.next((f) => f.type === "subscribed");
      await publishHttp(s, "ml:ws", { x: [1, { y: "z" }] });
      const m = await c.next((f) => f.type === "message");
      assert.deepEqual(m, { type: "message", channel: "ml:ws", offset: 1, data: { x: [1, { y: "z" }] } });
    } finally {
      c.close();
    }
    const first = await getJson(`${s.url}/poll?channel=ml:ws`);
    const cursor = first.body.cursor as string;
    await publishHttp(s, "ml:ws", "second");
    const r = await getJson(`${s.url}/poll?channel=ml:ws&cursor=${cursor}&timeout=0`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.messages, [{ channel: "ml:ws", offset: 2, data: "second" }]);
    await waitFor(() => s.hl.connections === 0 || undefined);
  });
});
