/**
 * What the Redis broker keeps in the process for channels it only reads or
 * hears about: a fan-out position per channel, forgotten soon after the last
 * read and capped by --max-channels, except for channels this node serves.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ManualClock } from "../../src/clock.js";
import { RedisBroker } from "../../src/broker/redis.js";
import { RedisServer, redisSkip } from "../helpers/redis.js";
import { waitFor } from "../helpers/server.js";
import { watch } from "../helpers/watch.js";

describe("RedisBroker fan-out positions", { skip: redisSkip }, () => {
  let redis: RedisServer;
  const open: RedisBroker[] = [];
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await Promise.all(open.map((b) => b.close()));
    await redis?.stop();
  });

  async function broker(clock: ManualClock, prefix: string): Promise<RedisBroker> {
    const b = new RedisBroker({ url: redis.url, historySize: 10, historyTtl: 300, readTtl: 60, maxChannels: 10, clock, prefix });
    open.push(b);
    assert.equal(await b.waitReady(5000), true);
    return b;
  }

  it("are capped at maxChannels and forgotten readTtl after the last read, except for channels in use", async () => {
    const clock = new ManualClock();
    const b = await broker(clock, "tracks:");
    const inUse = (c: string) => c === "fresh:0" || c === "fresh:29";
    for (let i = 0; i < 30; i++) await b.read(`fresh:${i}`);
    assert.equal(b.trackedChannels, 30);
    b.sweep(clock.now(), inUse);
    assert.equal(b.trackedChannels, 10, "capped at maxChannels");
    clock.advance(61_000);
    b.sweep(clock.now(), inUse);
    assert.equal(b.trackedChannels, 2, "only the channels in use are left after readTtl");
  });

  it("caps the positions of channels published on other nodes too", async () => {
    const clock = new ManualClock();
    const listener = await broker(clock, "others:");
    const publisher = await broker(new ManualClock(), "others:");
    let heard = 0;
    listener.onMessage(() => heard++);
    await watch(listener, ...Array.from({ length: 40 }, (_, i) => `elsewhere:${i}`));
    for (const channel of Array.from({ length: 40 }, (_, i) => `elsewhere:${i}`)) listener.interest(channel, false);
    for (let i = 0; i < 40; i++) await publisher.publish(`elsewhere:${i}`, "1");
    await waitFor(() => heard === 40, 5000, "every notification");
    assert.ok(listener.trackedChannels >= 40);
    listener.sweep(clock.now());
    assert.equal(listener.trackedChannels, 10);
  });
});
