/**
 * The one option schema of Heartline. Every `serve` option is defined here
 * once, with its default, its parser and the sentence shown when a value is
 * wrong; flags, `HEARTLINE_*` environment variables, the `--config` JSON file
 * and the library's `createHeartline(options)` all go through it.
 * Precedence: flags > environment > file > defaults.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { CHANNEL_NAME_RE, CHANNEL_PATTERN_RE } from "./channel-rules.js";
import { parseRedisTopology } from "./redis-topology.js";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
const TRANSPORTS = ["ws", "sse", "poll"] as const;
export type TransportName = (typeof TRANSPORTS)[number];

const toNumber = (v: unknown) => (typeof v === "string" && v.trim() !== "" ? Number(v) : v);
const toList = (v: unknown) =>
  typeof v === "string" ? v.split(",").map((s) => s.trim()).filter((s) => s.length > 0) : v;
const toBool = (v: unknown) => {
  if (typeof v !== "string") return v;
  const s = v.trim().toLowerCase();
  if (["true", "1", "yes", "on"].includes(s)) return true;
  if (["false", "0", "no", "off"].includes(s)) return false;
  return v;
};

const seconds = (min: number) => z.preprocess(toNumber, z.number().finite().gt(min));
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.preprocess(toNumber, z.number().int().min(min).max(max));
const optString = z.string().min(1).optional();
const httpUrl = z.string().regex(/^https?:\/\/\S+$/).refine((u) => URL.canParse(u)).optional();

interface OptionDef {
  schema: z.ZodType;
  default: unknown;
  /** What is allowed, in words, for the error message. */
  expected: string;
  help: string;
  /** A further check of a value the schema accepted; throws an Error saying what is wrong with it. */
  check?: (value: never) => void;
}

