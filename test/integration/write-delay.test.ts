/**
 * --write-delay-ms: on a busy server, what goes to a connection within the
 * delay after its last flush leaves in one write, in order, on WebSocket and
 * SSE; frames sent outside the batch keep their place.
 */
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { describe, it } from "node:test";
import { publishHttp, startServer, waitFor, withServer, type TestServer } from "../helpers/server.js";

/** A raw TCP client that keeps each chunk the kernel hands it, as latin1 text. */
class RawClient {
  readonly chunks: string[] = [];
  private constructor(readonly socket: Socket) {
    socket.on("data", (c: Buffer) => this.chunks.push(c.toString("latin1")));
    socket.on("error", () => {});
  }

  static async open(port: number, request: string): Promise<RawClient> {
    const socket = connect(port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const c = new RawClient(socket);
    socket.write(request);
    return c;
  }

  get text(): string {
    return this.chunks.join("");
  }

  /** The chunks in which `marker` occurs. */
  chunksWith(marker: string): number[] {
    return this.chunks.flatMap((c, i) => (c.includes(marker) ? [i] : []));
  }

  close(): void {
    this.socket.destroy();
  }
}

const wsRequest = (channel: string) =>
  `GET /ws?channel=${channel} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
const sseRequest = (channel: string) => `GET /sse?channel=${channel} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n`;

/** A client's masked text frame (a zero mask key: the payload goes as it is). */
function maskedText(text: string): Buffer {
  const payload = Buffer.from(text);
  assert.ok(payload.length < 126);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
}

const marker = (n: number) => `"n":${n}}`;

async function subscribeBoth(server: TestServer, channel: string): Promise<[RawClient, RawClient]> {
  const ws = await RawClient.open(server.port, wsRequest(channel));
  const sse = await RawClient.open(server.port, sseRequest(channel));
  await waitFor(() => ws.text.includes('"subscribed"') && sse.text.includes("event: position"), 5000, "both subscribed");
  return [ws, sse];
}

describe("--write-delay-ms", () => {
  const server = withServer({ writeDelayMs: 300 });

  it("sends what several publishes in a row bring, within the delay after a flush, in one write per connection and in order", async () => {
    const [ws, sse] = await subscribeBoth(server, "wd:1");
    try {
      assert.equal((await publishHttp(server, "wd:1", { n: 0 })).status, 200);
      await waitFor(() => ws.text.includes(marker(0)) && sse.text.includes(marker(0)), 5000, "the first message");
      // Each publish is answered before the next is sent: without the delay,
      // each message would leave in a write of its own.
      for (const n of [1, 2, 3]) assert.equal((await publishHttp(server, "wd:1", { n })).status, 200);
      await waitFor(() => ws.text.includes(marker(3)) && sse.text.includes(marker(3)), 5000, "the last message");
      for (const [name, c] of [["WebSocket", ws], ["SSE", sse]] as const) {
        const where = [1, 2, 3].map((n) => c.chunksWith(marker(n)));
        assert.deepEqual(where, [where[0], where[0], where[0]], `${name}: messages 1-3 arrive in one chunk (${JSON.stringify(where)})`);
        assert.equal(where[0]!.length, 1, `${name}: each message once`);
        const chunk = c.chunks[where[0]![0]!]!;
        assert.ok(chunk.indexOf(marker(1)) < chunk.indexOf(marker(2)) && chunk.indexOf(marker(2)) < chunk.indexOf(marker(3)), `${name}: in order`);
      }
    } finally {
      ws.close();
      sse.close();
    }
  });

  it("keeps a frame sent outside the batch (an error answer) after the messages held before it", async () => {
    const [ws, sse] = await subscribeBoth(server, "wd:2");
    try {
      assert.equal((await publishHttp(server, "wd:2", { n: 10 })).status, 200);
      await waitFor(() => ws.text.includes(marker(10)), 5000, "the first message");
      assert.equal((await publishHttp(server, "wd:2", { n: 11 })).status, 200);
      ws.socket.write(maskedText('{"type":"no-such-frame"}'));
      await waitFor(() => ws.text.includes('"type":"error"'), 5000, "the error frame");
      const text = ws.text;
      assert.ok(text.includes(marker(11)), "the held message was sent");
      assert.ok(text.indexOf(marker(11)) < text.indexOf('"type":"error"'), "the message held first leaves first");
    } finally {
      ws.close();
      sse.close();
    }
  });
});

describe("--write-delay-ms and a close from the server", () => {
  it("sends a message held for the next flush before the close frame of a drain", async () => {
    const server = await startServer({ writeDelayMs: 300 });
    const ws = await RawClient.open(server.port, wsRequest("wd:3"));
    try {
      await waitFor(() => ws.text.includes('"subscribed"'), 5000, "subscribed");
      assert.equal((await publishHttp(server, "wd:3", { n: 20 })).status, 200);
      await waitFor(() => ws.text.includes(marker(20)), 5000, "the first message");
      // Within the delay after that flush: held for the next one, which the drain comes before.
      assert.equal((await publishHttp(server, "wd:3", { n: 21 })).status, 200);
      const closing = server.hl.close(5);
      // A close frame (opcode 8, FIN) with the code 1012.
      const close = /\x88[\x02-\x7d]\x03\xf4/;
      await waitFor(() => close.test(ws.text), 5000, "the close frame");
      const text = ws.text;
      assert.ok(text.includes(marker(21)), "the held message was sent");
      assert.ok(text.indexOf(marker(21)) < text.search(close), "the message, then the close frame");
      ws.close();
      await closing;
    } finally {
      ws.close();
      await server.close();
    }
  });
});

/**
 * Publishes `{"n": n}` on a raw connection once `clients` have what they
 * were sent so far, and gives the order in which the clients got the
 * message and the publisher its answer. The test reads every socket in this
 * process: epoll hands them over in the order their bytes arrived, so the
 * order of the `data` events is the order of the server's writes.
 */
async function publishOrder(server: TestServer, clients: RawClient[], channel: string, n: number): Promise<string[]> {
  const publisher = connect(server.port, "127.0.0.1");
  await new Promise((r) => publisher.once("connect", r));
  // Past the write delay since the last flush: this turn's flush is not held.
  await new Promise((r) => setTimeout(r, 20));
  const order: string[] = [];
  clients.forEach((s, i) => s.socket.on("data", (c: Buffer) => c.toString("latin1").includes(marker(n)) && order.push(`client ${i}`)));
  publisher.on("data", (c: Buffer) => c.toString("latin1").startsWith("HTTP/1.1 200") && order.push("answer"));
  try {
    const body = JSON.stringify({ channel, data: { n } });
    publisher.write(`POST /api/publish HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await waitFor(() => order.length === clients.length + 1, 5000, "every client and the publisher");
    return order;
  } finally {
    publisher.destroy();
    for (const s of clients) s.close();
  }
}

