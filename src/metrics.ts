/**
 * Prometheus metrics. Values live in plain fields ({@link Stats}, the
 * registry, the hub) and are read at scrape time, so the hot path never
 * touches prom-client.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { ServerContext } from "./transports/connection.js";

/** How often the event-loop delay histogram (`heartline_nodejs_eventloop_lag_*`) samples, ms. */
const EVENT_LOOP_SAMPLE_MS = 100;

export function createMetrics(ctx: ServerContext): Registry {
  const register = new Registry();
  const { stats, registry, hub } = ctx;
  // Hook calls are counted as they happen: they are never on the fan-out path.
  register.registerMetric(ctx.hooks.requests);
  register.registerMetric(ctx.hooks.reuseHits);
  register.registerMetric(ctx.hooks.duration);

  new Gauge({
    name: "heartline_connections",
    help: "Open subscriber connections by transport (poll = waiting long polls).",
    labelNames: ["transport"],
    registers: [register],
    collect() {
      for (const t of ["ws", "sse", "poll"] as const) this.set({ transport: t }, registry.byTransport[t]);
    },
  });
  new Gauge({
    name: "heartline_subscriptions",
    help: "Channel subscriptions held by this node's WebSocket and SSE connections.",
    registers: [register],
    collect() {
      this.set(hub.totalSubscriptions);
    },
  });
  new Counter({
    name: "heartline_messages_published_total",
    help: "Messages accepted for publishing on this node (HTTP API, WebSocket frames, library).",
    registers: [register],
    collect() {
      this.reset();
      this.inc(stats.publishAccepted);
    },
  });
  new Counter({
    name: "heartline_messages_fanned_out_total",
    help: "Stored messages fanned out by this node's hub.",
    registers: [register],
    collect() {
      this.reset();
      this.inc(hub.published);
    },
  });
  new Counter({
    name: "heartline_messages_delivered_total",
    help: "Messages handed to subscribers, by transport.",
    labelNames: ["transport"],
    registers: [register],
    collect() {
      this.reset();
      for (const t of ["ws", "sse", "poll"] as const) this.inc({ transport: t }, stats.delivered[t]);
    },
  });
  new Counter({
    name: "heartline_heartbeats_sent_total",
    help: "Heartbeats sent, by transport.",
    labelNames: ["transport"],
    registers: [register],
    collect() {
      this.reset();
      for (const t of ["ws", "sse"] as const) this.inc({ transport: t }, stats.heartbeats[t]);
    },
  });
  new Counter({
    name: "heartline_heartbeat_timeouts_total",
    help: "WebSocket connections closed because the peer did not answer a heartbeat.",
    registers: [register],
    collect() {
      this.reset();
      this.inc(stats.heartbeatTimeouts);
    },
  });
  new Counter({
    name: "heartline_slow_consumer_drops_total",
    help: "Connections dropped because their send queue passed --send-buffer-bytes.",
    labelNames: ["transport"],
    registers: [register],
    collect() {
      this.reset();
      for (const t of ["ws", "sse"] as const) this.inc({ transport: t }, stats.slowConsumerDrops[t]);
    },
  });
  new Counter({
    name: "heartline_connections_rejected_total",
    help: "Connections refused, by reason.",
    labelNames: ["reason"],
    registers: [register],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(stats.rejected)) this.inc({ reason }, n);
    },
  });
  new Counter({
    name: "heartline_poll_waits_total",
    help: "Long polls that found nothing and waited.",
    registers: [register],
    collect() {
      this.reset();
      this.inc(stats.pollWaits);
    },
  });
  new Counter({
    name: "heartline_poll_repeats_total",
    help: "Long polls served as a repeat of the one before on their connection, without a second admission.",
    registers: [register],
    collect() {
      this.reset();
      this.inc(stats.pollRepeats);
    },
  });
  new Counter({
    name: "heartline_broker_errors_total",
    help: "Broker operations that failed.",
    registers: [register],
    collect() {
      this.reset();
      this.inc(stats.brokerErrors);
    },
  });
  new Counter({
    name: "heartline_settle_collections_total",
    help: "Garbage collections run once a burst of new connections settled (--settle-gc).",
    registers: [register],
    collect() {
      this.reset();
      this.inc(stats.settleCollections);
    },
  });
  new Gauge({
    name: "heartline_broker_ready",
    help: "1 while the broker can store messages.",
    registers: [register],
    collect() {
      this.set(hub.brokerReady() ? 1 : 0);
    },
  });
  new Gauge({
    name: "heartline_broker_channels",
    help: "Channels whose state the broker keeps in this process (memory broker: bounded by --max-channels).",
    registers: [register],
    collect() {
      this.set(hub.brokerUsage()?.channels ?? 0);
    },
  });
  new Gauge({
    name: "heartline_history_bytes",
    help: "Bytes of message history the memory broker holds (bounded by --max-history-bytes; 0 with Redis).",
    registers: [register],
    collect() {
      this.set(hub.brokerUsage()?.historyBytes ?? 0);
    },
  });
  new Gauge({
    name: "heartline_broker_subscribed_channels",
    help: "Channels whose notifications this node subscribes to in Redis (those it serves, and for 2 s after).",
    registers: [register],
    collect() {
      this.set(hub.brokerUsage()?.subscribedChannels ?? 0);
    },
  });
  new Counter({
    name: "heartline_broker_notifications_total",
    help: "Notifications of stored messages this node received from Redis: its fan-out ingress.",
    registers: [register],
    collect() {
      this.reset();
      this.inc(hub.brokerUsage()?.notifications ?? 0);
    },
  });
  new Counter({
    name: "heartline_broker_notification_bytes_total",
    help: "Bytes of the notifications counted by heartline_broker_notifications_total.",
    registers: [register],
    collect() {
      this.reset();
      this.inc(hub.brokerUsage()?.notificationBytes ?? 0);
    },
  });
  // The event-loop delay histogram samples every 100 ms, not prom-client's
  // default 10 ms: that timer alone woke an idle server 100 times a second
  // (half a per cent of a core on a small VM), and a histogram read once per
  // scrape needs no more than 10 samples a second.
  collectDefaultMetrics({ register, prefix: "heartline_", eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  return register;
}
