/**
 * Slow consumers (SPEC §3, §4): a subscriber that stops reading may queue at
 * most --send-buffer-bytes; past that it is dropped (WebSocket close 4008, SSE
 * stream cut), counted in heartline_slow_consumer_drops_total, and freed, so
 * the server's memory stays bounded, while fast subscribers of the same
 * channel keep receiving everything.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { get, type ClientRequest } from "node:http";
import { connect, type Socket } from "node:net";
import { describe, it } from "node:test";
import WebSocket from "ws";
import { ManualClock } from "../../src/index.js";
import { waitFor, withServer, type TestServer } from "../helpers/server.js";

const SEND_BUFFER = 64 * 1024;
const PAYLOAD = "x".repeat(8 * 1024);

/** A WebSocket subscriber that keeps only the offsets it received. */
class OffsetClient {
  readonly offsets: number[] = [];
  subscribed = false;
  closeCode: number | undefined;
  closeReason = "";
  readonly ws: WebSocket;
  readonly closed: Promise<void>;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on("error", () => {});
    this.ws.on("message", (data) => {
      const f = JSON.parse(data.toString()) as { type: string; offset?: number };
      if (f.type === "subscribed") this.subscribed = true;
      else if (f.type === "message") this.offsets.push(f.offset!);
    });
    this.closed = new Promise((resolve) =>
      this.ws.on("close", (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve();
      }),
    );
  }

  async ready(): Promise<this> {
    await waitFor(() => this.subscribed, 5000, "the subscribed frame");
    return this;
  }

  get last(): number {
    return this.offsets.length === 0 ? 0 : this.offsets[this.offsets.length - 1]!;
  }

  /** Stops reading from the socket: the kernel buffers fill, then the server's queue grows. */
  pause(): void {
    (this.ws as unknown as { _socket: Socket })._socket.pause();
  }

  resume(): void {
    (this.ws as unknown as { _socket: Socket })._socket.resume();
  }
}

/** An SSE subscriber reading the raw stream and keeping the offsets of its messages. */
function sseOffsets(url: string): { offsets: number[]; req: ClientRequest; open: Promise<void> } {
  const offsets: number[] = [];
  let buffer = "";
  let req!: ClientRequest;
  const open = new Promise<void>((resolve, reject) => {
    req = get(url, { agent: false }, (res) => {
      res.setEncoding("utf8");
      res.on("error", () => {});
      res.on("data", (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const lines = event.split("\n");
          if (lines.some((l) => l.startsWith("event:"))) continue;
          const data = lines.find((l) => l.startsWith("data: "));
          if (data) offsets.push((JSON.parse(data.slice(6)) as { offset: number }).offset);
        }
      });
      resolve();
    });
    req.on("error", reject);
  });
  return { offsets, req, open };
}

/** Publishes `count` large messages, letting the fast subscriber keep up (at most `slack` in flight). */
async function publishPaced(s: TestServer, channel: string, count: number, fastLast: () => number, slack = 4): Promise<void> {
  for (let i = 1; i <= count; i++) {
    await s.hl.publish(channel, PAYLOAD);
    const deadline = Date.now() + 5000;
    while (i - fastLast() > slack) {
      if (Date.now() > deadline) throw new Error(`the fast subscriber is stuck at ${fastLast()} of ${i}`);
      await new Promise((r) => setImmediate(r));
    }
  }
}

