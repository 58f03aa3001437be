#!/usr/bin/env node
/** The `heartline` command: `serve`, `publish`, `subscribe`, `doctor`. */
import cluster from "node:cluster";
import { Command, CommanderError, Option } from "commander";
import { createTokenVerifier } from "./auth/tokens.js";
import { ConfigError, flagName, loadConfig, OPTION_DEFS } from "./config.js";
import { HeartlineError } from "./errors.js";
import { Heartline } from "./server.js";
import { publishCommand } from "./cli/publish.js";
import { subscribeCommand } from "./cli/subscribe.js";
import { doctorCommand } from "./cli/doctor.js";
import { DRAIN_MESSAGE, runPrimary } from "./cli/cluster.js";
import { drainOnSignals, installProcessHandlers, reloadOnHangup } from "./cli/process.js";
import { readTlsPair } from "./server/tls.js";

const program = new Command();
program.name("heartline").description("Real-time HTTP push: WebSocket, Server-Sent Events and long polling").exitOverride();

const serve = program.command("serve").description("run the Heartline server").option("--config <file>", "JSON file of options (camelCase keys)");
for (const [key, def] of Object.entries(OPTION_DEFS)) {
  const flag = flagName(key);
  const opt = key === "trustProxy" ? new Option(`--${flag} [bool]`, def.help) : new Option(`--${flag} <value>`, def.help);
  serve.addOption(opt);
}
serve.action(async (flags: Record<string, unknown>) => {
  const { config: configPath, ...rest } = flags;
  let hl: Heartline;
  try {
    const config = loadConfig(rest, process.env, configPath as string | undefined);
    // A bad --jwt-public-key, --tls-cert or --tls-key file stops here, before any worker is forked.
    createTokenVerifier(config);
    if (config.tlsCert !== undefined && config.tlsKey !== undefined) readTlsPair(config.tlsCert, config.tlsKey);
    if (config.workers > 1 && cluster.isPrimary) {
      runPrimary(config);
      return;
    }
    hl = new Heartline(config);
    const address = await hl.listen(config.port, config.host);
    // The port line is part of the CLI's contract: print it even when info logs are off.
    if (!hl.log.isLevelEnabled("info")) process.stdout.write(JSON.stringify({ msg: "listening", port: address.port }) + "\n");
  } catch (err) {
    if (err instanceof ConfigError || err instanceof HeartlineError) {
      process.stderr.write(`heartline: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`heartline: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const shutdown = drainOnSignals(hl);
  if (hl.config.tlsCert !== undefined) reloadOnHangup(hl);
  if (cluster.isWorker) process.on("message", (m) => m === DRAIN_MESSAGE && shutdown("primary"));
  installProcessHandlers(hl.log);
});

const defaultUrl = process.env.HEARTLINE_URL ?? "http://localhost:8080";

program
  .command("publish")
  .description("publish one message: heartline publish chat:lobby '{\"text\":\"hi\"}'")
  .argument("<channel>")
  .argument("<json>")
  .option("--url <url>", "server URL", defaultUrl)
  .option("--api-key <key>", "API key (or HEARTLINE_API_KEY)", process.env.HEARTLINE_API_KEY)
  .action(async (channel: string, json: string, opts: { url: string; apiKey?: string }) => {
    process.exitCode = await publishCommand(channel, json, opts);
  });

program
  .command("subscribe")
  .description("print one JSON line per message")
  .argument("<channel...>")
  .option("--url <url>", "server URL", defaultUrl)
  .addOption(new Option("--transport <name>", "transport").choices(["ws", "sse", "poll"]).default("ws"))
  .option("--cursor <cursor>", "resume after this cursor")
  .option("--token <token>", "subscriber token (or HEARTLINE_TOKEN)", process.env.HEARTLINE_TOKEN)
  .option("--count <n>", "exit after n messages", (v) => Number.parseInt(v, 10))
  .action(async (channels: string[], opts: { url: string; transport: "ws" | "sse" | "poll"; cursor?: string; token?: string; count?: number }) => {
    process.exit(await subscribeCommand(channels, opts));
  });

program
  .command("doctor")
  .description("measure the path to a Heartline server: WebSocket upgrades, SSE buffering, long-poll holds, idle cuts")
  .argument("<url>", "the server's public URL, as clients use it (http(s)://host[:port][/prefix])")
  .option("--max-idle <seconds>", "longest silence to measure, 1 to 120", "120")
  .option("--json", "print the report as JSON")
  .option("--token <token>", "subscriber token for /ws and /poll (or HEARTLINE_TOKEN)", process.env.HEARTLINE_TOKEN)
  .action(async (url: string, opts: { maxIdle: string; json?: boolean; token?: string }) => {
    process.exit(await doctorCommand(url, opts));
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  throw err;
}
