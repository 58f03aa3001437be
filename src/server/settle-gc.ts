/**
 * One full garbage collection once a burst of new connections has settled
 * (`--settle-gc`): opening a connection leaves a few KiB of garbage (the
 * request, its headers, the handshake), and V8 keeps its young generation
 * grown to tens of MB after a burst without collecting it while the process
 * is quiet, so the resident memory a user sees stays up by that much. After
 * at least {@link BURST} connections were admitted, once {@link CALM_MS}
 * pass without a new one and without a message fanned out (and at most once
 * per {@link SPACING_MS}), the
 * server's ticker asks for one collection through an in-process inspector
 * session (`HeapProfiler.collectGarbage`: a full collection that also gives
 * the emptied pages back to the system, which `global.gc()` does not). It
 * pauses the process for tens of milliseconds (logged at debug with its
 * duration and the RSS it gave back; counted in
 * `heartline_settle_collections_total`).
 * Busy servers, whose connections keep coming or whose messages keep
 * flowing, are left to V8: the pause would delay their messages, and their
 * own allocation makes V8 collect anyway.
 */
import { Session } from "node:inspector";
import { performance } from "node:perf_hooks";
import type { Logger } from "../log.js";
import type { Stats } from "../stats.js";

const BURST = 1000;
const CALM_MS = 3000;
const SPACING_MS = 10_000;

export class SettleGc {
  /** An in-process inspector session: its `HeapProfiler.collectGarbage` also gives the emptied pages back to the system. */
  private readonly session: Session | undefined;
  private seen = 0;
  private seenPublished = 0;
  private changedAt = 0;
  private sinceGc = 0;
  private lastGcAt = -Infinity;
  /** Collections run, and the last one's time from request to answer (ms). */
  runs = 0;
  lastPauseMs = 0;

  constructor(
    enabled: boolean,
    private readonly log: Logger,
    private readonly stats: Stats,
  ) {
    if (!enabled) return;
    this.session = new Session();
    this.session.connect();
  }

  /** Ends the inspector session. */
  close(): void {
    this.session?.disconnect();
  }

  /** From the ticker: `admitted` counts the connections ever admitted, `published` the messages fanned out on this node. */
  tick(now: number, admitted: number, published: number): void {
    if (this.session === undefined) return;
    let moved = false;
    if (admitted !== this.seen) {
      this.sinceGc += admitted - this.seen;
      this.seen = admitted;
      moved = true;
    }
    if (published !== this.seenPublished) {
      this.seenPublished = published;
      moved = true;
    }
    if (moved) {
      this.changedAt = now;
      return;
    }
    if (this.sinceGc < BURST || now - this.changedAt < CALM_MS || now - this.lastGcAt < SPACING_MS) return;
    const rss = process.memoryUsage.rss();
    const t = performance.now();
    this.sinceGc = 0;
    this.lastGcAt = now;
    this.session.post("HeapProfiler.collectGarbage", () => {
      this.lastPauseMs = performance.now() - t;
      this.runs++;
      this.stats.settleCollections++;
      this.log.debug({ ms: Math.round(this.lastPauseMs * 10) / 10, rssFreed: rss - process.memoryUsage.rss() }, "collected the garbage of a burst of connections");
    });
  }
}
