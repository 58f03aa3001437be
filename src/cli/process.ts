/**
 * What `heartline serve` does with process-wide events. An uncaught
 * exception or an unhandled rejection leaves the server in an unknown state
 * (counters, registries and subscriptions may disagree with the sockets), so
 * the process logs it as fatal and exits with code 1 at once, without a
 * drain: a drain would run on that same state and could hang or answer
 * wrongly. Clients reconnect and resume from their cursors; the supervisor
 * (systemd `Restart=on-failure`, Docker, Kubernetes) or, with `--workers`,
 * the primary starts a fresh process.
 */
import type { Logger } from "../log.js";
import type { Heartline } from "../server.js";

/** The exit code after an uncaught exception or unhandled rejection. */
export const CRASH_EXIT_CODE = 1;

/** Installs the fatal handlers; `exit` is `process.exit`, replaceable for tests of the handler itself. */
export function installProcessHandlers(log: Logger, exit: (code: number) => void = (code) => process.exit(code)): void {
  let crashed = false;
  const fatal = (err: unknown, msg: string) => {
    if (crashed) return;
    crashed = true;
    try {
      log.fatal({ err }, `${msg}; exiting`);
      log.flush?.();
    } finally {
      exit(CRASH_EXIT_CODE);
    }
  };
  process.on("uncaughtException", (err) => fatal(err, "uncaught exception"));
  process.on("unhandledRejection", (err) => fatal(err, "unhandled rejection"));
}

/**
 * Reads the TLS certificate and key again on SIGHUP (see Heartline.reloadTls):
 * new connections get the new pair, open ones stay; a bad file is logged and
 * the pair in use stays.
 */
export function reloadOnHangup(hl: Heartline): void {
  process.on("SIGHUP", () => {
    hl.reloadTls();
  });
}

/**
 * Drains `hl` on SIGTERM or SIGINT (for `--drain-timeout`), then exits 0, or
 * 1 when the drain fails or a second signal comes. `beforeClose` runs first
 * (an application stops its own timers). Returns the shutdown function for
 * other triggers: a request named `primary` (a cluster primary's drain) is
 * ignored once a drain runs, rather than taken as a second signal.
 */
export function drainOnSignals(hl: Heartline, beforeClose?: () => void): (signal: string) => void {
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) {
      if (signal === "primary") return;
      process.exit(1);
    }
    stopping = true;
    hl.log.info({ signal }, "draining");
    beforeClose?.();
    hl.close(hl.config.drainTimeout).then(
      () => {
        hl.log.info("stopped");
        process.exit(0);
      },
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  return shutdown;
}
