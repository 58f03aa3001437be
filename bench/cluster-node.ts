/**
 * One Heartline node for bench/cluster-interest.ts, built as a library so the
 * fan-out design can be chosen: `RedisBroker` with per-channel interest (the
 * default), or with `subscribeAll` (every node receives every channel's
 * notifications).
 *
 *   node --import tsx bench/cluster-node.ts --redis redis://127.0.0.1:6400 [--subscribe-all]
 *
 * Listens on 127.0.0.1, port 0, and prints `{"msg":"listening","port":N}` on
 * stdout, as `heartline serve --log-level warn` does. SIGTERM closes it.
 */
import { parseArgs } from "node:util";
import { pino } from "pino";
import { createHeartline, RedisBroker } from "../src/index.js";

const { values } = parseArgs({
  options: {
    redis: { type: "string" },
    "subscribe-all": { type: "boolean", default: false },
  },
});
if (!values.redis) throw new Error("--redis <url> is required");

const historySize = 1000;
const historyTtl = 3600;
const broker = new RedisBroker({ url: values.redis, historySize, historyTtl, subscribeAll: values["subscribe-all"] });
const hl = createHeartline(
  {
    host: "127.0.0.1",
    historySize,
    historyTtl,
    maxConnections: 100_000,
    // The benchmark opens its subscribers from one loopback address, all at once.
    maxPendingConnectionsPerIp: 0,
    sendBufferBytes: 16 * 1024 * 1024,
  },
  { broker, logger: pino({ level: "silent" }) },
);
await hl.listen(0, "127.0.0.1");
process.stdout.write(JSON.stringify({ msg: "listening", port: hl.port }) + "\n");
const stop = (): void => {
  void hl.close(0.2).finally(() => process.exit(0));
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
