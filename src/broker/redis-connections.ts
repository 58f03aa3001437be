/**
 * The two Redis connections of a RedisBroker (redis.ts), for one Redis or a
 * Redis Cluster (SPEC §13):
 *
 * - the command client: no offline queue, a command timeout and no retries,
 *   so a publish either reaches Redis now or fails (503), never hangs and
 *   never succeeds without storing;
 * - the subscriber client: classic SUBSCRIBE for `<prefix>signal` and
 *   `<prefix>holds`, and the channels' notifications through the
 *   {@link SubscribeLink} it answers.
 *
 * On a Redis Cluster both are ioredis `Cluster` clients. The subscriber runs
 * with `shardedSubscribers`: one connection per master, and a channel's
 * notification name `<prefix>{<channel>}:f` is subscribed with SSUBSCRIBE on
 * the master of its slot (the same slot as the channel's keys, so the publish
 * script can SPUBLISH it). ioredis refuses an SSUBSCRIBE of names in several
 * slots, and every channel has its own hash tag, so the link sends one
 * command per name, all at once (they are pipelined per master). A failed
 * SSUBSCRIBE may still be remembered by ioredis for its resubscription after
 * a failover, so the link takes it back with SUNSUBSCRIBE before it reports
 * the failure. After a failover ioredis resubscribes by itself on the new
 * master and emits `subscribersReady` (the broker heals from history then).
 * Signals use SSUBSCRIBE/SPUBLISH too (one slot, so they keep their order);
 * holds changes are classic PUBLISH from the scripts, each set's from its
 * master, received on one more connection to any node through the cluster bus.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import type { Logger } from "../log.js";
import type { RedisTopology } from "../redis-topology.js";
import type { SubscribeLink } from "./redis-subscriptions.js";

export interface ConnectionOptions {
  /** `redis://…` or `rediss://…` when `cluster` is not given. */
  url: string;
  cluster?: Extract<RedisTopology, { kind: "cluster" }>;
  commandTimeoutMs: number;
  connectTimeoutMs: number;
  maxReconnectDelayMs: number;
}

export interface RedisConnections {
  cmd: Redis | Cluster;
  sub: Redis | Cluster;
  /** A Redis Cluster: notifications with SPUBLISH/SSUBSCRIBE, on the `smessage` event. */
  sharded: boolean;
  /** How channels' notifications are subscribed and unsubscribed on `sub`. */
  link: SubscribeLink;
  /** Subscribes `sub` to the signal and holds channels (on every `ready`). */
  subscribeBase(signal: string, holds: string): Promise<unknown>;
  /** Publishes a signal on `cmd`. */
  signal(channel: string, payload: string): Promise<unknown>;
}

export function openConnections(o: ConnectionOptions): RedisConnections {
  const maxDelay = o.maxReconnectDelayMs;
  // Capped exponential backoff with jitter, forever: nodes come back by themselves.
  const backoff = (times: number) => Math.round(Math.min(maxDelay, 50 * 2 ** Math.min(times - 1, 10)) * (0.5 + Math.random() * 0.5));
  const failFast: RedisOptions = {
    connectTimeout: o.connectTimeoutMs,
    commandTimeout: o.commandTimeoutMs,
    // Never queue or resend while disconnected: a publish either reaches Redis now or fails.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
  };
  if (!o.cluster) {
    const common: RedisOptions = { ...failFast, retryStrategy: backoff };
    const sub = new Redis(o.url, { ...common, connectionName: "heartline-fanout", autoResubscribe: false });
    const cmd = new Redis(o.url, { ...common, connectionName: "heartline" });
    return {
      cmd,
      // The subscription is renewed by hand on every `ready`, so healing starts only once it is active.
      sub,
      sharded: false,
      link: { subscribe: (names) => sub.subscribe(...names), unsubscribe: (names) => sub.unsubscribe(...names) },
      subscribeBase: (signal, holds) => sub.subscribe(signal, holds),
      signal: (channel, payload) => cmd.publish(channel, payload),
    };
  }
  const { nodes, tls, username, password } = o.cluster;
  const auth: RedisOptions = { ...(tls ? { tls: {} } : {}), ...(username !== undefined ? { username } : {}), ...(password !== undefined ? { password } : {}) };
  const cluster: ClusterOptions = {
    // A topology change is retried shortly (a failover takes seconds); a whole-cluster outage is retried with backoff.
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    maxRedirections: 16,
    clusterRetryStrategy: backoff,
  };
  const cmd = new Cluster(nodes, {
    ...cluster,
    // The whole cluster unreachable: an immediate "not ready" error rather than a queued command without a timer.
    enableOfflineQueue: false,
    redisOptions: { ...auth, ...failFast, connectionName: "heartline" },
  });
  const sub = new Cluster(nodes, {
    ...cluster,
    shardedSubscribers: true,
    redisOptions: { ...auth, connectTimeout: o.connectTimeoutMs, connectionName: "heartline-fanout" },
  });
  return {
    cmd,
    sub,
    sharded: true,
    link: shardedLink(sub),
    // Signals are sharded too: all of them go through the master of one slot, so they arrive in the order sent
    // (a classic PUBLISH goes to any node, and two nodes' copies may cross on the cluster bus).
    // Holds changes stay classic: each set's changes come from its own master, in order.
    subscribeBase: (signal, holds) => Promise.all([sub.subscribe(holds), sub.ssubscribe(signal)]),
    signal: (channel, payload) => cmd.spublish(channel, payload),
  };
}

