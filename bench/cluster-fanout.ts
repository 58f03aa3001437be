/**
 * Cross-node fan-out through Redis against a single node, in one run.
 *
 *   npx tsx bench/cluster-fanout.ts [--messages 20000] [--subscribers 10] [--concurrency 64]
 *
 * Needs `redis-server` on the PATH (a private one is started on a free port).
 * Every node runs in this process, so the figures include the nodes competing
 * for one CPU: read them as relative, not as a capacity plan.
 *
 * Setups:
 * - memory:        one node, embedded broker (the baseline)
 * - redis, 1 node: one node, Redis broker; publisher and subscribers on it
 * - redis, 2 nodes: publish on node A, every subscriber on node B
 *
 * Measures: throughput (messages/s published with `concurrency` in flight,
 * until the last subscriber has the last message) and latency (one publish at
 * a time, from `publish()` to arrival at a subscriber; p50/p99).
 */
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { pino } from "pino";
import { createHeartline, type Heartline } from "../src/index.js";
import { RedisServer } from "../test/helpers/redis.js";

const { values } = parseArgs({
  options: {
    messages: { type: "string", default: "20000" },
    subscribers: { type: "string", default: "10" },
    concurrency: { type: "string", default: "64" },
    latency: { type: "string", default: "2000" },
  },
});
const MESSAGES = Number(values.messages);
const SUBSCRIBERS = Number(values.subscribers);
const CONCURRENCY = Number(values.concurrency);
const LATENCY_SAMPLES = Number(values.latency);

interface Setup {
  name: string;
  publisher: Heartline;
  subscriberNode: Heartline;
  nodes: Heartline[];
}

async function node(redis?: string): Promise<Heartline> {
  const hl = createHeartline(
    { host: "127.0.0.1", historySize: 1000, sendBufferBytes: 64 * 1024 * 1024, ...(redis ? { redis } : {}) },
    { logger: pino({ level: "silent" }) },
  );
  await hl.listen(0, "127.0.0.1");
  return hl;
}

/** Subscribers that record, per message, the arrival time of the first copy and count every copy. */
async function subscribe(hl: Heartline, channel: string, n: number) {
  const arrivals = new Map<number, number>();
  let copies = 0;
  let onCopy = () => {};
  const sockets = await Promise.all(
    Array.from({ length: n }, async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${hl.port}/ws?channel=${channel}`);
      await new Promise<void>((resolve, reject) => {
        ws.on("message", (raw) => {
          // Frames are read without JSON.parse so the subscribers cost little next to the nodes.
          const text = raw.toString();
          if (text.startsWith('{"type":"message"')) {
            const at = text.indexOf('"offset":') + 9;
            const offset = Number.parseInt(text.slice(at, text.indexOf(",", at)), 10);
            if (!arrivals.has(offset)) arrivals.set(offset, performance.now());
            copies++;
            onCopy();
          } else if (text.startsWith('{"type":"subscribed"')) resolve();
        });
        ws.on("error", reject);
      });
      return ws;
    }),
  );
  return {
    arrivals,
    get copies() {
      return copies;
    },
    until(count: number): Promise<void> {
      if (copies >= count) return Promise.resolve();
      return new Promise((resolve) => {
        onCopy = () => {
          if (copies >= count) resolve();
        };
      });
    },
    close() {
      for (const ws of sockets) ws.close();
    },
  };
}

async function throughput(s: Setup): Promise<number> {
  const channel = "bench:tp";
  const subs = await subscribe(s.subscriberNode, channel, SUBSCRIBERS);
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < MESSAGES) {
        next++;
        await s.publisher.publish(channel, { n: next });
      }
    }),
  );
  await subs.until(MESSAGES * SUBSCRIBERS);
  const seconds = (performance.now() - start) / 1000;
  subs.close();
  return MESSAGES / seconds;
}

async function latency(s: Setup): Promise<{ p50: number; p99: number }> {
  const channel = "bench:lat";
  const subs = await subscribe(s.subscriberNode, channel, 1);
  const samples: number[] = [];
  for (let i = 1; i <= LATENCY_SAMPLES; i++) {
    const t0 = performance.now();
    const r = await s.publisher.publish(channel, { i });
    await subs.until(i);
    samples.push(subs.arrivals.get(r.offset)! - t0);
  }
  subs.close();
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(samples.length * 0.5)]!, p99: samples[Math.floor(samples.length * 0.99)]! };
}

const redis = await RedisServer.start();
const results: Array<Record<string, string | number>> = [];
try {
  const setups: Array<() => Promise<Setup>> = [
    async () => {
      const a = await node();
      return { name: "memory, 1 node", publisher: a, subscriberNode: a, nodes: [a] };
    },
    async () => {
      const a = await node(redis.url);
      return { name: "redis, 1 node", publisher: a, subscriberNode: a, nodes: [a] };
    },
    async () => {
      const [a, b] = await Promise.all([node(redis.url), node(redis.url)]);
      return { name: "redis, 2 nodes (A → B)", publisher: a, subscriberNode: b, nodes: [a, b] };
    },
  ];
  for (const make of setups) {
    const s = await make();
    const rate = await throughput(s);
    const lat = await latency(s);
    results.push({
      setup: s.name,
      "msg/s": Math.round(rate),
      "deliveries/s": Math.round(rate * SUBSCRIBERS),
      "p50 ms": lat.p50.toFixed(3),
      "p99 ms": lat.p99.toFixed(3),
    });
    await Promise.all(s.nodes.map((n) => n.close(0.2)));
  }
} finally {
  await redis.stop();
}
console.log(`${MESSAGES} messages, ${SUBSCRIBERS} WebSocket subscribers, ${CONCURRENCY} publishes in flight; latency over ${LATENCY_SAMPLES} sequential publishes`);
console.table(results);
