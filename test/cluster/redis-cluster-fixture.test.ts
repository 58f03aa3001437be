/**
 * The Redis Cluster test fixture itself: three masters cover every slot, the
 * replica follows the first master, and after that master is SIGKILLed the
 * replica takes over with the data it was sent.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Cluster } from "ioredis";
import { RedisCluster, RedisShards, SLOTS, nodeCommand, slotOf } from "../helpers/redis-cluster.js";
import { redisSkip } from "../helpers/redis.js";

describe("RedisCluster fixture", { skip: redisSkip }, () => {
  let cluster: RedisCluster;
  let client: Cluster;

  before(async () => {
    cluster = await RedisCluster.start({ masters: 3, replicas: 1 });
    client = new Cluster(
      cluster.seeds.map((s) => ({ host: "127.0.0.1", port: Number(s.split(":")[1]) })),
      { clusterRetryStrategy: () => 100, redisOptions: { maxRetriesPerRequest: 1 } },
    );
    client.on("error", () => {});
  });
  after(async () => {
    client?.disconnect();
    await cluster?.stop();
  });

  it("computes slots as Redis does", async () => {
    for (const key of ["a", "heartline:{chat:lobby}:m", "{}x", "{user1000}.following", "über"]) {
      assert.equal(slotOf(key), Number(await nodeCommand(cluster.masterPorts[1]!, "CLUSTER", "KEYSLOT", key)), key);
    }
  });

  it("starts three masters covering every slot and a replica of the first", async () => {
    assert.equal(cluster.seeds.length, 3);
    assert.equal(cluster.url, `redis+cluster://${cluster.seeds.join(",")}`);
    const [m0, m1, m2] = cluster.masterPorts as [number, number, number];
    assert.equal(await cluster.masterForSlot(0), m0);
    assert.equal(await cluster.masterForSlot(Math.floor(SLOTS / 2)), m1);
    assert.equal(await cluster.masterForSlot(SLOTS - 1), m2);
    const replica = cluster.replicaOf(m0)!;
    assert.ok(replica > 0);
    assert.match(String(await nodeCommand(replica, "INFO", "replication")), new RegExp(`role:slave[\\s\\S]*master_port:${m0}`));
  });

  it("keeps the first master's keys readable after it is killed and its replica takes over", async () => {
    // One key per master, found by asking where it lives.
    const keys = new Map<number, string>();
    for (let i = 0; keys.size < 3 && i < 1000; i++) {
      const key = `k${i}`;
      const port = await cluster.masterOf(key);
      if (!keys.has(port)) keys.set(port, key);
    }
    assert.equal(keys.size, 3, "a key on every master");
    for (const [port, key] of keys) {
      await client.set(key, `v@${port}`);
      assert.equal(await nodeCommand(port, "GET", key), `v@${port}`, "written to the master of its slot");
    }
    const [m0] = cluster.masterPorts as [number];
    const key0 = keys.get(m0)!;
    // The write reached the replica before the crash: WAIT on the connection that wrote it.
    const conn = client.nodes("master").find((n) => n.options.port === m0)!;
    assert.equal(await conn.call("WAIT", "1", "0"), 1);
    const replica = cluster.replicaOf(m0);

    await cluster.killMaster(0);
    const promoted = await cluster.waitFailover(m0);
    assert.equal(promoted, replica);
    assert.equal(await cluster.masterOf(key0), promoted, "the replica now serves the slots");
    assert.match(String(await nodeCommand(promoted, "CLUSTER", "INFO")), /cluster_state:ok/);
    assert.equal(await nodeCommand(promoted, "GET", key0), `v@${m0}`, "the replica has the key");
    for (const [port, key] of keys) assert.equal(await client.get(key), `v@${port}`, `${key} through the cluster client`);
  });
});

describe("RedisShards fixture", { skip: redisSkip }, () => {
  it("starts independent servers", async () => {
    const shards = await RedisShards.start(3);
    try {
      assert.equal(shards.urls.length, 3);
      assert.equal(shards.url, shards.urls.join(","));
      const ports = shards.servers.map((s) => s.port);
      assert.equal(new Set(ports).size, 3);
      await nodeCommand(ports[0]!, "SET", "x", "0");
      assert.equal(await nodeCommand(ports[1]!, "GET", "x"), null, "no shared data");
      assert.match(String(await nodeCommand(ports[2]!, "INFO", "cluster")), /cluster_enabled:0/);
    } finally {
      await shards.stop();
    }
  });
});
