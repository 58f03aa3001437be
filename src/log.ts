/** JSON-lines logging (pino) to stdout; one logger per Heartline instance. */
import { pino, type Logger } from "pino";
import type { Clock } from "./clock.js";

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, messageKey: "msg" });
}

type Level = "error" | "warn" | "info" | "debug";

/**
 * Log lines that clients can cause (aborted uploads, malformed frames,
 * unexpected errors on a request) are limited per kind: at most `limit`
 * lines per `intervalMs`, then one `suppressed` line with the count when
 * the interval ends. Windows follow the injected clock; the server's ticker
 * calls {@link sweep}, so no line costs a timer.
 */
export class LogLimiter {
  private readonly kinds = new Map<string, { start: number; lines: number; suppressed: number; level: Level }>();

  constructor(
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly limit = 5,
    private readonly intervalMs = 10_000,
  ) {}

  /** Logs `msg` with `kind` among its fields, unless `kind` used up its lines for this interval. */
  write(kind: string, level: Level, fields: Record<string, unknown>, msg: string): void {
    if (!this.log.isLevelEnabled(level)) return;
    const now = this.clock.now();
    let k = this.kinds.get(kind);
    if (k && now - k.start >= this.intervalMs) {
      this.report(kind, k);
      k = undefined;
    }
    if (!k) {
      k = { start: now, lines: 0, suppressed: 0, level };
      this.kinds.set(kind, k);
    }
    if (k.lines < this.limit) {
      k.lines++;
      this.log[level]({ kind, ...fields }, msg);
    } else {
      k.suppressed++;
    }
  }

  /** Ends the intervals that are over, reporting what each suppressed. */
  sweep(now = this.clock.now()): void {
    for (const [kind, k] of this.kinds) if (now - k.start >= this.intervalMs) this.report(kind, k);
  }

  private report(kind: string, k: { suppressed: number; level: Level }): void {
    this.kinds.delete(kind);
    if (k.suppressed > 0) {
      this.log[k.level]({ kind, suppressed: k.suppressed, intervalSeconds: this.intervalMs / 1000 }, `suppressed ${k.suppressed} more "${kind}" log lines`);
    }
  }
}