describe("the answer to a publish", () => {
  const server = withServer();

  it("leaves after the message's writes to the subscribers of the same server", async () => {
    const channel = "answer-after-deliveries";
    const subscribers: RawClient[] = [];
    for (let i = 0; i < 8; i++) subscribers.push(await RawClient.open(server.port, i % 2 === 0 ? wsRequest(channel) : sseRequest(channel)));
    await waitFor(() => subscribers.every((s) => s.text.includes('"subscribed"') || s.text.includes("event: position")), 5000, "all subscribed");
    const order = await publishOrder(server, subscribers, channel, 1);
    assert.equal(order.at(-1), "answer", `the publisher is answered last: ${order.join(", ")}`);
  });

  it("leaves after the answers to the long polls the message wakes", async () => {
    const channel = "answer-after-polls";
    const first = (await (await fetch(`${server.url}/poll?channel=${channel}`)).json()) as { cursor: string };
    const pollers: RawClient[] = [];
    for (let i = 0; i < 8; i++) pollers.push(await RawClient.open(server.port, `GET /poll?channel=${channel}&cursor=${first.cursor} HTTP/1.1\r\nHost: t\r\n\r\n`));
    await waitFor(() => server.hl.hub.totalWaiters === pollers.length, 5000, "every poll held");
    const order = await publishOrder(server, pollers, channel, 2);
    assert.equal(order.at(-1), "answer", `the publisher is answered last: ${order.join(", ")}`);
  });
});
