/**
 * Drain and publishes under way: a publish that started before the drain is
 * stored and answered before connections (and the broker) close; one whose
 * body never completes is cut at --drain-timeout and never stored.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { MemoryBroker, systemClock, type StoredMessage } from "../../src/index.js";
import { RedisServer, redisSkip } from "../helpers/redis.js";
import { getJson, startServer, waitFor, withServer, WsClient, type TestServer } from "../helpers/server.js";

const API_KEY = "drain-test-key";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw POST /api/publish whose body is sent in two parts; records the answer and the close. */
class SplitPublish {
  text = "";
  closed = false;
  private rest = "";
  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => (this.text += d));
    socket.on("close", () => (this.closed = true));
    socket.on("error", () => {});
  }

  /** Sends the headers and the first half of the body. */
  static async start(port: number, channel: string, data: unknown): Promise<SplitPublish> {
    const s = connect(port, "127.0.0.1");
    await once(s, "connect");
    const p = new SplitPublish(s);
    const body = JSON.stringify({ channel, data });
    const half = Math.floor(body.length / 2);
    s.write(
      `POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${API_KEY}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n` +
        body.slice(0, half),
    );
    p.rest = body.slice(half);
    // The server must be reading the body (route entered) before the drain starts.
    await sleep(100);
    return p;
  }

  finish(): void {
    this.socket.write(this.rest);
  }

  /** The status line's code, once the answer has arrived. */
  get status(): number | undefined {
    const m = /^HTTP\/1\.1 (\d{3})/.exec(this.text);
    return m ? Number(m[1]) : undefined;
  }

  get body(): any {
    const i = this.text.indexOf("\r\n\r\n");
    return i < 0 ? undefined : JSON.parse(this.text.slice(i + 4));
  }
}

async function halfSentPublishIsAnswered(s: TestServer, channel: string): Promise<{ offset: number }> {
  const p = await SplitPublish.start(s.port, channel, { n: 1 });
  const closed = s.hl.close(5);
  let drained = false;
  void closed.then(() => (drained = true));
  // Draining: new publishes are refused, the one under way is not.
  const refused = await s.hl.publish(channel, "late").then(
    () => undefined,
    (err: { code?: string }) => err.code,
  );
  assert.equal(refused, "shutting_down");
  p.finish();
  await waitFor(() => p.status !== undefined || p.closed, 5000, "an answer to the publish under way");
  assert.equal(p.status, 200, `the publish under way got no answer: ${JSON.stringify(p.text.slice(0, 200))}`);
  assert.equal(p.body.channel, channel);
  await closed;
  assert.ok(drained);
  return p.body;
}

describe("drain with publishes under way (memory broker)", () => {
  it("a publish whose body is half sent when the drain starts is stored and answered 200", async () => {
    const s = await startServer({ apiKey: API_KEY });
    const sub = await WsClient.connect(`${s.wsUrl}/ws?channel=news`);
    await sub.next((f) => f.type === "subscribed");
    const answer = await halfSentPublishIsAnswered(s, "news");
    assert.equal(answer.offset, 1);
    // The subscriber got the message before its 1012.
    await sub.closed;
    assert.equal(sub.closeCode, 1012);
    assert.deepEqual(sub.messages("news").map((m) => m.data), [{ n: 1 }]);
  });

  it("a publisher that never completes its body does not hold the drain past --drain-timeout", async () => {
    const s = await startServer({ apiKey: API_KEY });
    const p = await SplitPublish.start(s.port, "news", { n: 1 });
    const t0 = Date.now();
    await s.hl.close(1);
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 2500, `the drain took ${took} ms with a 1 s timeout`);
    await waitFor(() => p.closed, 2000, "the unfinished publish to be cut");
    assert.equal(p.status, undefined, "a publish without its whole body was answered");
  });
});

/** A memory broker whose stores wait until the test lets them finish: a store under way, held at will. */
class GatedBroker extends MemoryBroker {
  waiting = 0;
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }
  resume(): void {
    this.open?.();
    this.gate = undefined;
  }
  override async publish(channel: string, dataJson: string): Promise<StoredMessage> {
    if (this.gate) {
      this.waiting++;
      await this.gate;
    }
    return super.publish(channel, dataJson);
  }
}

describe("drain with a WebSocket publish being stored", () => {
  it("answers it with published before the close frame 1012", async () => {
    const broker = new GatedBroker({ historySize: 100, historyTtl: 300, clock: systemClock });
    const s = await startServer({ clientPublish: ["game:*"] }, { broker });
    const c = await WsClient.connect(`${s.wsUrl}/ws`);
    broker.hold();
    c.send({ type: "publish", channel: "game:1", data: "move", id: 1 });
    await waitFor(() => broker.waiting === 1, 5000, "the store to start");
    const closed = s.hl.close(5);
    broker.resume();
    await c.closed;
    assert.equal(c.closeCode, 1012);
    const acks = c.frames.filter((f) => f.type === "published");
    assert.equal(acks.length, 1, `frames before the close: ${JSON.stringify(c.frames)}`);
    assert.equal(acks[0]!.offset, 1);
    assert.equal((await broker.read("game:1")).offset, 1);
    await closed;
  });
});

describe("drain with publishes under way (Redis broker)", { skip: redisSkip }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  // The Redis URL exists only once the hook above ran: the options are read when the server starts.
  const reader = withServer(() => ({ redis: redis.url }));
  after(() => redis?.stop());

  it("a half-sent publish is acknowledged, never stored without its answer", async () => {
    for (let i = 0; i < 4; i++) {
      const channel = `orders:${i}`;
      const s = await startServer({ apiKey: API_KEY, redis: redis.url });
      const answer = await halfSentPublishIsAnswered(s, channel);
      const info = await getJson(`${reader.url}/api/channels/${channel}`);
      assert.equal(info.status, 200);
      // Stored exactly once, and the answer names that message.
      assert.equal(info.body.offset, 1);
      assert.equal(answer.offset, 1);
    }
  });
});
