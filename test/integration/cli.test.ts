/**
 * The `heartline` command, run as a real process: `serve` option errors,
 * the config file, `publish`, `subscribe` on every transport, `--cursor`,
 * and graceful shutdown on SIGTERM / SIGINT.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { nowSec, sign } from "../helpers/auth.js";
import { freePort } from "../helpers/redis.js";
import { makeCert } from "../helpers/tls.js";
import { getJson, refused, waitFor, WsClient } from "../helpers/server.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
// The built CLI, as users run it (`npm test` builds first): starting it is far
// cheaper than transpiling src/ in every spawned process.
const CLI = join(ROOT, "dist", "cli.js");

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The test runner's environment without any HEARTLINE_* variable, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("HEARTLINE_")) env[k] = v;
  return { ...env, ...extra };
}

const running = new Set<ChildProcess>();

function runCli(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  const run: Run = {
    child,
    stdout: "",
    stderr: "",
    exited: new Promise((resolve) =>
      // 'close', not 'exit': only then has everything the process wrote to stdout and stderr been read.
      child.on("close", (code, signal) => {
        running.delete(child);
        resolve({ code, signal });
      }),
    ),
  };
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (run.stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (run.stderr += d));
  return run;
}

/** Runs the CLI to completion with a time limit. */
async function runToExit(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000) {
  const run = runCli(args, env);
  const timer = setTimeout(() => run.child.kill("SIGKILL"), timeoutMs);
  const { code, signal } = await run.exited;
  clearTimeout(timer);
  return { code, signal, stdout: run.stdout, stderr: run.stderr };
}

/** stdout parsed as JSON lines. */
function jsonLines(text: string): any[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l));
}

interface Served extends Run {
  port: number;
  url: string;
}

/** Starts `heartline serve` on port 0 and waits for its `listening` log line. */
async function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const run = runCli(["serve", "--port", "0", "--host", "127.0.0.1", ...args], env);
  const line = await waitFor(
    () => {
      if (run.child.exitCode !== null) throw new Error(`serve exited early (${run.child.exitCode}): ${run.stderr}${run.stdout}`);
      for (const l of run.stdout.split("\n")) {
        if (!l.startsWith("{")) continue;
        const o = JSON.parse(l);
        if (o.msg === "listening") return o as { msg: string; port: number };
      }
      return undefined;
    },
    30_000,
    "the listening log line",
  );
  assert.equal(typeof line.port, "number");
  assert.ok(line.port > 0);
  return Object.assign(run, { port: line.port, url: `http://127.0.0.1:${line.port}` });
}

async function publish(server: Served, channel: string, data: unknown, apiKey?: string) {
  const res = await getJson(`${server.url}/api/publish`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(apiKey ? { Authorization: `Bearer ${apiKey}` } : {}) },
    body: JSON.stringify({ channel, data }),
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body as { channel: string; epoch: string; offset: number };
}

