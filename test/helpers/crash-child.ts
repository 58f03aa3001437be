/**
 * A Heartline process that throws an uncaught exception once it serves, with
 * the handlers `heartline serve` installs. `single`: one process. `workers`:
 * the primary of `--workers 2` (the first worker throws, its replacement does not).
 * Run by test/integration/crash.test.ts.
 */
import cluster from "node:cluster";
import { DRAIN_MESSAGE, runPrimary } from "../../src/cli/cluster.js";
import { installProcessHandlers } from "../../src/cli/process.js";
import { configFromOptions } from "../../src/config.js";
import { createHeartline } from "../../src/index.js";

const mode = process.argv[2];
const redis = process.env.CRASH_REDIS_URL || undefined;
if (mode === "workers" && cluster.isPrimary) {
  runPrimary(configFromOptions({ workers: 2, redis, logLevel: "info" }));
} else {
  const hl = createHeartline({ host: "127.0.0.1", redis, logLevel: "info" });
  const { port } = await hl.listen(0, "127.0.0.1");
  installProcessHandlers(hl.log);
  // As `heartline serve` does: the primary's drain request ends a worker.
  process.on("message", (m) => m === DRAIN_MESSAGE && void hl.close(1).then(() => process.exit(0)));
  if (mode === "single" || cluster.worker?.id === 1) {
    setTimeout(() => {
      throw new Error(`thrown on purpose after listening on ${port}`);
    }, 50);
  }
}
