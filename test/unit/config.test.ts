import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  ConfigError,
  configFromOptions,
  envName,
  envValues,
  flagName,
  loadConfig,
  OPTION_DEFS,
  type HeartlineConfig,
} from "../../src/config.js";

const dir = mkdtempSync(join(tmpdir(), "heartline-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
/** Writes `content` (an object as JSON, or raw text) to a fresh file and returns its path. */
function configFile(content: unknown): string {
  const path = join(dir, `heartline-${++fileCount}.json`);
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

/** Runs `fn`, expects a ConfigError and returns its message. */
function configError(fn: () => unknown): string {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.name, "ConfigError");
  return caught.message;
}

/** The defaults of SPEC §1's option table, every option. */
const SPEC_DEFAULTS: Omit<HeartlineConfig, keyof typeof ADDED_DEFAULTS | keyof typeof HOOK_DEFAULTS | keyof typeof FAIRNESS_DEFAULTS | keyof typeof PUBLISH_DEFAULTS | keyof typeof PRESENCE_DEFAULTS | keyof typeof TLS_DEFAULTS | keyof typeof DIAG_DEFAULTS | keyof typeof MEMORY_DEFAULTS | keyof typeof WRITE_DEFAULTS> = {
  port: 8080,
  host: "0.0.0.0",
  apiKey: undefined,
  jwtSecret: undefined,
  jwtPublicKey: undefined,
  trustProxy: false,
  redis: undefined,
  heartbeatInterval: 25,
  heartbeatTimeout: 10,
  pollTimeout: 25,
  historySize: 1000,
  historyTtl: 300,
  maxConnections: 10000,
  maxConnectionsPerIp: 0,
  maxChannelsPerConnection: 100,
  maxMessageBytes: 65536,
  sendBufferBytes: 1048576,
  allowedOrigins: ["*"],
  clientPublish: [],
  workers: 1,
  transports: ["ws", "sse", "poll"],
  drainTimeout: 10,
  logLevel: "info",
};

/** Options added after SPEC §1's table, with their defaults. */
const ADDED_DEFAULTS = {
  maxChannels: 100000,
  maxHistoryBytes: 268435456,
  maxPendingConnections: 1000,
  maxPendingConnectionsPerIp: 256,
  keepAliveTimeout: 75,
};

/** The options of SPEC §8 (hooks over HTTP), after the additions. */
const HOOK_DEFAULTS = {
  proxyConnectUrl: undefined,
  proxySubscribeUrl: undefined,
  proxyPublishUrl: undefined,
  proxyRpcUrl: undefined,
  proxyTimeout: 5,
  proxyHeaders: ["cookie", "authorization", "user-agent", "x-forwarded-for", "x-request-id"],
};

/** The options of SPEC §11 (fairness). */
const FAIRNESS_DEFAULTS = {
  maxConnectionsPerUser: 0,
  clientPublishRate: 50,
  clientRpcRate: 50,
};

/** The options of SPEC §11 (publish guarantees). */
const PUBLISH_DEFAULTS = {
  idempotencyTtl: 300,
};

/** The options of SPEC §9 (presence and the event feed). */
const PRESENCE_DEFAULTS = {
  presence: [],
  presenceGrace: 5,
  eventsChannel: undefined,
};

/** The options of SPEC §12 (TLS and HTTP/2). */
const TLS_DEFAULTS = {
  tlsCert: undefined,
  tlsKey: undefined,
};

/** Path diagnostics (GET /diag, `heartline doctor`). */
const DIAG_DEFAULTS = {
  pathDiagnostics: true,
};

/** Memory. */
const MEMORY_DEFAULTS = {
  settleGc: true,
};

/** Writes. */
const WRITE_DEFAULTS = {
  writeDelayMs: 1,
};

/** Every option's default. */
const DEFAULTS: HeartlineConfig = { ...SPEC_DEFAULTS, ...ADDED_DEFAULTS, ...HOOK_DEFAULTS, ...FAIRNESS_DEFAULTS, ...PUBLISH_DEFAULTS, ...PRESENCE_DEFAULTS, ...TLS_DEFAULTS, ...DIAG_DEFAULTS, ...MEMORY_DEFAULTS, ...WRITE_DEFAULTS };

describe("config defaults", () => {
  it("equal SPEC §1's table for every option, with no flags, env or file", () => {
    assert.deepEqual(loadConfig({}, {}), DEFAULTS);
  });

  it("are the same for the library's createHeartline options", () => {
    assert.deepEqual(configFromOptions(), DEFAULTS);
    assert.deepEqual(configFromOptions({}), DEFAULTS);
  });

  it("define the options of SPEC §1, in its order, then the additions", () => {
    assert.deepEqual(Object.keys(OPTION_DEFS), [...Object.keys(SPEC_DEFAULTS), ...Object.keys(ADDED_DEFAULTS), ...Object.keys(HOOK_DEFAULTS), ...Object.keys(FAIRNESS_DEFAULTS), ...Object.keys(PUBLISH_DEFAULTS), ...Object.keys(PRESENCE_DEFAULTS), ...Object.keys(TLS_DEFAULTS), ...Object.keys(DIAG_DEFAULTS), ...Object.keys(MEMORY_DEFAULTS), ...Object.keys(WRITE_DEFAULTS)]);
    assert.deepEqual(
      Object.keys(OPTION_DEFS)
        .slice(0, Object.keys(SPEC_DEFAULTS).length)
        .map((k) => "--" + flagName(k)),
      [
        "--port",
        "--host",
        "--api-key",
        "--jwt-secret",
        "--jwt-public-key",
        "--trust-proxy",
        "--redis",
        "--heartbeat-interval",
        "--heartbeat-timeout",
        "--poll-timeout",
        "--history-size",
        "--history-ttl",
        "--max-connections",
        "--max-connections-per-ip",
        "--max-channels-per-connection",
        "--max-message-bytes",
        "--send-buffer-bytes",
        "--allowed-origins",
        "--client-publish",
        "--workers",
        "--transports",
        "--drain-timeout",
        "--log-level",
      ],
    );
  });

  it("fill every option left unset when others are given", () => {
    const c = loadConfig({ port: "9000" }, { HEARTLINE_LOG_LEVEL: "warn" });
    assert.deepEqual(c, { ...DEFAULTS, port: 9000, logLevel: "warn" });
  });
});

describe("option names", () => {
  it("map camelCase keys to flags and HEARTLINE_* variables", () => {
    assert.equal(flagName("heartbeatInterval"), "heartbeat-interval");
    assert.equal(flagName("maxConnectionsPerIp"), "max-connections-per-ip");
    assert.equal(envName("heartbeatInterval"), "HEARTLINE_HEARTBEAT_INTERVAL");
    assert.equal(envName("maxChannelsPerConnection"), "HEARTLINE_MAX_CHANNELS_PER_CONNECTION");
    assert.equal(envName("port"), "HEARTLINE_PORT");
  });

  it("read every option from its HEARTLINE_* variable", () => {
    const env: NodeJS.ProcessEnv = {};
    for (const key of Object.keys(OPTION_DEFS)) env[envName(key)] = `value-of-${key}`;
    const values = envValues(env);
    assert.deepEqual(Object.keys(values).sort(), Object.keys(OPTION_DEFS).sort());
    assert.equal(values.heartbeatInterval, "value-of-heartbeatInterval");
  });

  it("ignore unrelated and empty variables", () => {
    assert.deepEqual(envValues({ HEARTLINE_NOT_AN_OPTION: "1", PORT: "1", HEARTLINE_PORT: "", HEARTLINE_HOST: "::1" }), { host: "::1" });
    assert.deepEqual(loadConfig({}, { HEARTLINE_NOT_AN_OPTION: "1", HEARTLINE_PORT: "" }), DEFAULTS);
  });
});

describe("precedence: flags > env > file > defaults", () => {
  const file = () => configFile({ heartbeatInterval: 5, pollTimeout: 20, historySize: 50, host: "127.0.0.1" });

  it("uses the default when no layer sets the option", () => {
    assert.equal(loadConfig({}, {}).heartbeatInterval, 25);
  });

  it("file beats the default", () => {
    const c = loadConfig({}, {}, file());
    assert.equal(c.heartbeatInterval, 5);
    assert.equal(c.pollTimeout, 20);
    assert.equal(c.historySize, 50);
    assert.equal(c.host, "127.0.0.1");
  });

  it("env beats the file", () => {
    const c = loadConfig({}, { HEARTLINE_HEARTBEAT_INTERVAL: "7" }, file());
    assert.equal(c.heartbeatInterval, 7);
    assert.equal(c.pollTimeout, 20, "options the env does not set still come from the file");
  });

  it("a flag beats env and file", () => {
    const c = loadConfig({ heartbeatInterval: "9" }, { HEARTLINE_HEARTBEAT_INTERVAL: "7" }, file());
    assert.equal(c.heartbeatInterval, 9);
  });

  it("merges each option from its own highest layer", () => {
    const c = loadConfig(
      { pollTimeout: "3" },
      { HEARTLINE_HEARTBEAT_INTERVAL: "7", HEARTLINE_POLL_TIMEOUT: "4", HEARTLINE_DRAIN_TIMEOUT: "2" },
      file(),
    );
    assert.equal(c.pollTimeout, 3, "flag over env over file");
    assert.equal(c.heartbeatInterval, 7, "env over file");
    assert.equal(c.drainTimeout, 2, "env over default");
    assert.equal(c.historySize, 50, "file over default");
    assert.equal(c.heartbeatTimeout, 10, "default");
  });

  it("a flag or env value hides an invalid value of a lower layer", () => {
    const bad = configFile({ heartbeatInterval: -1 });
    assert.equal(loadConfig({}, { HEARTLINE_HEARTBEAT_INTERVAL: "7" }, bad).heartbeatInterval, 7);
    assert.equal(loadConfig({ historySize: "5" }, { HEARTLINE_HISTORY_SIZE: "-1" }).historySize, 5);
  });

  it("undefined flags (options not given on the command line) do not hide lower layers", () => {
    const c = loadConfig({ heartbeatInterval: undefined }, { HEARTLINE_HEARTBEAT_INTERVAL: "7" });
    assert.equal(c.heartbeatInterval, 7);
  });

  it("takes the config file from HEARTLINE_CONFIG when no path is given", () => {
    const c = loadConfig({}, { HEARTLINE_CONFIG: file() });
    assert.equal(c.heartbeatInterval, 5);
  });

  it("an explicit path beats HEARTLINE_CONFIG", () => {
    const other = configFile({ heartbeatInterval: 11 });
    assert.equal(loadConfig({}, { HEARTLINE_CONFIG: file() }, other).heartbeatInterval, 11);
  });
});

describe("value parsing", () => {
  it("parses numbers from strings and keeps fractional seconds", () => {
    const c = loadConfig({ port: "0", heartbeatInterval: "0.5" }, { HEARTLINE_HISTORY_SIZE: "0", HEARTLINE_MAX_MESSAGE_BYTES: "1024" });
    assert.equal(c.port, 0);
    assert.equal(c.heartbeatInterval, 0.5);
    assert.equal(c.historySize, 0);
    assert.equal(c.maxMessageBytes, 1024);
  });

  it("accepts typed values from a file and from library options", () => {
    const c = loadConfig({}, {}, configFile({ port: 1234, trustProxy: true, transports: ["sse"], clientPublish: ["game:*"] }));
    assert.equal(c.port, 1234);
    assert.equal(c.trustProxy, true);
    assert.deepEqual(c.transports, ["sse"]);
    assert.deepEqual(c.clientPublish, ["game:*"]);
    assert.equal(configFromOptions({ maxConnections: 5 }).maxConnections, 5);
  });

  it("splits comma-separated lists, trimming blanks and empty items", () => {
    const c = loadConfig(
      { allowedOrigins: "https://a.example, https://b.example,," },
      { HEARTLINE_CLIENT_PUBLISH: "game:*,chat:*", HEARTLINE_TRANSPORTS: " sse , poll " },
    );
    assert.deepEqual(c.allowedOrigins, ["https://a.example", "https://b.example"]);
    assert.deepEqual(c.clientPublish, ["game:*", "chat:*"]);
    assert.deepEqual(c.transports, ["sse", "poll"]);
  });

  it("drops repeated transports", () => {
    assert.deepEqual(loadConfig({ transports: "ws,poll,ws" }, {}).transports, ["ws", "poll"]);
  });

  it("parses booleans in their usual spellings", () => {
    for (const v of ["true", "TRUE", "1", "yes", "on", " true "]) {
      assert.equal(loadConfig({}, { HEARTLINE_TRUST_PROXY: v }).trustProxy, true, v);
    }
    for (const v of ["false", "False", "0", "no", "off"]) {
      assert.equal(loadConfig({ trustProxy: v }, { HEARTLINE_TRUST_PROXY: "true" }).trustProxy, false, v);
    }
    assert.equal(loadConfig({ trustProxy: true }, {}).trustProxy, true, "a bare --trust-proxy flag");
  });

  it("turns path diagnostics off with --path-diagnostics false or HEARTLINE_PATH_DIAGNOSTICS, and refuses other values", () => {
    assert.equal(loadConfig({ pathDiagnostics: "false" }, {}).pathDiagnostics, false);
    assert.equal(loadConfig({}, { HEARTLINE_PATH_DIAGNOSTICS: "off" }).pathDiagnostics, false);
    assert.match(configError(() => loadConfig({ pathDiagnostics: "sometimes" }, {})), /--path-diagnostics.*"sometimes".*true or false/);
  });

  it("takes --write-delay-ms in fractional milliseconds from 0 to 1000, and refuses others", () => {
    assert.equal(loadConfig({ writeDelayMs: "0" }, {}).writeDelayMs, 0);
    assert.equal(loadConfig({}, { HEARTLINE_WRITE_DELAY_MS: "2.5" }).writeDelayMs, 2.5);
    for (const bad of ["-1", "1001", "soon", "Infinity"]) {
      assert.match(configError(() => loadConfig({ writeDelayMs: bad }, {})), /--write-delay-ms.*milliseconds from 0 to 1000/, bad);
    }
  });

  it("accepts redis and rediss URLs", () => {
    assert.equal(loadConfig({ redis: "redis://127.0.0.1:6379" }, {}).redis, "redis://127.0.0.1:6379");
    assert.equal(loadConfig({ redis: "rediss://cache.example:6380/0" }, {}).redis, "rediss://cache.example:6380/0");
  });

  it("accepts several shard URLs and a Redis Cluster, and names a bad entry of a list", () => {
    assert.equal(loadConfig({ redis: "redis://a:6379,redis://b:6379" }, {}).redis, "redis://a:6379,redis://b:6379");
    assert.equal(loadConfig({ redis: "redis+cluster://a:7000,b:7001" }, {}).redis, "redis+cluster://a:7000,b:7001");
    assert.throws(() => loadConfig({ redis: "redis://a:6379,redis//b:6379" }, {}), /--redis.*entry 2 of 2 \("redis\/\/b:6379"\) is not a redis:\/\/ or rediss:\/\/ URL/);
    assert.throws(() => loadConfig({ redis: "redis+cluster://a:x" }, {}), /--redis.*cluster node 1 of 1/);
  });

  it("accepts a Redis Cluster's seed nodes, and refuses one that is not host:port, naming it", () => {
    assert.equal(loadConfig({ redis: "redis+cluster://127.0.0.1:7000,127.0.0.1:7001" }, {}).redis, "redis+cluster://127.0.0.1:7000,127.0.0.1:7001");
    const msg = configError(() => loadConfig({ redis: "redis+cluster://127.0.0.1:notaport" }, {}));
    assert.match(msg, /--redis/);
    assert.match(msg, /cluster node 1 of 1 \("127\.0\.0\.1:notaport"\) is not host:port/);
    assert.match(configError(() => loadConfig({ redis: "redis+cluster://a:1,b" }, {})), /cluster node 2 of 2 \("b"\) is not host:port/);
  });

  it("allows more than one worker together with --redis", () => {
    const c = loadConfig({ workers: "4" }, { HEARTLINE_REDIS: "redis://127.0.0.1:6379" });
    assert.equal(c.workers, 4);
    assert.equal(c.redis, "redis://127.0.0.1:6379");
  });
});

describe("refused values", () => {
  it("refuses bad presence patterns, graces and event channels, naming the option", () => {
    assert.match(configError(() => loadConfig({ presence: "room:*,bad pattern" }, {})), /--presence\b/);
    assert.match(configError(() => loadConfig({ presenceGrace: "-1" }, {})), /--presence-grace/);
    assert.match(configError(() => loadConfig({ presenceGrace: "99999" }, {})), /from 0 to 3600/);
    assert.match(configError(() => loadConfig({ eventsChannel: "has space" }, {})), /--events-channel/);
    assert.deepEqual(loadConfig({ presence: "game:*, chat:*" }, {}).presence, ["game:*", "chat:*"]);
  });

  it("names the flag, the value received and what is allowed", () => {
    const msg = configError(() => loadConfig({ heartbeatInterval: "abc" }, {}));
    assert.match(msg, /--heartbeat-interval/);
    assert.match(msg, /"abc"/);
    assert.match(msg, /a number of seconds greater than 0/);
    assert.doesNotMatch(msg, /HEARTLINE_/, "a flag value does not blame the environment");
  });

  it("names the environment variable the value came from", () => {
    const msg = configError(() => loadConfig({}, { HEARTLINE_HEARTBEAT_INTERVAL: "-3" }));
    assert.match(msg, /--heartbeat-interval/);
    assert.match(msg, /HEARTLINE_HEARTBEAT_INTERVAL/);
    assert.match(msg, /"-3"/);
    assert.match(msg, /greater than 0/);
  });

  it("names the file key and path the value came from", () => {
    const path = configFile({ pollTimeout: "soon" });
    const msg = configError(() => loadConfig({}, {}, path));
    assert.match(msg, /--poll-timeout/);
    assert.ok(msg.includes(path), msg);
    assert.match(msg, /"pollTimeout"/);
    assert.match(msg, /"soon"/);
    assert.match(msg, /greater than 0/);
  });

  it("names the option of createHeartline", () => {
    const msg = configError(() => configFromOptions({ historySize: -1 }));
    assert.match(msg, /historySize/);
    assert.match(msg, /-1/);
    assert.match(msg, /an integer from 0 to 1000000/);
  });

  const cases: Array<[string, string, RegExp]> = [
    ["port", "abc", /an integer port from 0 to 65535/],
    ["port", "65536", /an integer port from 0 to 65535/],
    ["port", "80.5", /an integer port/],
    ["heartbeatInterval", "0", /greater than 0/],
    ["heartbeatTimeout", "", /greater than 0/],
    ["pollTimeout", "Infinity", /greater than 0/],
    ["historySize", "1.5", /an integer from 0 to 1000000/],
    ["historySize", "1000001", /an integer from 0 to 1000000/],
    ["historyTtl", "-1", /greater than 0/],
    ["maxConnections", "0", /at least 1/],
    ["maxConnectionsPerIp", "-1", /at least 0/],
    ["maxChannelsPerConnection", "0", /at least 1/],
    ["maxMessageBytes", "0", /an integer from 1 to 67108864/],
    ["sendBufferBytes", "100", /at least 1024/],
    ["allowedOrigins", ",", /comma-separated list of origins/],
    ["clientPublish", "game:*,bad channel", /channel patterns/],
    ["workers", "0", /an integer from 1 to 256/],
    ["workers", "257", /an integer from 1 to 256/],
    ["transports", "ws,foo", /a comma-separated subset of ws,sse,poll/],
    ["transports", "", /a comma-separated subset of ws,sse,poll/],
    ["drainTimeout", "never", /greater than 0/],
    ["logLevel", "loud", /fatal, error, warn, info, debug, trace, silent/],
    ["trustProxy", "maybe", /true or false/],
    ["redis", "http://127.0.0.1:6379", /a redis:\/\/ or rediss:\/\/ URL/],
    ["apiKey", "", /a non-empty secret/],
  ];
  for (const [key, value, expected] of cases) {
    it(`refuses ${key}=${JSON.stringify(value)} from a flag and from env`, () => {
      const fromFlag = configError(() => loadConfig({ [key]: value }, {}));
      assert.ok(fromFlag.includes(`--${flagName(key)}`), fromFlag);
      assert.ok(fromFlag.includes(JSON.stringify(value)), fromFlag);
      assert.match(fromFlag, expected);
      if (value !== "") {
        // An empty variable counts as unset, so only non-empty values reach the parser.
        const fromEnv = configError(() => loadConfig({}, { [envName(key)]: value }));
        assert.ok(fromEnv.includes(`--${flagName(key)}`), fromEnv);
        assert.ok(fromEnv.includes(envName(key)), fromEnv);
        assert.ok(fromEnv.includes(JSON.stringify(value)), fromEnv);
        assert.match(fromEnv, expected);
      }
    });
  }

  it("refuses typed values of the wrong kind in a file", () => {
    assert.match(configError(() => loadConfig({}, {}, configFile({ trustProxy: "perhaps" }))), /--trust-proxy.*"perhaps".*true or false/);
    assert.match(configError(() => loadConfig({}, {}, configFile({ historySize: [1] }))), /--history-size.*\[1\]/);
    assert.match(configError(() => loadConfig({}, {}, configFile({ transports: ["ws", "carrier-pigeon"] }))), /--transports/);
  });

  it("refuses an unknown key in the config file, naming it and the file", () => {
    const path = configFile({ heartbeatInterval: 5, heartbeatIntervall: 6 });
    const msg = configError(() => loadConfig({}, {}, path));
    assert.match(msg, /unknown option "heartbeatIntervall"/);
    assert.ok(msg.includes(path), msg);
    assert.match(msg, /heartbeatInterval/, "the message lists the known options");
  });

  it("refuses kebab-case keys in the config file (keys are camelCase)", () => {
    assert.match(configError(() => loadConfig({}, {}, configFile({ "heartbeat-interval": 5 }))), /unknown option "heartbeat-interval"/);
  });

  it("refuses an unknown library option", () => {
    assert.match(configError(() => configFromOptions({ heartbeat: 5 } as never)), /unknown option "heartbeat"/);
  });

  it("refuses a config file that is not valid JSON", () => {
    const path = configFile('{"heartbeatInterval": 5,');
    const msg = configError(() => loadConfig({}, {}, path));
    assert.ok(msg.includes(path), msg);
    assert.match(msg, /not valid JSON/);
  });

  it("refuses a config file that is not a JSON object", () => {
    for (const text of ["[1,2]", "null", '"port"', "8080"]) {
      assert.match(configError(() => loadConfig({}, {}, configFile(text))), /must hold a JSON object/, text);
    }
  });

  it("refuses a config file that cannot be read", () => {
    const path = join(dir, "missing.json");
    const msg = configError(() => loadConfig({}, {}, path));
    assert.match(msg, /cannot read --config file/);
    assert.ok(msg.includes(path), msg);
  });

  it("refuses more than one worker without --redis", () => {
    for (const fn of [
      () => loadConfig({ workers: "2" }, {}),
      () => loadConfig({}, { HEARTLINE_WORKERS: "4" }),
      () => configFromOptions({ workers: 2 }),
    ]) {
      const msg = configError(fn);
      assert.match(msg, /--workers/);
      assert.match(msg, /requires --redis/);
    }
  });

  it("refuses --tls-cert without --tls-key and the other way round, naming the missing one", () => {
    assert.match(configError(() => loadConfig({ tlsCert: "a.crt" }, {})), /missing --tls-key/);
    assert.match(configError(() => loadConfig({}, { HEARTLINE_TLS_KEY: "a.key" })), /missing --tls-cert/);
    assert.deepEqual(
      (({ tlsCert, tlsKey }) => ({ tlsCert, tlsKey }))(configFromOptions({ tlsCert: "a.crt", tlsKey: "a.key" })),
      { tlsCert: "a.crt", tlsKey: "a.key" },
    );
  });
});

describe("hook options (SPEC §8)", () => {
  it("take http(s) URLs from flags, env and file, and refuse anything else naming the option", () => {
    const c = loadConfig({ proxyConnectUrl: "http://127.0.0.1:3000/hooks/connect" }, { HEARTLINE_PROXY_RPC_URL: "https://app.example/rpc", HEARTLINE_PROXY_TIMEOUT: "0.5" });
    assert.equal(c.proxyConnectUrl, "http://127.0.0.1:3000/hooks/connect");
    assert.equal(c.proxyRpcUrl, "https://app.example/rpc");
    assert.equal(c.proxyTimeout, 0.5);
    assert.match(configError(() => loadConfig({ proxySubscribeUrl: "ftp://x/y" }, {})), /--proxy-subscribe-url: received "ftp:\/\/x\/y"; expected an http/);
    assert.match(configError(() => loadConfig({}, { HEARTLINE_PROXY_PUBLISH_URL: "http://" })), /--proxy-publish-url \(from HEARTLINE_PROXY_PUBLISH_URL\)/);
    assert.match(configError(() => loadConfig({ proxyTimeout: "0" }, {})), /--proxy-timeout/);
  });

  it("--proxy-headers is a list of header names, lower-cased; a name with a space or colon is refused", () => {
    assert.deepEqual(loadConfig({ proxyHeaders: "Cookie, X-Tenant" }, {}).proxyHeaders, ["cookie", "x-tenant"]);
    assert.deepEqual(loadConfig({ proxyHeaders: "" }, {}).proxyHeaders, []);
    assert.match(configError(() => loadConfig({ proxyHeaders: "cookie,bad header" }, {})), /--proxy-headers/);
    assert.match(configError(() => loadConfig({ proxyHeaders: "x:y" }, {})), /--proxy-headers/);
  });
});
