#!/usr/bin/env node
/**
 * `npm start`: Heartline in library form, serving the demo game with its
 * referee. The arena (./arena.ts) runs in this process as hooks; options come
 * from the same places as `heartline serve` (flags, `HEARTLINE_*` variables,
 * a `--config` file; flags win), and browsers may publish on `game:*` unless
 * told otherwise, the arena's own channel excepted. The arena lives in one
 * process: `--workers` must stay 1.
 *
 * As with `heartline serve`, without `--api-key` an HTTP publish from this
 * machine is the operator's and goes anywhere, `game:arena` included (the
 * next snapshot overwrites it); with a key, every publish without it is a
 * client's, and the hook refuses `game:arena`.
 */
import { Command, CommanderError, Option } from "commander";
import { drainOnSignals, installProcessHandlers } from "../cli/process.js";
import { systemClock } from "../clock.js";
import { ConfigError, envValues, fileValues, flagName, OPTION_DEFS, resolveConfig, type HeartlineConfig } from "../config.js";
import { HeartlineError } from "../errors.js";
import { createHeartline, type Heartline } from "../index.js";
import { Arena, ARENA_CHANNEL } from "./arena.js";
import { arenaHooks } from "./hooks.js";

/** Where the demo's defaults differ from `heartline serve`'s: clients publish on `game:*`, and the arena's channel tracks presence (its player list). */
const DEMO_DEFAULTS = { clientPublish: ["game:*"], presence: [ARENA_CHANNEL] };

function readConfig(argv: string[]): HeartlineConfig {
  const program = new Command().name("heartline-demo").exitOverride().option("--config <file>", "JSON file of options (camelCase keys)");
  for (const [key, def] of Object.entries(OPTION_DEFS)) {
    const flag = flagName(key);
    program.addOption(key === "trustProxy" ? new Option(`--${flag} [bool]`, def.help) : new Option(`--${flag} <value>`, def.help));
  }
  const { config: configPath, ...flags } = program.parse(argv).opts<Record<string, unknown>>();
  const path = (configPath as string | undefined) ?? process.env.HEARTLINE_CONFIG;
  const config = resolveConfig([
    { values: DEMO_DEFAULTS, source: { kind: "default" } },
    ...(path ? [{ values: fileValues(path), source: { kind: "file" as const, where: path } }] : []),
    { values: envValues(process.env), source: { kind: "env" } },
    { values: flags, source: { kind: "flag" } },
  ]);
  if (config.workers !== 1) throw new ConfigError(`invalid value for --workers: received ${config.workers}; the demo keeps its arena in one process`);
  return config;
}

/** Starts the server and the drain on SIGINT/SIGTERM. */
async function main(): Promise<void> {
  let hl: Heartline;
  let arena: Arena;
  try {
    const config = readConfig(process.argv);
    arena = new Arena({
      clock: systemClock,
      publish: (channel, data) => hl.publish(channel, data),
      onError: (err) => hl.log.warn({ err }, "arena snapshot not published"),
    });
    hl = createHeartline(config, { hooks: arenaHooks(arena, { clientPublish: config.clientPublish, tokens: config.jwtSecret !== undefined || config.jwtPublicKey !== undefined }) });
    const address = await hl.listen(config.port, config.host);
    // The port line is part of the CLI's contract: print it even when info logs are off.
    if (!hl.log.isLevelEnabled("info")) process.stdout.write(JSON.stringify({ msg: "listening", port: address.port }) + "\n");
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
    process.stderr.write(`heartline-demo: ${(err as Error).message}\n`);
    process.exit(err instanceof ConfigError || err instanceof HeartlineError ? 2 : 1);
  }
  drainOnSignals(hl, () => arena.close());
  installProcessHandlers(hl.log);
}

await main();
