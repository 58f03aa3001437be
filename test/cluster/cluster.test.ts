/**
 * Heartline nodes in one process, meeting through a private redis-server:
 * fan-out to every transport on every node, stateless polls across nodes,
 * resume on another node, and a Redis crash and restart.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Heartline } from "../../src/index.js";
import { getJson, publishHttp, startServer, waitFor, WsClient, type Frame, type TestServer } from "../helpers/server.js";
import { RedisServer, redisSkip } from "../helpers/redis.js";
import { isPosition, SseStream } from "../helpers/sse.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

interface Message {
  channel: string;
  offset: number;
  data: unknown;
}

const wsMessages = (c: WsClient, channel: string): Message[] => c.messages(channel) as unknown as Message[];

/** Long-polls `urls` in turn with one cursor until `want` messages arrived. */
async function pollUntil(urls: string[], channel: string, want: number, timeoutMs = 15_000): Promise<{ messages: Message[]; resets: unknown[] }> {
  const messages: Message[] = [];
  const resets: unknown[] = [];
  let cursor = (await getJson(`${urls[0]}/poll?channel=${channel}`)).body.cursor as string;
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; messages.length < want; i++) {
    if (Date.now() > deadline) throw new Error(`polled ${messages.length} of ${want} messages before the deadline`);
    const r = await getJson(`${urls[i % urls.length]}/poll?channel=${channel}&cursor=${cursor}&timeout=2`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    messages.push(...(r.body.messages as Message[]));
    resets.push(...(r.body.resets as unknown[]));
    cursor = r.body.cursor;
  }
  return { messages, resets };
}

async function startNodes(n: number, redisUrl: string): Promise<TestServer[]> {
  return Promise.all(range(1, n).map(() => startServer({ redis: redisUrl, historySize: 1000 })));
}