/** Every `serve` option: those of SPEC §1 in its order, then additions. Keys are the camelCase names. */
export const OPTION_DEFS = {
  port: { schema: int(0, 65535), default: 8080, expected: "an integer port from 0 to 65535 (0 = any free port)", help: "TCP port" },
  host: { schema: z.string().min(1), default: "0.0.0.0", expected: "a bind address", help: "bind address" },
  apiKey: { schema: optString, default: undefined, expected: "a non-empty secret", help: "secret for the publish API" },
  jwtSecret: { schema: optString, default: undefined, expected: "a non-empty HS256 secret", help: "HS256 secret for subscriber tokens" },
  jwtPublicKey: { schema: optString, default: undefined, expected: "the path of a PEM public key", help: "PEM file of an RS256/ES256 public key" },
  trustProxy: { schema: z.preprocess(toBool, z.boolean()), default: false, expected: "true or false", help: "take the client address from X-Forwarded-For" },
  redis: {
    schema: z.string().regex(/^rediss?(\+cluster)?:\/\/\S+$/).optional(),
    default: undefined,
    expected: "a redis:// or rediss:// URL, several separated by commas (shards), or redis+cluster://host:port[,host:port…]",
    help: "Redis for cluster mode: a URL, comma-separated shard URLs, or redis+cluster://host:port,… (Redis Cluster)",
    check: (value: string) => void parseRedisTopology(value),
  },
  heartbeatInterval: { schema: seconds(0), default: 25, expected: "a number of seconds greater than 0", help: "seconds of silence before a heartbeat" },
  heartbeatTimeout: { schema: seconds(0), default: 10, expected: "a number of seconds greater than 0", help: "seconds a WebSocket peer has to answer a heartbeat" },
  pollTimeout: { schema: seconds(0), default: 25, expected: "a number of seconds greater than 0", help: "longest hold of a long-poll request" },
  historySize: { schema: int(0, 1_000_000), default: 1000, expected: "an integer from 0 to 1000000", help: "messages kept per channel for resume" },
  historyTtl: { schema: seconds(0), default: 300, expected: "a number of seconds greater than 0", help: "seconds a channel's history is kept after its last message" },
  maxConnections: { schema: int(1), default: 10000, expected: "an integer of at least 1", help: "open subscriber connections per process" },
  maxConnectionsPerIp: { schema: int(0), default: 0, expected: "an integer of at least 0 (0 = unlimited)", help: "open subscriber connections per client address" },
  maxChannelsPerConnection: { schema: int(1), default: 100, expected: "an integer of at least 1", help: "channels one connection may subscribe to" },
  maxMessageBytes: { schema: int(1, 64 * 1024 * 1024), default: 65536, expected: "an integer from 1 to 67108864", help: "size of one published data as JSON" },
  sendBufferBytes: { schema: int(1024), default: 1048576, expected: "an integer of at least 1024", help: "unsent bytes a connection may queue" },
  allowedOrigins: { schema: z.preprocess(toList, z.array(z.string().min(1)).min(1)), default: ["*"], expected: "a comma-separated list of origins, or *", help: "CORS / WebSocket Origin allow-list" },
  clientPublish: {
    schema: z.preprocess(toList, z.array(z.string().regex(CHANNEL_PATTERN_RE))),
    default: [],
    expected: "a comma-separated list of channel patterns such as game:*",
    help: "channel patterns clients may publish to",
  },
  workers: { schema: int(1, 256), default: 1, expected: "an integer from 1 to 256", help: "worker processes (more than 1 requires --redis)" },
  transports: {
    schema: z.preprocess(toList, z.array(z.enum(TRANSPORTS)).min(1)),
    default: ["ws", "sse", "poll"],
    expected: "a comma-separated subset of ws,sse,poll",
    help: "transports this server offers",
  },
  drainTimeout: { schema: seconds(0), default: 10, expected: "a number of seconds greater than 0", help: "seconds to drain on SIGTERM/SIGINT" },
  logLevel: { schema: z.enum(LOG_LEVELS), default: "info", expected: LOG_LEVELS.join(", "), help: "log level" },
  // Additions to SPEC §1's table.
  maxChannels: { schema: int(1), default: 100_000, expected: "an integer of at least 1", help: "channels the memory broker keeps state for" },
  maxHistoryBytes: {
    schema: int(1024),
    default: 256 * 1024 * 1024,
    expected: "an integer of at least 1024",
    help: "bytes of history the memory broker keeps across all channels",
  },
  maxPendingConnections: {
    schema: int(0),
    default: 1000,
    expected: "an integer of at least 0 (0 = unlimited)",
    help: "open sockets that are not subscriber connections (requests in progress, idle keep-alive), per process",
  },
  maxPendingConnectionsPerIp: {
    schema: int(0),
    default: 256,
    expected: "an integer of at least 0 (0 = unlimited)",
    help: "the same, per peer address (not applied with --trust-proxy)",
  },
  keepAliveTimeout: {
    schema: seconds(0),
    default: 75,
    expected: "a number of seconds greater than 0",
    help: "seconds an idle kept-alive HTTP connection stays open (longer than the proxy's)",
  },
  // The application's hooks over HTTP (SPEC §8).
  proxyConnectUrl: { schema: httpUrl, default: undefined, expected: "an http:// or https:// URL", help: "URL of the connect hook" },
  proxySubscribeUrl: { schema: httpUrl, default: undefined, expected: "an http:// or https:// URL", help: "URL of the subscribe hook" },
  proxyPublishUrl: { schema: httpUrl, default: undefined, expected: "an http:// or https:// URL", help: "URL of the publish hook" },
  proxyRpcUrl: { schema: httpUrl, default: undefined, expected: "an http:// or https:// URL", help: "URL of the rpc hook" },
  proxyTimeout: { schema: seconds(0), default: 5, expected: "a number of seconds greater than 0", help: "seconds a hook has to answer" },
  proxyHeaders: {
    schema: z.preprocess(toList, z.array(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/).transform((h) => h.toLowerCase()))),
    default: ["cookie", "authorization", "user-agent", "x-forwarded-for", "x-request-id"],
    expected: "a comma-separated list of header names",
    help: "request headers given to hooks",
  },
  // Fairness (SPEC §11).
  maxConnectionsPerUser: { schema: int(0), default: 0, expected: "an integer of at least 0 (0 = unlimited)", help: "open WebSocket and SSE connections per user" },
  clientPublishRate: {
    schema: z.preprocess(toNumber, z.number().finite().min(0)),
    default: 50,
    expected: "a number of messages per second of at least 0 (0 = unlimited)",
    help: "client publishes per second per WebSocket (bursts of twice that)",
  },
  clientRpcRate: {
    schema: z.preprocess(toNumber, z.number().finite().min(0)),
    default: 50,
    expected: "a number of calls per second of at least 0 (0 = unlimited)",
    help: "RPCs per second per WebSocket (bursts of twice that)",
  },
  // Publish guarantees (SPEC §11).
  idempotencyTtl: {
    schema: seconds(0),
    default: 300,
    expected: "a number of seconds greater than 0",
    help: "seconds a publish's idempotencyKey is remembered (a repeat within it answers the first result)",
  },
  // Presence and the backend event feed (SPEC §9).
  presence: {
    schema: z.preprocess(toList, z.array(z.string().regex(CHANNEL_PATTERN_RE))),
    default: [],
    expected: "a comma-separated list of channel patterns such as game:*,chat:*",
    help: "channel patterns that track presence (join/leave, snapshots, GET /api/presence)",
  },
  presenceGrace: {
    schema: z.preprocess(toNumber, z.number().finite().min(0).max(3600)),
    default: 5,
    expected: "a number of seconds from 0 to 3600",
    help: "seconds a member whose connection ended stays present (a reconnect within it causes no leave/join)",
  },
  eventsChannel: {
    schema: z.string().regex(CHANNEL_NAME_RE).optional(),
    default: undefined,
    expected: "a channel name such as system:events",
    help: "channel the backend event feed (connect, disconnect, join, leave, occupied, vacated) is published on",
  },
  // TLS and HTTP/2 (SPEC §12).
  tlsCert: {
    schema: optString,
    default: undefined,
    expected: "the path of a PEM certificate (chain)",
    help: "PEM certificate file: serve HTTPS with HTTP/2 and HTTP/1.1 (requires --tls-key; re-read on SIGHUP)",
  },
  tlsKey: { schema: optString, default: undefined, expected: "the path of a PEM private key", help: "PEM private key file of --tls-cert" },
  // Path diagnostics (GET /diag, used by `heartline doctor`).
  pathDiagnostics: {
    schema: z.preprocess(toBool, z.boolean()),
    default: true,
    expected: "true or false",
    help: "serve GET /diag, the endpoint `heartline doctor` measures proxies and load balancers with",
  },
  // Memory.
  settleGc: {
    schema: z.preprocess(toBool, z.boolean()),
    default: true,
    expected: "true or false",
    help: "one garbage collection once a burst of 1,000+ new connections has settled, so its garbage leaves resident memory",
  },
  // Writes.
  writeDelayMs: {
    schema: z.preprocess(toNumber, z.number().finite().min(0).max(1000)),
    default: 1,
    expected: "a number of milliseconds from 0 to 1000",
    help: "under load, gather what goes to each connection for up to this long and write it at once (0: write at the end of every event-loop turn)",
  },
} satisfies Record<string, OptionDef>;

