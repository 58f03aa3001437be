/**
 * Interest-based fan-out on a private redis-server: a node subscribes to a
 * channel's notifications only while it serves the channel, a burst of new
 * channels costs one SUBSCRIBE, a channel that gains and loses its only
 * subscriber many times a second costs none and loses nothing, and a node
 * killed mid-churn leaves no subscription behind.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import type { StoredMessage } from "../../src/broker/broker.js";
import { RedisBroker } from "../../src/broker/redis.js";
import { startChildServer } from "../helpers/child.js";
import { RedisServer, redisSkip } from "../helpers/redis.js";
import { getJson, publishHttp, startServer, waitFor, WsClient } from "../helpers/server.js";

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("interest-based fan-out", { skip: redisSkip }, () => {
  let redis: RedisServer;
  let admin: Redis;
  const brokers: RedisBroker[] = [];
  before(async () => {
    redis = await RedisServer.start();
    admin = new Redis(redis.url);
  });
  after(async () => {
    await Promise.all(brokers.map((b) => b.close()));
    admin?.disconnect();
    await redis?.stop();
  });

  async function broker(prefix: string, lingerMs?: number): Promise<RedisBroker> {
    const b = new RedisBroker({ url: redis.url, historySize: 1000, historyTtl: 300, prefix, lingerMs });
    brokers.push(b);
    assert.equal(await b.waitReady(5000), true);
    return b;
  }

  /** Subscribers of each name on the whole Redis (PUBSUB NUMSUB). */
  async function numsub(...names: string[]): Promise<number[]> {
    const a = (await admin.call("PUBSUB", "NUMSUB", ...names)) as Array<string | number>;
    return names.map((_, i) => Number(a[2 * i + 1]));
  }

  /** Calls of a Redis command so far (INFO commandstats). */
  async function calls(command: string): Promise<number> {
    const info = await admin.info("commandstats");
    const m = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
    return m ? Number(m[1]) : 0;
  }

  /** A metric's value from a node's /metrics. */
  async function metric(url: string, name: string): Promise<number> {
    const text = await (await fetch(`${url}/metrics`)).text();
    const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
    assert.ok(m, `${name} in /metrics`);
    return Number(m[1]);
  }

  it("subscribes a node to a channel only while it has a subscriber or a waiting poll there, and leaves it within seconds after", async () => {
    const [a, b] = await Promise.all([startServer({ redis: redis.url }), startServer({ redis: redis.url })]);
    try {
      const ws = await WsClient.connect(`${a.wsUrl}/ws?channel=only:a`);
      await ws.next((f) => f.type === "subscribed");
      const first = await getJson(`${b.url}/poll?channel=only:c`);
      const polling = getJson(`${b.url}/poll?channel=only:c&cursor=${first.body.cursor}&timeout=20`);
      await waitFor(async () => (await numsub("heartline:{only:c}:f"))[0] === 1, 5000, "the waiting poll's subscription");
      assert.deepEqual(await numsub("heartline:{only:a}:f", "heartline:{only:b}:f", "heartline:{only:c}:f"), [1, 0, 1], "A serves only:a, B only:c, nobody only:b");

      // Published on B, which does not serve only:a: delivered through A's own subscription.
      for (let i = 1; i <= 5; i++) assert.equal((await publishHttp(b, "only:a", { i })).status, 200);
      await ws.next(() => ws.messages("only:a").length === 5);
      assert.deepEqual(ws.messages("only:a").map((m) => (m as unknown as { offset: number }).offset), range(1, 5));
      assert.equal((await publishHttp(a, "only:c", { c: 1 })).status, 200);
      const answered = await polling;
      assert.deepEqual(answered.body.messages.map((m: { data: unknown }) => m.data), [{ c: 1 }]);

      // Each node's ingress is its own channels' traffic: A had only:a's 5 notifications, B only:c's one.
      assert.deepEqual([await metric(a.url, "heartline_broker_notifications_total"), await metric(b.url, "heartline_broker_notifications_total")], [5, 1]);
      assert.deepEqual([await metric(a.url, "heartline_broker_subscribed_channels"), await metric(b.url, "heartline_broker_subscribed_channels")], [1, 1]);

      ws.close();
      await waitFor(async () => (await numsub("heartline:{only:a}:f", "heartline:{only:c}:f")).every((n) => n === 0), 6000, "both channels left");
      assert.equal(await metric(a.url, "heartline_broker_subscribed_channels"), 0);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("subscribes a burst of 1,000 new channels with one SUBSCRIBE, and drops them in one UNSUBSCRIBE once they linger out", async () => {
    const b = await broker("burst:", 100);
    const before = await calls("subscribe");
    const channels = range(1, 1000).map((i) => `burst:${i}`);
    for (const c of channels) b.interest(c, true);
    await waitFor(() => channels.every((c) => b.isSubscribed(c)), 5000, "every channel subscribed");
    assert.equal(b.subscriptionCommands, 1);
    assert.equal((await calls("subscribe")) - before, 1, "one SUBSCRIBE reached Redis");
    assert.deepEqual(await numsub("burst:{burst:1}:f", "burst:{burst:1000}:f"), [1, 1]);

    const unsubscribes = await calls("unsubscribe");
    for (const c of channels) b.interest(c, false);
    b.sweep(Date.now() + 1000);
    await waitFor(async () => (await numsub("burst:{burst:1}:f", "burst:{burst:1000}:f")).every((n) => n === 0), 5000, "every channel left");
    assert.equal((await calls("unsubscribe")) - unsubscribes, 1, "one UNSUBSCRIBE reached Redis");
    assert.equal(b.subscribedChannels, 0);
  });

  it("hands over a message published between a reader's read and its subscription taking effect", async () => {
    const listener = await broker("race:");
    const publisher = await broker("race:");
    const seen = new Map<string, number[]>();
    listener.onMessage((m: StoredMessage) => {
      const list = seen.get(m.channel) ?? [];
      list.push(m.offset);
      seen.set(m.channel, list);
    });
    const channels = range(1, 50).map((i) => `race:${i}`);
    const readAt = new Map<string, number>();
    await Promise.all(
      channels.map(async (c) => {
        // What the hub does: interest first, then the read; the publish lands before the SUBSCRIBE goes out.
        listener.interest(c, true);
        const reading = listener.read(c);
        await publisher.publish(c, '"between"');
        readAt.set(c, (await reading).offset);
      }),
    );
    // The reader stands at 0 (read before the publish) or 1 (after it); it is owed every message after that. A
    // notification that overtook the read's answer may also hand over message 1 to a reader at 1: the hub drops
    // what is not after its position, so that is allowed; a missing or repeated message is not.
    const owed = (c: string) => range(readAt.get(c)! + 1, 1);
    assert.ok(channels.some((c) => owed(c).length === 1), "some reads came before their channel's publish");
    await waitFor(() => channels.every((c) => owed(c).every((o) => (seen.get(c) ?? []).includes(o))), 5000, "every message after each read");
    await new Promise((r) => setTimeout(r, 100));
    for (const c of channels) {
      const got = seen.get(c) ?? [];
      assert.deepEqual(got.slice(got.length - owed(c).length), owed(c), c);
      assert.ok(got.length <= 1, `${c}: each message once (${got.join(",")})`);
    }
  });

  it("costs no SUBSCRIBE and loses nothing while a poller churns a channel's only interest, and leaks no subscription when the node is killed", async () => {
    const publisherNode = await startServer({ redis: redis.url });
    const node = await startChildServer(["--redis", redis.url, "--history-size", "2000"]);
    try {
      const subscribes = await calls("subscribe");
      let cursor = (await getJson(`${node.url}/poll?channel=churn`)).body.cursor as string;
      const total = 300;
      const publishing = (async () => {
        for (let i = 1; i <= total; i++) {
          assert.equal((await publishHttp(publisherNode, "churn", i)).status, 200);
          if (i % 3 === 0) await new Promise((r) => setTimeout(r, 2));
        }
      })();
      // Every poll adds and removes the channel's only interest on the node.
      const got: number[] = [];
      let polls = 0;
      while (got.length < total) {
        const r = await getJson(`${node.url}/poll?channel=churn&cursor=${cursor}&timeout=5`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.deepEqual(r.body.resets, []);
        got.push(...r.body.messages.map((m: { data: number }) => m.data));
        cursor = r.body.cursor;
        polls++;
      }
      await publishing;
      assert.deepEqual(got, range(1, total), "every message once, in order");
      assert.ok(polls >= 10, `the interest came and went ${polls} times`);
      assert.ok((await calls("subscribe")) - subscribes <= 3, "the channel stayed subscribed while it churned");

      // Interest in 200 channels at once, then the node dies without a word.
      const clients = await Promise.all(range(1, 4).map(() => WsClient.connect(`${node.wsUrl}/ws`)));
      clients.forEach((c, k) => range(1, 50).forEach((i) => c.send({ type: "subscribe", channel: `dead:${k}:${i}`, id: i })));
      const names = range(0, 3).flatMap((k) => range(1, 50).map((i) => `heartline:{dead:${k}:${i}}:f`));
      await waitFor(async () => (await numsub(...names)).every((n) => n === 1), 5000, "200 subscriptions");
      node.child.kill("SIGKILL");
      await waitFor(async () => (await numsub(...names, "heartline:{churn}:f")).every((n) => n === 0), 5000, "no subscription left");
      for (const c of clients) c.close();
    } finally {
      await node.stop();
      await publisherNode.close();
    }
  });
});