/** Every connection, subscription and waiter of a node is gone. */
async function assertIdle(hl: Heartline): Promise<void> {
  await waitFor(() => hl.connections === 0 && hl.hub.totalSubscriptions === 0 && hl.hub.totalWaiters === 0, 5000, "the node to be idle");
  assert.deepEqual({ ...hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
}

describe("cluster mode", { skip: redisSkip }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await RedisServer.start();
  });
  after(() => redis?.stop());

  for (const n of [2, 3]) {
    it(`with ${n} nodes, a message published on any node reaches WS, SSE and poll subscribers on every node, in order, once`, async () => {
      const nodes = await startNodes(n, redis.url);
      const channel = `fan${n}:room`;
      const ws: WsClient[] = [];
      const sse: SseStream[] = [];
      try {
        for (const node of nodes) {
          const c = await WsClient.connect(`${node.wsUrl}/ws?channel=${channel}`);
          await c.next((f) => f.type === "subscribed");
          ws.push(c);
          const s = await SseStream.open(`${node.url}/sse?channel=${channel}`);
          assert.equal(s.res.status, 200);
          await s.next(isPosition); // the setup: retry, then the position
          sse.push(s);
        }
        const total = 20;
        const polls = Promise.all(nodes.map((node) => pollUntil([node.url], channel, total)));
        await sleep(50);
        for (let i = 1; i <= total; i++) {
          const r = await publishHttp(nodes[i % n]!, channel, { i });
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.equal(r.body.offset, i);
        }
        const expected = range(1, total).map((i) => ({ channel, offset: i, data: { i } }));
        for (const [k, c] of ws.entries()) {
          await waitFor(() => wsMessages(c, channel).length >= total, 5000, `WS messages on node ${k}`);
        }
        for (const [k, s] of sse.entries()) await waitFor(() => s.messages().length >= total, 5000, `SSE messages on node ${k}`);
        const polled = await polls;
        await sleep(50);
        for (const [k, c] of ws.entries()) {
          assert.deepEqual(
            wsMessages(c, channel).map(({ channel, offset, data }) => ({ channel, offset, data })),
            expected,
            `WS on node ${k}`,
          );
          assert.equal(c.frames.filter((f) => f.type === "reset" || f.type === "error").length, 0);
        }
        for (const [k, s] of sse.entries()) {
          assert.deepEqual(s.messages(), expected, `SSE on node ${k}`);
          assert.deepEqual(s.named("reset"), []);
        }
        for (const [k, p] of polled.entries()) {
          assert.deepEqual(p.messages, expected, `polls on node ${k}`);
          assert.deepEqual(p.resets, []);
        }
      } finally {
        for (const c of ws) c.close();
        for (const s of sse) s.close();
      }
      for (const node of nodes) await assertIdle(node.hl);
      await Promise.all(nodes.map((node) => node.close()));
    });
  }

  it("long polls that alternate across nodes with one cursor get every message exactly once", async () => {
    const nodes = await startNodes(3, redis.url);
    const channel = "alt:feed";
    const total = 40;
    try {
      const polling = pollUntil(
        nodes.map((node) => node.url),
        channel,
        total,
      );
      await sleep(30);
      for (let i = 1; i <= total; i++) {
        const r = await publishHttp(nodes[(i * 7) % 3]!, channel, i);
        assert.equal(r.status, 200);
        if (i % 5 === 0) await sleep(5);
      }
      const { messages, resets } = await polling;
      assert.deepEqual(
        messages.map((m) => m.offset),
        range(1, total),
      );
      assert.deepEqual(
        messages.map((m) => m.data),
        range(1, total),
      );
      assert.deepEqual(resets, []);
      for (const node of nodes) await assertIdle(node.hl);
    } finally {
      await Promise.all(nodes.map((node) => node.close()));
    }
  });

  for (const mode of ["closes", "dies"] as const)
  it(`when a node ${mode} mid-stream, its WebSocket client resumes on another node from its position: no loss, no duplicate`, async () => {
    const nodes = await startNodes(3, redis.url);
    const [a, b, c] = nodes as [TestServer, TestServer, TestServer];
    const channel = `resume:${mode}`;
    const total = 60;
    let second: WsClient | undefined;
    try {
      const first = await WsClient.connect(`${a.wsUrl}/ws?channel=${channel}`);
      const subscribed = await first.next((f) => f.type === "subscribed");
      let published = 0;
      const publishing = (async () => {
        for (let i = 1; i <= total; i++) {
          const r = await publishHttp(i % 2 ? b : c, channel, i);
          assert.equal(r.status, 200);
          published = i;
          await sleep(2);
        }
      })();
      await waitFor(() => wsMessages(first, channel).length >= 15, 5000, "15 messages on the first node");
      const publishedAtClose = published;
      if (mode === "closes") {
        await a.close();
        await first.closed;
        assert.equal(first.closeCode, 1012, "told to reconnect elsewhere");
        assert.equal(a.hl.connections, 0);
      } else {
        // A crash as the client sees it: the TCP connection is cut with no close frame.
        const live = (a.hl as unknown as { ctx: { registry: { live: Set<{ terminate(): void }> } } }).ctx.registry.live;
        for (const conn of [...live]) conn.terminate();
        await first.closed;
        assert.equal(first.closeCode, 1006, "cut without a close frame");
      }
      assert.ok(publishedAtClose < total, "the node closed while messages were still being published");
      const before = wsMessages(first, channel);
      const last = before[before.length - 1]!.offset;
      second = await WsClient.connect(`${b.wsUrl}/ws`);
      second.send({ type: "subscribe", channel, since: { epoch: subscribed.epoch, offset: last } });
      const resumed = await second.next((f) => f.type === "subscribed");
      assert.equal(resumed.recovered, true);
      assert.equal(resumed.epoch, subscribed.epoch);
      await publishing;
      await waitFor(() => before.length + wsMessages(second!, channel).length >= total, 5000, "every message across both nodes");
      await sleep(50);
      const all = [...before, ...wsMessages(second, channel)];
      assert.deepEqual(
        all.map((m) => m.offset),
        range(1, total),
      );
      assert.deepEqual(
        all.map((m) => m.data),
        range(1, total),
      );
      assert.equal(second.frames.filter((f: Frame) => f.type === "reset").length, 0);
      second.close();
      await second.closed;
      for (const node of [b, c]) await assertIdle(node.hl);
    } finally {
      second?.close();
      await Promise.all(nodes.map((node) => node.close()));
    }
  });

  describe("Redis killed and restarted without its data", () => {
    let own: RedisServer;
    before(async () => {
      own = await RedisServer.start();
    });
    after(() => own?.stop());

    it("answers 503 meanwhile, keeps subscribers connected, and resumes fan-out in a new epoch with a reset, without restarting nodes", async () => {
      const nodes = await startNodes(2, own.url);
      const channel = "outage:live";
      const clients: WsClient[] = [];
      const streams: SseStream[] = [];
      try {
        for (const node of nodes) {
          const c = await WsClient.connect(`${node.wsUrl}/ws?channel=${channel}`);
          await c.next((f) => f.type === "subscribed");
          clients.push(c);
          const s = await SseStream.open(`${node.url}/sse?channel=${channel}`);
          await s.next(isPosition); // the setup: retry, then the position
          streams.push(s);
        }
        const oldCursor = (await getJson(`${nodes[0]!.url}/poll?channel=${channel}`)).body.cursor as string;

        // Before the crash: 10 acknowledged messages, delivered everywhere.
        const acked: Array<{ epoch: string; offset: number }> = [];
        for (let i = 1; i <= 10; i++) {
          const r = await publishHttp(nodes[i % 2]!, channel, { before: i });
          assert.equal(r.status, 200);
          acked.push(r.body);
        }
        const oldEpoch = acked[0]!.epoch;
        for (const c of clients) await waitFor(() => wsMessages(c, channel).length === 10, 5000, "10 WS messages");
        for (const s of streams) await waitFor(() => s.messages().length === 10, 5000, "10 SSE messages");

        await own.kill();
        for (const node of nodes) {
          const ready = await waitFor(async () => {
            const r = await getJson(`${node.url}/readyz`);
            return r.status === 503 ? r : undefined;
          }, 5000, "/readyz 503");
          assert.equal(ready.body.error.code, "broker_unavailable");
        }
        for (const node of nodes) {
          const r = await publishHttp(node, channel, { during: true });
          assert.equal(r.status, 503);
          assert.equal(r.body.error.code, "broker_unavailable");
          assert.equal(r.headers.get("retry-after"), "1");
        }
        // A new SSE stream is answered 200 with retry: and ended, never left hanging.
        const late = await SseStream.open(`${nodes[0]!.url}/sse?channel=${channel}`);
        assert.equal(late.res.status, 200);
        await Promise.race([late.ended, sleep(5000)]);
        assert.equal(late.finished, true, "the stream was ended");
        assert.match(late.text, /^retry: \d+\n\n/);
        assert.deepEqual(
          late.named("error").map((e) => (e as { code: string }).code),
          ["broker_unavailable"],
        );
        const poll = await getJson(`${nodes[1]!.url}/poll?channel=${channel}&cursor=${oldCursor}&timeout=0`);
        assert.equal(poll.status, 503);
        assert.equal(poll.body.error.code, "broker_unavailable");
        // Subscribers stay connected through the outage.
        for (const c of clients) assert.equal(c.closeCode, undefined);
        for (const s of streams) assert.equal(s.finished, false);

        await own.restart();
        for (const node of nodes) {
          await waitFor(async () => (await getJson(`${node.url}/readyz`)).status === 200, 10_000, "/readyz 200 again");
        }
        const after: Array<{ epoch: string; offset: number }> = [];
        for (let i = 1; i <= 10; i++) {
          const r = await publishHttp(nodes[i % 2]!, channel, { after: i });
          assert.equal(r.status, 200, JSON.stringify(r.body));
          after.push(r.body);
        }
        const newEpoch = after[0]!.epoch;
        assert.notEqual(newEpoch, oldEpoch, "Redis lost the data: a new epoch");
        assert.deepEqual(
          after.map((r) => [r.epoch, r.offset]),
          range(1, 10).map((i) => [newEpoch, i]),
        );

        const expected = [
          ...range(1, 10).map((i) => ({ channel, offset: i, data: { before: i } })),
          ...range(1, 10).map((i) => ({ channel, offset: i, data: { after: i } })),
        ];
        for (const [k, c] of clients.entries()) {
          await waitFor(() => wsMessages(c, channel).length >= 20, 5000, `20 WS messages on node ${k}`);
          await sleep(50);
          const kinds = c.frames.filter((f) => f.type === "message" || f.type === "reset");
          assert.deepEqual(
            kinds.map((f) => (f.type === "reset" ? `reset:${f.epoch}:${f.offset}` : `${f.offset}`)),
            [...range(1, 10).map(String), `reset:${newEpoch}:0`, ...range(1, 10).map(String)],
            `WS on node ${k}`,
          );
          assert.deepEqual(
            wsMessages(c, channel).map(({ channel, offset, data }) => ({ channel, offset, data })),
            expected,
          );
        }
        for (const [k, s] of streams.entries()) {
          await waitFor(() => s.messages().length >= 20, 5000, `20 SSE messages on node ${k}`);
          assert.deepEqual(s.messages(), expected, `SSE on node ${k}`);
          assert.deepEqual(s.named("reset"), [{ channel, epoch: newEpoch, offset: 0 }]);
        }
        // A poll from a cursor of the lost epoch is told so.
        const stale = await getJson(`${nodes[1]!.url}/poll?channel=${channel}&cursor=${oldCursor}&timeout=0`);
        assert.equal(stale.status, 200);
        assert.deepEqual(stale.body.resets, [{ channel, epoch: newEpoch, offset: 10 }]);
        assert.deepEqual(stale.body.messages, []);
      } finally {
        for (const c of clients) c.close();
        for (const s of streams) s.close();
      }
      for (const node of nodes) await assertIdle(node.hl);
      await Promise.all(nodes.map((node) => node.close()));
    });
  });
});
