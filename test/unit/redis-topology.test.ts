import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { shardOf } from "../../src/broker/sharded.js";
import { parseRedisTopology, redactedUrl } from "../../src/redis-topology.js";

describe("shardOf", () => {
  it("is FNV-1a (32 bits) of the name, modulo the number of shards", () => {
    // Published FNV-1a test vectors: a count above 2^32 leaves the hash itself.
    assert.equal(shardOf("", 2 ** 33), 0x811c9dc5);
    assert.equal(shardOf("a", 2 ** 33), 0xe40c292c);
    assert.equal(shardOf("foobar", 2 ** 33), 0xbf9cf968);
    assert.equal(shardOf("foobar", 3), 0xbf9cf968 % 3);
  });

  it("spreads channel names over the shards", () => {
    const counts = [0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[shardOf(`chat:room-${i}`, 3)]!++;
    for (const n of counts) assert.ok(n > 800 && n < 1200, `counts ${counts.join(",")}`);
  });
});

describe("parseRedisTopology", () => {
  it("reads one URL, a list of shard URLs, and a Redis Cluster's seed nodes", () => {
    assert.deepEqual(parseRedisTopology("redis://127.0.0.1:6379"), { kind: "single", url: "redis://127.0.0.1:6379" });
    assert.deepEqual(parseRedisTopology("redis://a:6379,rediss://b:6380/1"), { kind: "shards", urls: ["redis://a:6379", "rediss://b:6380/1"] });
    assert.deepEqual(parseRedisTopology("redis+cluster://10.0.0.1:7000,[::1]:7001"), {
      kind: "cluster",
      nodes: [
        { host: "10.0.0.1", port: 7000 },
        { host: "::1", port: 7001 },
      ],
      tls: false,
      username: undefined,
      password: undefined,
    });
    assert.deepEqual(parseRedisTopology("rediss+cluster://app:s%40cret@h:7000"), {
      kind: "cluster",
      nodes: [{ host: "h", port: 7000 }],
      tls: true,
      username: "app",
      password: "s@cret",
    });
  });

  it("names the entry at fault, without its password", () => {
    assert.throws(() => parseRedisTopology("redis://a:6379,http://b:6379,redis://c:6379"), /entry 2 of 3 \("http:\/\/b:6379"\) is not a redis:\/\/ or rediss:\/\/ URL/);
    assert.throws(() => parseRedisTopology("redis://a:6379,"), /entry 2 of 2 \(""\)/);
    assert.throws(() => parseRedisTopology("redis://u:pw@a:6379,redis://u:pw@a:6379"), (err: Error) => {
      assert.match(err.message, /listed twice/);
      assert.doesNotMatch(err.message, /pw/);
      return true;
    });
    assert.throws(() => parseRedisTopology("redis+cluster://h:7000,h:notaport"), /cluster node 2 of 2 \("h:notaport"\) is not host:port/);
    assert.throws(() => parseRedisTopology("redis+cluster://h:70000"), /cluster node 1 of 1/);
    assert.equal(redactedUrl("redis://user:secret@h:1"), "redis://user:***@h:1");
  });
});