/** SSUBSCRIBE/SUNSUBSCRIBE one name per command (each channel is its own slot), all sent at once. */
function shardedLink(sub: Cluster): SubscribeLink {
  return {
    async subscribe(names) {
      const results = await Promise.allSettled(names.map((name) => sub.ssubscribe(name)));
      const failed = results.flatMap((r, i) => (r.status === "rejected" ? [[names[i]!, r.reason] as const] : []));
      if (failed.length === 0) return;
      // ioredis keeps a name it failed to subscribe for its next resubscription: take it back, so a
      // channel this node no longer wants cannot come back after a failover.
      await Promise.allSettled(failed.map(([name]) => sub.sunsubscribe(name)));
      throw failed[0]![1];
    },
    async unsubscribe(names) {
      const results = await Promise.allSettled(names.map((name) => sub.sunsubscribe(name)));
      const failed = results.find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    },
  };
}

/** Milliseconds without topology events before a resubscription counts as done (ioredis sends it without waiting). */
const SETTLE_MS = 200;
/** Milliseconds before failed SSUBSCRIBEs are sent again. */
const RETRY_MS = 500;

/**
 * The sharded subscriber's side of a failover, for the broker: routes
 * `smessage` notifications, tells when ioredis has resubscribed after a
 * topology change (`resubscribed`, once things are quiet for a moment, and
 * once more a second later, so a heal from history also covers
 * resubscriptions that took effect late), retries failed SSUBSCRIBEs, and
 * logs each transition once (a failover emits hundreds of events; their
 * details go to debug).
 */
export class ShardedFanout {
  private degraded = false;
  private settle: NodeJS.Timeout | undefined;
  private again: NodeJS.Timeout | undefined;
  private retrying: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    sub: Cluster,
    private readonly log: Logger,
    private readonly resubscribed: () => void,
    route: (channel: string, payload: string) => void,
  ) {
    sub.on("smessage", (channel: string, payload: string) => route(channel, payload));
    const lost = (err: unknown, node: unknown) => {
      this.log.debug({ err, node }, "Redis Cluster subscriber node lost");
      if (this.degraded || this.closed) return;
      this.degraded = true;
      this.log.warn("a Redis Cluster node of the fan-out is unreachable; its channels' notifications pause until it or a replica is back");
    };
    sub.on("-node", (_redis: unknown, node: unknown) => lost(undefined, node));
    sub.on("nodeError", (err: unknown, node: unknown) => lost(err, node));
    sub.on("subscribersReady", () => this.ready());
  }

  /** An SSUBSCRIBE failed (its master is down or moving): `retry` once the topology had a moment. */
  subscribeFailed(err: unknown, retry: () => void): void {
    this.log.debug({ err }, "SSUBSCRIBE failed; retrying");
    if (this.retrying || this.closed) return;
    this.retrying = setTimeout(() => {
      this.retrying = undefined;
      if (!this.closed) retry();
    }, RETRY_MS);
  }

  close(): void {
    this.closed = true;
    for (const t of [this.settle, this.again, this.retrying]) if (t) clearTimeout(t);
  }

  private ready(): void {
    if (this.closed) return;
    if (this.settle) clearTimeout(this.settle);
    if (this.again) clearTimeout(this.again);
    this.settle = setTimeout(() => {
      this.settle = undefined;
      if (this.closed) return;
      if (this.degraded) this.log.info("Redis Cluster fan-out resubscribed on every master");
      this.degraded = false;
      this.resubscribed();
      this.again = setTimeout(() => {
        this.again = undefined;
        if (!this.closed) this.resubscribed();
      }, 1000);
    }, SETTLE_MS);
  }
}
