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