async function metric(s: TestServer, line: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const escaped = line.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const m = new RegExp("^" + escaped + " (\\S+)$", "m").exec(text);
  assert.ok(m, `metric ${line} is missing`);
  return Number(m[1]);
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("slow consumers", () => {
  // A manual clock keeps the server from cutting a dropped socket on its own, so the client can read the close frame.
  const s = withServer({ sendBufferBytes: SEND_BUFFER, historySize: 10 }, { clock: new ManualClock() });

  async function assertIdle(): Promise<void> {
    await waitFor(() => s.hl.connections === 0, 5000, "every connection to be released");
    assert.deepEqual({ ...s.hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
    assert.equal(s.hl.hub.totalSubscriptions, 0);
    assert.equal(s.hl.hub.totalWaiters, 0);
  }

  it("keeps memory bounded while 100 MB go through a consumer that stopped reading", async () => {
    const stuck = await new OffsetClient(`${s.wsUrl}/ws?channel=sc:mem`).ready();
    stuck.pause();
    const before = process.memoryUsage().rss;
    let peak = before;
    // 12,800 × 8 KiB = 100 MiB: unbounded buffering would grow by about that much, while the
    // garbage the collector has not returned yet stays at a few tens of MB whatever the volume.
    const count = 12_800;
    for (let i = 1; i <= count; i++) {
      await s.hl.publish("sc:mem", PAYLOAD);
      if (i % 20 === 0) {
        await new Promise((r) => setImmediate(r));
        peak = Math.max(peak, process.memoryUsage().rss);
      }
    }
    const volume = count * PAYLOAD.length;
    const growth = peak - before;
    assert.equal(s.hl.stats.slowConsumerDrops.ws, 1);
    assert.equal(s.hl.connections, 0);
    assert.ok(growth < volume / 2, `rss grew by ${(growth / 1e6).toFixed(1)} MB while ${(volume / 1e6).toFixed(0)} MB were published`);
    stuck.ws.terminate();
    await stuck.closed;
    await assertIdle();
  });

  it("drops a WebSocket that stops reading with 4008 while a fast one on the same channel gets everything", async () => {
    const dropsBefore = s.hl.stats.slowConsumerDrops.ws;
    const metricBefore = await metric(s, 'heartline_slow_consumer_drops_total{transport="ws"}');
    const fast = await new OffsetClient(`${s.wsUrl}/ws?channel=sc:ws`).ready();
    const stuck = await new OffsetClient(`${s.wsUrl}/ws?channel=sc:ws`).ready();
    stuck.pause();
    assert.equal(s.hl.connectionsByTransport.ws, 2);

    await publishPaced(s, "sc:ws", 2000, () => fast.last);
    assert.equal(s.hl.stats.slowConsumerDrops.ws, dropsBefore + 1);
    assert.equal(await metric(s, 'heartline_slow_consumer_drops_total{transport="ws"}'), metricBefore + 1);
    // Freed at once: only the fast subscriber remains.
    assert.equal(s.hl.connections, 1);
    assert.equal(s.hl.hub.subscriberCount("sc:ws"), 1);
    assert.equal(await metric(s, 'heartline_connections{transport="ws"}'), 1);

    // Reading again, the slow client finds what was queued before the drop, then the close frame.
    stuck.resume();
    await stuck.closed;
    assert.equal(stuck.closeCode, 4008);
    assert.equal(stuck.closeReason, "slow consumer");
    assert.ok(stuck.offsets.length > 0 && stuck.offsets.length < 2000, `the slow client got ${stuck.offsets.length} messages`);
    assert.deepEqual(stuck.offsets, range(stuck.offsets.length), "what it got is in order, without a gap");

    await waitFor(() => fast.offsets.length === 2000, 5000, "the fast subscriber's 2,000 messages");
    assert.deepEqual(fast.offsets, range(2000));
    assert.equal(fast.ws.readyState, WebSocket.OPEN);
    fast.ws.close();
    await fast.closed;
    await assertIdle();
  });

  it("cuts an SSE stream whose reader stopped while a fast SSE reader gets everything", async () => {
    const dropsBefore = s.hl.stats.slowConsumerDrops.sse;
    const fast = sseOffsets(`${s.url}/sse?channel=sc:sse`);
    await fast.open;
    // A raw socket that sends the request and never reads the answer.
    const raw = connect(s.port, "127.0.0.1");
    raw.on("error", () => {});
    await once(raw, "connect");
    raw.write(`GET /sse?channel=sc:sse HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nAccept: text/event-stream\r\n\r\n`);
    await waitFor(() => s.hl.connectionsByTransport.sse === 2 && s.hl.hub.subscriberCount("sc:sse") === 2, 5000, "both SSE streams");
    const rawClosed = once(raw, "close");

    await publishPaced(s, "sc:sse", 2000, () => (fast.offsets.length === 0 ? 0 : fast.offsets[fast.offsets.length - 1]!));
    assert.equal(s.hl.stats.slowConsumerDrops.sse, dropsBefore + 1);
    assert.equal(await metric(s, 'heartline_slow_consumer_drops_total{transport="sse"}'), dropsBefore + 1);
    assert.equal(s.hl.connections, 1);
    assert.equal(s.hl.connectionsByTransport.sse, 1);
    assert.equal(s.hl.hub.subscriberCount("sc:sse"), 1);

    // The server cut the socket: reading it again ends in a close.
    raw.resume();
    await rawClosed;

    await waitFor(() => fast.offsets.length === 2000, 5000, "the fast reader's 2,000 messages");
    assert.deepEqual(fast.offsets, range(2000));
    fast.req.destroy();
    await assertIdle();
  });
});