export type OptionName = keyof typeof OPTION_DEFS;

/** Validated options, every field filled in. */
export interface HeartlineConfig {
  port: number;
  host: string;
  apiKey: string | undefined;
  jwtSecret: string | undefined;
  jwtPublicKey: string | undefined;
  trustProxy: boolean;
  redis: string | undefined;
  heartbeatInterval: number;
  heartbeatTimeout: number;
  pollTimeout: number;
  historySize: number;
  historyTtl: number;
  maxChannels: number;
  maxHistoryBytes: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  maxChannelsPerConnection: number;
  maxMessageBytes: number;
  sendBufferBytes: number;
  allowedOrigins: string[];
  clientPublish: string[];
  workers: number;
  transports: TransportName[];
  drainTimeout: number;
  logLevel: (typeof LOG_LEVELS)[number];
  maxPendingConnections: number;
  maxPendingConnectionsPerIp: number;
  keepAliveTimeout: number;
  proxyConnectUrl: string | undefined;
  proxySubscribeUrl: string | undefined;
  proxyPublishUrl: string | undefined;
  proxyRpcUrl: string | undefined;
  proxyTimeout: number;
  proxyHeaders: string[];
  maxConnectionsPerUser: number;
  clientPublishRate: number;
  clientRpcRate: number;
  idempotencyTtl: number;
  presence: string[];
  presenceGrace: number;
  eventsChannel: string | undefined;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  pathDiagnostics: boolean;
  settleGc: boolean;
  writeDelayMs: number;
}

