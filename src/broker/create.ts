/** The broker a configuration names: in memory, or the Redis that `--redis` names (see redis-topology.ts): one Redis, shards, or a Redis Cluster. */
import type { Clock } from "../clock.js";
import type { HeartlineConfig } from "../config.js";
import type { Logger } from "../log.js";
import { parseRedisTopology, redactedUrl, type RedisTopology } from "../redis-topology.js";
import { readRecordTtl, type Broker } from "./broker.js";
import { MemoryBroker } from "./memory.js";
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

/** The broker of `config`: Redis when `--redis` is given, else in memory. */
export function createBroker(config: HeartlineConfig, clock: Clock, logger: Logger): Broker {
  const { historySize, historyTtl, redis, maxChannels, maxHistoryBytes, idempotencyTtl } = config;
  const readTtl = readRecordTtl(historyTtl, config.pollTimeout);
  return redis
    ? createRedisBroker(parseRedisTopology(redis), { historySize, historyTtl, readTtl, maxChannels, idempotencyTtl, clock, logger })
    : new MemoryBroker({ historySize, historyTtl, readTtl, maxChannels, maxHistoryBytes, idempotencyTtl, clock });
}
