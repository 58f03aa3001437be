/**
 * `heartline serve --workers N`: the primary process of a node:cluster. It
 * serves nothing itself; N workers share the port (the primary hands out
 * connections round-robin) and meet through Redis. A worker that dies is
 * replaced; SIGTERM/SIGINT are passed on so every worker drains, and the
 * primary exits once all of them have; SIGHUP is passed on (TLS reload).
 */
import cluster, { type Worker } from "node:cluster";
import type { HeartlineConfig } from "../config.js";
import { createLogger } from "../log.js";

/** The message a worker takes as "drain and exit", like a signal of its own. */
export const DRAIN_MESSAGE = "heartline:drain";

/** A worker that dies sooner than this after its start is replaced only after the same delay (crash loop guard). */
const MIN_LIFETIME_MS = 1000;

export function runPrimary(config: HeartlineConfig): void {
  const log = createLogger(config.logLevel);
  const started = new Map<Worker, number>();
  const serving = new WeakSet<Worker>();
  const restarts = new Set<NodeJS.Timeout>();
  let stopping = false;
  let failed = false;

  const fork = () => {
    const worker = cluster.fork();
    // A drain message to a worker that is dying fails; its exit is handled below.
    worker.on("error", () => {});
    // A worker listens for the drain message only once it serves; before that, SIGTERM ends it.
    worker.once("listening", () => serving.add(worker));
    started.set(worker, Date.now());
    log.info({ worker: worker.id, pid: worker.process.pid }, "worker started");
  };

  cluster.on("exit", (worker, code, signal) => {
    const lived = Date.now() - (started.get(worker) ?? 0);
    started.delete(worker);
    if (stopping) {
      // SIGTERM ends only a worker that was not serving yet (a serving one drains and exits 0).
      if (code !== 0 && signal !== "SIGTERM") failed = true;
      log.info({ worker: worker.id, pid: worker.process.pid, code, signal }, "worker stopped");
      if (started.size === 0) {
        log.info("stopped");
        process.exit(failed ? 1 : 0);
      }
      return;
    }
    const delay = lived < MIN_LIFETIME_MS ? MIN_LIFETIME_MS : 0;
    log.error({ worker: worker.id, pid: worker.process.pid, code, signal, restartInMs: delay }, "worker exited; starting a new one");
    const t = setTimeout(() => {
      restarts.delete(t);
      if (!stopping) fork();
    }, delay);
    restarts.add(t);
  });

  const shutdown = (signal: string) => {
    if (stopping) {
      // A second signal: stop waiting.
      for (const w of started.keys()) w.process.kill("SIGKILL");
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, workers: started.size }, "draining");
    for (const t of restarts) clearTimeout(t);
    restarts.clear();
    if (started.size === 0) process.exit(0);
    for (const w of started.keys()) {
      if (w.isConnected() && serving.has(w)) w.send(DRAIN_MESSAGE);
      else w.process.kill("SIGTERM");
    }
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  // Each worker serves TLS with its own copy of the certificate: each reads it again.
  if (config.tlsCert !== undefined) {
    process.on("SIGHUP", () => {
      for (const w of started.keys()) if (w.isConnected() && serving.has(w)) w.process.kill("SIGHUP");
    });
  }

  log.info({ workers: config.workers, pid: process.pid }, "starting workers");
  for (let i = 0; i < config.workers; i++) fork();
}