/** Options as a user writes them: any subset, values typed or as strings. */
export type HeartlineOptions = { [K in OptionName]?: unknown };

/** A configuration value was refused; the message names option, value and what is allowed. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** `heartbeatInterval` → `heartbeat-interval`. */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/** `heartbeatInterval` → `HEARTLINE_HEARTBEAT_INTERVAL`. */
export function envName(key: string): string {
  return "HEARTLINE_" + flagName(key).replace(/-/g, "_").toUpperCase();
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

type Source = { kind: "default" | "file" | "env" | "flag" | "option"; where?: string };

function sourceText(key: string, src: Source): string {
  switch (src.kind) {
    case "flag":
      return `--${flagName(key)}`;
    case "env":
      return `--${flagName(key)} (from ${envName(key)})`;
    case "file":
      return `--${flagName(key)} (from "${key}" in ${src.where})`;
    default:
      return `option ${key}`;
  }
}

/**
 * Merges the layers (later wins) and validates every value once. Throws
 * {@link ConfigError} naming the option, the value received and what is allowed.
 */
export function resolveConfig(layers: Array<{ values: Record<string, unknown>; source: Source }>): HeartlineConfig {
  const raw: Record<string, { value: unknown; source: Source }> = {};
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer.values)) {
      if (value === undefined) continue;
      if (!(key in OPTION_DEFS)) {
        const where = layer.source.kind === "file" ? ` in ${layer.source.where}` : "";
        throw new ConfigError(`unknown option "${key}"${where}; known options: ${Object.keys(OPTION_DEFS).join(", ")}`);
      }
      raw[key] = { value, source: layer.source };
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(OPTION_DEFS) as Array<[string, OptionDef]>) {
    const entry = raw[key];
    if (!entry) {
      out[key] = def.default;
      continue;
    }
    const parsed = def.schema.safeParse(entry.value);
    if (!parsed.success) {
      throw new ConfigError(`invalid value for ${sourceText(key, entry.source)}: received ${describe(entry.value)}; expected ${def.expected}`);
    }
    if (def.check && parsed.data !== undefined) {
      try {
        def.check(parsed.data as never);
      } catch (err) {
        throw new ConfigError(`invalid value for ${sourceText(key, entry.source)}: ${(err as Error).message}; expected ${def.expected}`);
      }
    }
    out[key] = parsed.data === undefined ? def.default : parsed.data;
  }
  const config = out as unknown as HeartlineConfig;
  config.transports = [...new Set(config.transports)];
  if (config.workers > 1 && !config.redis) {
    throw new ConfigError(`invalid value for --workers: received ${config.workers}; more than 1 worker requires --redis`);
  }
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    const missing = config.tlsCert === undefined ? "--tls-cert" : "--tls-key";
    throw new ConfigError(`missing ${missing}: --tls-cert and --tls-key are given together`);
  }
  return config;
}

/** Options given to `createHeartline()` (no env, no file). */
export function configFromOptions(options: HeartlineOptions = {}): HeartlineConfig {
  return resolveConfig([{ values: options as Record<string, unknown>, source: { kind: "option" } }]);
}

/** The `HEARTLINE_*` variables that name a known option. */
export function envValues(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const key of Object.keys(OPTION_DEFS)) {
    const v = env[envName(key)];
    if (v !== undefined && v !== "") values[key] = v;
  }
  return values;
}

/** Reads a `--config` JSON file of camelCase keys. */
export function fileValues(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read --config file ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`--config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new ConfigError(`--config file ${path} must hold a JSON object of options`);
  }
  return parsed as Record<string, unknown>;
}

/** Flags (already camelCased by the CLI parser), env and file, merged and validated. */
export function loadConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv, configPath?: string): HeartlineConfig {
  const path = configPath ?? env.HEARTLINE_CONFIG;
  const layers: Array<{ values: Record<string, unknown>; source: Source }> = [];
  if (path) layers.push({ values: fileValues(path), source: { kind: "file", where: path } });
  layers.push({ values: envValues(env), source: { kind: "env" } });
  layers.push({ values: flags, source: { kind: "flag" } });
  return resolveConfig(layers);
}
