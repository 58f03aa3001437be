/** The Redis broker that `--redis` names (see redis-topology.ts): one Redis, shards, or a Redis Cluster. */
import { redactedUrl, type RedisTopology } from "../redis-topology.js";
import type { Broker } from "./broker.js";
import { RedisBroker, type RedisBrokerOptions } from "./redis.js";
import { ShardedBroker } from "./sharded.js";

export function createRedisBroker(topology: RedisTopology, options: Omit<RedisBrokerOptions, "url">): Broker {
  switch (topology.kind) {
    case "single":
      return new RedisBroker({ ...options, url: topology.url });
    case "shards":
      return new ShardedBroker(
        topology.urls.map((url) => new RedisBroker({ ...options, url })),
        topology.urls.map((url, i) => `shard ${i + 1} (${redactedUrl(url)})`),
      );
    case "cluster":
      return new RedisBroker({ ...options, url: "", cluster: topology });
  }
}