/** Open subscriber connections of one transport, read from /metrics. */
async function metricConnections(server: Served, transport: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const m = new RegExp(`^heartline_connections\\{transport="${transport}"\\} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}

/** A WebSocket opened by hand that never answers anything, not even the close frame. */
async function silentWebSocket(port: number): Promise<{ socket: Socket; received: () => Buffer; closed: Promise<void> }> {
  const socket = connect(port, "127.0.0.1");
  const chunks: Buffer[] = [];
  socket.on("data", (d: Buffer) => chunks.push(d));
  socket.on("error", () => {});
  const closed = new Promise<void>((r) => socket.on("close", () => r()));
  await new Promise((r) => socket.once("connect", r));
  socket.write(
    `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await waitFor(() => Buffer.concat(chunks).includes("\r\n\r\n"), 5000, "the 101 response");
  assert.match(Buffer.concat(chunks).toString("latin1"), /^HTTP\/1\.1 101 /);
  return { socket, received: () => Buffer.concat(chunks), closed };
}

const tmp = mkdtempSync(join(tmpdir(), "heartline-cli-"));

after(() => {
  for (const c of running) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

describe("heartline CLI", { concurrency: true }, () => {
  describe("heartline serve: refused options", { concurrency: true }, () => {
    const refusedWith = async (args: string[], env: Record<string, string>, ...patterns: RegExp[]) => {
      const r = await runToExit(args, env);
      assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
      for (const p of patterns) assert.match(r.stderr, p);
      assert.doesNotMatch(r.stdout, /"msg":"listening"/, "it never listened");
      return r;
    };

    it("--port abc exits 2 naming the flag, the value and what is allowed", async () => {
      await refusedWith(["serve", "--port", "abc"], {}, /--port/, /"abc"/, /an integer port from 0 to 65535/);
    });

    it("HEARTLINE_HISTORY_SIZE=-1 exits 2 naming the flag, the variable, the value and what is allowed", async () => {
      await refusedWith(
        ["serve", "--port", "0"],
        { HEARTLINE_HISTORY_SIZE: "-1" },
        /--history-size/,
        /HEARTLINE_HISTORY_SIZE/,
        /"-1"/,
        /an integer from 0 to 1000000/,
      );
    });

    it("--transports ws,foo exits 2 naming the flag, the value and what is allowed", async () => {
      await refusedWith(["serve", "--port", "0", "--transports", "ws,foo"], {}, /--transports/, /"ws,foo"/, /a comma-separated subset of ws,sse,poll/);
    });

    it("--jwt-public-key naming a file that is not a PEM public key exits 2 naming the flag and what is expected", async () => {
      const file = join(tmp, "not-a-key.pem");
      writeFileSync(file, "hello\n");
      await refusedWith(["serve", "--port", "0", "--jwt-public-key", file], {}, /--jwt-public-key/, /not-a-key\.pem/, /is not a PEM public key/);
    });

    it("--redis with a bad entry in its list of shards exits 2 naming the entry", async () => {
      await refusedWith(["serve", "--port", "0", "--redis", "redis://127.0.0.1:1,redis:/127.0.0.1:2"], {}, /--redis/, /entry 2 of 2/, /"redis:\/127\.0\.0\.1:2"/);
    });

    it("--workers 2 without --redis exits 2", async () => {
      await refusedWith(["serve", "--port", "0", "--workers", "2"], {}, /--workers/, /received 2/, /requires --redis/);
    });
  });

  describe("heartline serve with a config file, env and flags; publish and subscribe", { concurrency: false }, () => {
    let s: Served;
    const KEY = "flag-key";

    before(async () => {
      const file = join(tmp, "heartline.json");
      writeFileSync(file, JSON.stringify({ heartbeatInterval: 1, pollTimeout: 20, historySize: 100, apiKey: "file-key" }));
      s = await serve(["--config", file, "--poll-timeout", "1", "--api-key", KEY], { HEARTLINE_HISTORY_SIZE: "3" });
    });
    after(async () => {
      s.child.kill("SIGTERM");
      await s.exited;
    });

    it("logs {msg: listening, port} as a JSON line on stdout and answers on that port", async () => {
      const health = await getJson(`${s.url}/healthz`);
      assert.equal(health.status, 200);
    });

    it("reads heartbeatInterval from the file: a WebSocket gets a heartbeat within about a second", async () => {
      const ws = await WsClient.connect(`ws://127.0.0.1:${s.port}/ws?channel=cfg:hb`);
      try {
        const t0 = Date.now();
        await ws.next((f) => f.type === "subscribed");
        assert.deepEqual(await ws.next((f) => f.type === "ping", 3000), { type: "ping" });
        assert.ok(Date.now() - t0 < 3000);
      } finally {
        ws.close();
        await ws.closed;
      }
    });

    it("--poll-timeout on the command line beats pollTimeout of the file", async () => {
      const first = await getJson(`${s.url}/poll?channel=cfg:poll`);
      const t0 = Date.now();
      const held = await getJson(`${s.url}/poll?channel=cfg:poll&cursor=${first.body.cursor}`);
      const elapsed = Date.now() - t0;
      assert.equal(held.status, 200);
      assert.deepEqual(held.body, { messages: [], cursor: first.body.cursor, resets: [], presence: [] });
      assert.ok(elapsed >= 700, `held ${elapsed} ms`);
      assert.ok(elapsed < 4000, `held ${elapsed} ms; the file's 20 s would have applied`);
    });

    it("HEARTLINE_HISTORY_SIZE beats historySize of the file", async () => {
      const first = await getJson(`${s.url}/poll?channel=cfg:hist`);
      for (let i = 1; i <= 5; i++) await publish(s, "cfg:hist", i, KEY);
      const res = await getJson(`${s.url}/poll?channel=cfg:hist&cursor=${first.body.cursor}`);
      assert.equal(res.status, 200);
      assert.equal(res.body.resets.length, 1, "only 3 messages were kept, so the position is gone");
      assert.equal(res.body.resets[0].channel, "cfg:hist");
      assert.ok(res.body.messages.length <= 3);
    });

    it("--api-key on the command line beats apiKey of the file", async () => {
      const withFileKey = await getJson(`${s.url}/api/publish`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer file-key" },
        body: JSON.stringify({ channel: "cfg:key", data: 1 }),
      });
      assert.equal(withFileKey.status, 401);
      assert.equal(withFileKey.body.error.code, "unauthorized");
      assert.equal((await publish(s, "cfg:key", 1, KEY)).offset, 1);
    });

    it("heartline publish prints {channel, epoch, offset} and exits 0; the wrong key exits non-zero with the JSON error", async () => {
      const before = await getJson(`${s.url}/poll?channel=cli:pub`);
      const [ok, wrong] = await Promise.all([
        runToExit(["publish", "cli:pub", '{"text":"hi"}', "--url", s.url, "--api-key", KEY]),
        runToExit(["publish", "cli:pub", '{"text":"no"}', "--url", s.url, "--api-key", "wrong"]),
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      const printed = jsonLines(ok.stdout);
      assert.equal(printed.length, 1);
      assert.deepEqual(Object.keys(printed[0]).sort(), ["channel", "epoch", "offset"]);
      assert.equal(printed[0].channel, "cli:pub");
      assert.equal(printed[0].offset, 1);
      assert.equal(typeof printed[0].epoch, "string");

      assert.notEqual(wrong.code, 0);
      assert.equal(wrong.stdout, "");
      const [err] = jsonLines(wrong.stderr);
      assert.equal(err.error.code, "unauthorized");
      assert.equal(typeof err.error.message, "string");

      // Only the accepted message was stored, with the data given on the command line.
      const after = await getJson(`${s.url}/poll?channel=cli:pub&cursor=${before.body.cursor}`);
      assert.deepEqual(after.body.messages, [{ channel: "cli:pub", offset: 1, data: { text: "hi" } }]);
    });

    it("heartline subscribe prints exactly one JSON line (the message object) per message, on ws, sse and poll", async () => {
      const data = [{ text: "line one\nline two" }, "caf\u00e9 \u2615", [1, { nested: null }]];
      await Promise.all(
        (["ws", "sse", "poll"] as const).map(async (transport) => {
          const a = `sub:${transport}`;
          const b = `sub:${transport}:other`;
          const sub = runCli(["subscribe", a, b, "--url", s.url, "--transport", transport, "--count", String(data.length + 1)]);
          const timer = setTimeout(() => sub.child.kill("SIGKILL"), 30_000);
          try {
            if (transport === "poll") {
              // The first poll (no cursor) reports the current position on stderr.
              await waitFor(() => sub.stderr.includes('"cursor"'), 20_000, "the poll subscriber's first cursor");
            } else {
              const subscribers = async (c: string) => (await getJson(`${s.url}/api/channels/${c}`, { headers: { authorization: `Bearer ${KEY}` } })).body.subscribers;
              await waitFor(async () => (await subscribers(a)) === 1 && (await subscribers(b)) === 1, 20_000, `the ${transport} subscriber`);
            }
            for (const d of data) await publish(s, a, d, KEY);
            await publish(s, b, "on the other channel", KEY);
            const { code } = await sub.exited;
            assert.equal(code, 0, `${transport}: ${sub.stderr}`);
            const lines = sub.stdout.split("\n");
            assert.equal(lines.pop(), "", `${transport}: stdout ends with a newline`);
            assert.equal(lines.length, data.length + 1, `${transport}: one line per message`);
            assert.deepEqual(
              lines.map((l) => JSON.parse(l)),
              [...data.map((d, i) => ({ channel: a, offset: i + 1, data: d })), { channel: b, offset: 1, data: "on the other channel" }],
              transport,
            );
          } finally {
            clearTimeout(timer);
          }
        }),
      );
    });

    it("heartline subscribe --cursor resumes after the cursor's position", async () => {
      await publish(s, "cur:x", "before", KEY);
      const at = await getJson(`${s.url}/poll?channel=cur:x`);
      const cursor = at.body.cursor as string;
      assert.match(cursor, /^[A-Za-z0-9\-._~]+$/);
      await publish(s, "cur:x", "after-1", KEY);
      await publish(s, "cur:x", "after-2", KEY);
      const expected = [
        { channel: "cur:x", offset: 2, data: "after-1" },
        { channel: "cur:x", offset: 3, data: "after-2" },
      ];
      const runs = await Promise.all(
        (["poll", "ws"] as const).map((transport) =>
          runToExit(["subscribe", "cur:x", "--url", s.url, "--transport", transport, "--cursor", cursor, "--count", "2"]),
        ),
      );
      for (const [i, transport] of (["poll", "ws"] as const).entries()) {
        const r = runs[i]!;
        assert.equal(r.code, 0, `${transport}: ${r.stderr}`);
        assert.deepEqual(jsonLines(r.stdout), expected, transport);
      }
    });
  });

  describe("heartline subscribe --token", () => {
    const SECRET = "cli-token-secret";
    let s: Served;
    before(async () => {
      s = await serve(["--jwt-secret", SECRET]);
    });
    after(async () => {
      s.child.kill("SIGTERM");
      await s.exited;
    });

    it("sends the token on every transport, and exits 1 with the error when the server refuses it", async () => {
      const token = await sign({ sub: "cli", channels: ["priv:*"], exp: nowSec() + 600 }, SECRET);
      await publish(s, "priv:x", "first");
      const at = await getJson(`${s.url}/poll?channel=priv:x&token=${token}`);
      assert.equal(at.status, 200, JSON.stringify(at.body));
      await publish(s, "priv:x", "second");
      const transports = ["ws", "sse", "poll"] as const;
      const ok = await Promise.all(
        transports.map((t) => runToExit(["subscribe", "priv:x", "--url", s.url, "--transport", t, "--cursor", at.body.cursor, "--token", token, "--count", "1"])),
      );
      for (const [i, t] of transports.entries()) {
        assert.equal(ok[i]!.code, 0, `${t}: ${ok[i]!.stderr}`);
        assert.deepEqual(jsonLines(ok[i]!.stdout), [{ channel: "priv:x", offset: 2, data: "second" }], t);
      }
      // HEARTLINE_TOKEN is the default.
      const fromEnv = await runToExit(["subscribe", "priv:x", "--url", s.url, "--transport", "poll", "--cursor", at.body.cursor, "--count", "1"], {
        HEARTLINE_TOKEN: token,
      });
      assert.equal(fromEnv.code, 0, fromEnv.stderr);

      const refused = await Promise.all(transports.map((t) => runToExit(["subscribe", "priv:x", "--url", s.url, "--transport", t], {}, 15_000)));
      for (const [i, t] of transports.entries()) {
        assert.equal(refused[i]!.code, 1, `${t}: ${refused[i]!.stderr}`);
        assert.equal(refused[i]!.stdout, "", t);
        assert.match(refused[i]!.stderr, /"code":"unauthorized"/, t);
      }
    });
  });

  describe("graceful shutdown", { concurrency: true }, () => {
    it("SIGTERM: WS gets 1012, SSE ends, a waiting poll is answered, new connections are refused, exit 0 within --drain-timeout", async () => {
      const term = await serve(["--drain-timeout", "3"]);
      const ws = await WsClient.connect(`ws://127.0.0.1:${term.port}/ws?channel=bye:a`);
      await ws.next((f) => f.type === "subscribed");
      const silent = await silentWebSocket(term.port);

      const sse = await fetch(`${term.url}/sse?channel=bye:a`);
      assert.equal(sse.status, 200);
      const reader = sse.body!.getReader();
      let sseText = "";
      const sseEnded = (async () => {
        const decoder = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          sseText += decoder.decode(value, { stream: true });
        }
      })();
      await waitFor(() => sseText.includes("id: "), 5000, "the SSE setup");

      await publish(term, "bye:a", "last");
      await ws.next((f) => f.type === "message");
      const first = await getJson(`${term.url}/poll?channel=bye:a`);
      const waitingPoll = getJson(`${term.url}/poll?channel=bye:a&cursor=${first.body.cursor}&timeout=20`);
      await waitFor(async () => (await metricConnections(term, "poll")) === 1, 5000, "the poll to wait");
      assert.equal(await metricConnections(term, "ws"), 2);
      assert.equal(await metricConnections(term, "sse"), 1);

      const t0 = Date.now();
      term.child.kill("SIGTERM");

      await ws.closed;
      assert.equal(ws.closeCode, 1012, "WebSocket clients are told the service restarts");

      await sseEnded;
      assert.match(sseText, /data: \{"channel":"bye:a","offset":1,"data":"last"\}/);

      const polled = await waitingPoll;
      assert.equal(polled.status, 200);
      assert.deepEqual(polled.body, { messages: [], cursor: first.body.cursor, resets: [], presence: [] });

      // The silent WebSocket keeps the process draining; meanwhile nothing new is accepted.
      assert.equal(term.child.exitCode, null, "still draining");
      assert.ok(await refused(term.port), "new connections are refused while draining");
      assert.equal(term.child.exitCode, null, "still draining after the refused connection");

      const { code, signal } = await term.exited;
      const elapsed = Date.now() - t0;
      assert.equal(signal, null);
      assert.equal(code, 0);
      assert.ok(elapsed < 4500, `exited after ${elapsed} ms with --drain-timeout 3`);

      // The silent peer was sent a close frame with 1012, then cut.
      await silent.closed;
      const bytes = silent.received();
      const frames = bytes.subarray(bytes.indexOf("\r\n\r\n") + 4);
      const close = frames.indexOf(0x88);
      assert.ok(close >= 0, "a close frame was sent");
      assert.equal(frames.readUInt16BE(close + 2), 1012);

      const logs = jsonLines(term.stdout);
      assert.ok(logs.some((l) => l.msg === "draining" && l.signal === "SIGTERM"));
      assert.ok(logs.some((l) => l.msg === "stopped"));
    });

    it("SIGINT drains the same way and exits 0", async () => {
      // With info logs off, the listening line is still printed (serve() waits for it).
      const int = await serve(["--drain-timeout", "3", "--log-level", "warn"]);
      const ws = await WsClient.connect(`ws://127.0.0.1:${int.port}/ws?channel=bye:b`);
      await ws.next((f) => f.type === "subscribed");
      const t0 = Date.now();
      int.child.kill("SIGINT");
      await ws.closed;
      assert.equal(ws.closeCode, 1012);
      const { code, signal } = await int.exited;
      assert.equal(signal, null);
      assert.equal(code, 0);
      assert.ok(Date.now() - t0 < 4500);
      const logs = jsonLines(int.stdout);
      assert.equal(logs.filter((l) => l.msg === "listening").length, 1);
      assert.ok(
        logs.every((l) => l.msg === "listening" || l.level >= 40),
        "no info lines at --log-level warn, yet the listening line is there",
      );
      assert.ok(await refused(int.port));
    });
  });

  describe("heartline doctor", { concurrency: true }, () => {
    for (const args of [["not a url"], ["ftp://example.com"], ["http://127.0.0.1:1", "--max-idle", "0"], ["http://127.0.0.1:1", "--max-idle", "abc"], ["http://127.0.0.1:1", "--max-idle", "121"], []]) {
      it(`exits 2 on a usage error: doctor ${args.join(" ")}`, async () => {
        const r = await runToExit(["doctor", ...args]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /URL|--max-idle|missing required argument/);
        assert.equal(r.stdout, "");
      });
    }

    it("measures a server serving HTTPS itself: https:// and wss:// through the same checks (exit 0)", async () => {
      const cert = makeCert(tmp, "doctor");
      const s = await serve(["--tls-cert", cert.certPath, "--tls-key", cert.keyPath]);
      try {
        const r = await runToExit(["doctor", `https://127.0.0.1:${s.port}`, "--max-idle", "1", "--json"], { NODE_EXTRA_CA_CERTS: cert.certPath });
        assert.equal(r.code, 0, r.stdout + r.stderr);
        const report = JSON.parse(r.stdout);
        assert.deepEqual(report.checks.map((c: { status: string }) => c.status), ["pass", "pass", "pass", "pass"]);
        assert.equal(report.url, `https://127.0.0.1:${s.port}/`);
      } finally {
        s.child.kill("SIGTERM");
        await s.exited;
      }
    });

    it("exits 1 with a clear message when the server cannot be reached", async () => {
      const port = await freePort();
      const r = await runToExit(["doctor", `http://127.0.0.1:${port}`]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`cannot reach http://127\\.0\\.0\\.1:${port}/: .*ECONNREFUSED`));
    });

    it("reports a server's settings and passes straight to it (exit 0); with --path-diagnostics false names the option (exit 1)", async () => {
      const on = await serve(["--heartbeat-interval", "11", "--poll-timeout", "13"]);
      const off = await serve(["--path-diagnostics", "false"]);
      try {
        const [good, bad] = await Promise.all([runToExit(["doctor", on.url, "--max-idle", "1"]), runToExit(["doctor", off.url, "--max-idle", "1", "--json"])]);
        assert.equal(good.code, 0, good.stdout + good.stderr);
        assert.match(good.stdout, /server: --heartbeat-interval 11 s, --poll-timeout 13 s/);
        assert.match(good.stdout, /^\[pass\] idle +silent connections lived 1 s uncut/m);
        assert.match(good.stdout, /verdict: the path carries WebSocket, SSE and long polling/);
        assert.equal(bad.code, 1, bad.stdout + bad.stderr);
        const report = JSON.parse(bad.stdout);
        assert.equal(report.ok, false);
        const byName = Object.fromEntries(report.checks.map((c: { name: string }) => [c.name, c]));
        assert.equal(byName.websocket.status, "pass");
        assert.equal(byName["long-poll"].status, "pass");
        for (const name of ["sse", "idle"]) {
          assert.equal(byName[name].status, "skip");
          assert.match(byName[name].summary, /--path-diagnostics false/);
        }
      } finally {
        on.child.kill("SIGTERM");
        off.child.kill("SIGTERM");
        await Promise.all([on.exited, off.exited]);
      }
    });
  });
});
