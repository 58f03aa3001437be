/**
 * `heartline doctor` against real nginx and HAProxy: the README's
 * configurations pass; a proxy that buffers event streams, cuts silent
 * connections at 5 s, or refuses WebSocket upgrades is named, with what it
 * did and what the path needs. At least one run goes through the built CLI
 * (`npm run build` first), the others call the same function in-process.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, afterEach, before, describe, it } from "node:test";
import { diagnose, formatReport, type DoctorReport } from "../../src/cli/doctor.js";
import type { Check } from "../../src/cli/doctor-verdict.js";
import { Proxy, proxySkip, replaceIn, type ProxyKind } from "../helpers/proxies.js";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "dist", "cli.js");

/** Runs `heartline doctor` as a child process: its exit code and output. */
function runDoctor(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "doctor", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const t = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

async function doctor(url: string, maxIdle: number): Promise<DoctorReport> {
  const r = await diagnose(new URL(url), maxIdle);
  assert.ok(!("unreachable" in r), `unreachable: ${JSON.stringify(r)}`);
  return r;
}

function check(r: DoctorReport, name: Check["name"]): Check {
  const c = r.checks.find((x) => x.name === name);
  assert.ok(c, `no ${name} check in ${formatReport(r)}`);
  return c;
}

/** Statuses by check, for messages that show the whole report when they fail. */
function statuses(r: DoctorReport): Record<string, string> {
  return Object.fromEntries(r.checks.map((c) => [c.name, c.status]));
}

/** Asserts a measured idle cut within ±2 s of `seconds`, and heartbeat advice below it. */
function assertCut(r: DoctorReport, kind: "http" | "ws", seconds: number): void {
  const idle = check(r, "idle");
  assert.equal(idle.status, "fail", formatReport(r));
  const cut = idle.details[kind === "http" ? "httpCutMs" : "wsCutMs"] as number | undefined;
  assert.ok(cut !== undefined && Math.abs(cut - seconds * 1000) <= 2000, `${kind} cut at ${cut} ms, expected ${seconds} s ± 2 s\n${formatReport(r)}`);
  assert.ok(r.advice.heartbeatInterval !== undefined && r.advice.heartbeatInterval < seconds, `advice ${r.advice.heartbeatInterval}`);
}

/** A proxy of `kind` with the README's configuration changed by `edit`, in front of a fresh server; stopped after the suite. */
function behind(kind: ProxyKind, edit?: (c: string) => string): { server: () => TestServer; proxy: () => Proxy } {
  let server: TestServer;
  let proxy: Proxy;
  before(async () => {
    server = await startServer({ trustProxy: true });
    proxy = await Proxy.start(kind, server.port, edit);
  });
  after(async () => {
    await proxy?.stop();
    await server?.close();
  });
  afterEach(async () => {
    await waitFor(() => server.hl.connections === 0, 10_000, "every connection to be released");
  });
  return { server: () => server, proxy: () => proxy };
}

describe("heartline doctor, straight to Heartline", () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ heartbeatInterval: 7, pollTimeout: 9 });
  });
  after(() => server?.close());

  it("passes every check, finds no cut within --max-idle, and reports the server's settings", async () => {
    const r = await doctor(server.url, 2);
    assert.ok(r.ok, formatReport(r));
    assert.deepEqual(statuses(r), { websocket: "pass", sse: "pass", "long-poll": "pass", idle: "pass" });
    assert.deepEqual(r.server, { heartbeatInterval: 7, pollTimeout: 9 });
    assert.deepEqual(r.path, []);
    await waitFor(() => server.hl.connections === 0, 5000, "the doctor's connections to be released");
  });
});

describe("heartline doctor behind nginx", { skip: proxySkip("nginx") }, () => {
  describe("with the README's configuration", () => {
    const { proxy } = behind("nginx");

    it("passes every check (run as the CLI with --json: exit 0)", async () => {
      const r = await runDoctor([proxy().url, "--max-idle", "3", "--json"]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const report = JSON.parse(r.stdout) as DoctorReport;
      assert.deepEqual(statuses(report), { websocket: "pass", sse: "pass", "long-poll": "pass", idle: "pass" }, r.stdout);
      assert.ok(report.path.includes("nginx"), `path ${JSON.stringify(report.path)}`);
    });
  });

  // nginx's defaults for /sse and /diag (proxy_buffering on, HTTP/1.0 to the upstream), and Heartline's X-Accel-Buffering ignored.
  const BUFFERING = "proxy_buffering on;\n        proxy_http_version 1.0;";

  describe("buffering event streams (nginx's defaults, X-Accel-Buffering ignored)", () => {
    const { proxy } = behind("nginx", (c) => replaceIn(c, "proxy_buffering off;", `${BUFFERING}\n        proxy_ignore_headers X-Accel-Buffering;`, 2));

    it("names SSE buffering, with nginx's fix (run as the CLI: exit 1)", async () => {
      const r = await runDoctor([proxy().url, "--max-idle", "2"]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /\[FAIL\] sse +buffered: 5 events written 500 ms apart arrived within \d+ ms/);
      assert.match(r.stdout, /fix \(nginx\): .*proxy_buffering off/);
      assert.match(r.stdout, /\[pass\] websocket/);
      assert.match(r.stdout, /\[pass\] idle/);
    });
  });

  describe("with nginx's buffering defaults, but honouring Heartline's X-Accel-Buffering: no", () => {
    const { proxy } = behind("nginx", (c) => replaceIn(c, "proxy_buffering off;", BUFFERING, 2));

    it("sees unbuffered events, as /sse gets them", async () => {
      const r = await doctor(proxy().url, 2);
      assert.equal(check(r, "sse").status, "pass", formatReport(r));
    });
  });

  describe("buffering and compressing event streams (proxy_buffering on, gzip_types text/event-stream, X-Accel-Buffering ignored)", () => {
    const gzip = "proxy_buffering on;\n        proxy_ignore_headers X-Accel-Buffering;\n        gzip on;\n        gzip_types text/event-stream;";
    const { proxy } = behind("nginx", (c) => replaceIn(c, "proxy_buffering off;", gzip, 2));

    it("names SSE buffering", async () => {
      const r = await doctor(proxy().url, 2);
      const sse = check(r, "sse");
      assert.equal(sse.status, "fail", formatReport(r));
      assert.match(sse.summary, /^buffered: /);
      assert.equal(sse.by, "nginx");
    });
  });

  describe("with proxy_read_timeout 5s", () => {
    const { proxy } = behind("nginx", (c) => replaceIn(replaceIn(c, "proxy_read_timeout 60s;", "proxy_read_timeout 5s;", 3), "proxy_read_timeout 40s;", "proxy_read_timeout 5s;", 1));

    it("measures the idle cut at 5 s ± 2 s on streams and WebSockets, advises a heartbeat under 5 s, and names the poll's 504", async () => {
      const r = await doctor(proxy().url, 10);
      assert.equal(r.ok, false);
      assertCut(r, "http", 5);
      assertCut(r, "ws", 5);
      const idle = check(r, "idle");
      assert.match(idle.note ?? "", /^A heartbeat every [1-4] s or less keeps this path alive/);
      assert.ok(idle.fixes.some((f) => f.for === "nginx" && /proxy_read_timeout/.test(f.fix)));
      assert.equal(idle.fixes[0]!.for, "nginx", "the fix for the proxy seen on the path comes first");
      const poll = check(r, "long-poll");
      assert.equal(poll.status, "fail");
      assert.match(poll.summary, /HTTP 504 after [3-7]\.\d s by nginx/);
    });
  });

  describe("not forwarding the Upgrade header", () => {
    const { proxy } = behind("nginx", (c) =>
      replaceIn(replaceIn(c, "        proxy_set_header Upgrade $http_upgrade;\n", "", 2), "        proxy_set_header Connection $connection_upgrade;\n", "", 2),
    );

    it("names the WebSocket refusal: Heartline got no upgrade, nginx dropped it", async () => {
      const r = await doctor(proxy().url, 2);
      const ws = check(r, "websocket");
      assert.equal(ws.status, "fail", formatReport(r));
      assert.equal(ws.by, "nginx");
      assert.match(ws.summary, /without its Upgrade header.*nginx does not forward upgrades/);
      assert.ok(ws.fixes[0]!.for === "nginx" && /proxy_set_header Upgrade \$http_upgrade/.test(ws.fixes[0]!.fix));
      assert.equal(check(r, "sse").status, "pass");
    });
  });
});

describe("heartline doctor behind HAProxy", { skip: proxySkip("haproxy") }, () => {
  describe("with the README's configuration", () => {
    const { proxy } = behind("haproxy");

    it("passes every check", async () => {
      const r = await doctor(proxy().url, 3);
      assert.deepEqual(statuses(r), { websocket: "pass", sse: "pass", "long-poll": "pass", idle: "pass" }, formatReport(r));
    });
  });

  describe("denying upgrades (http-request deny if { hdr(upgrade) -i websocket })", () => {
    const { proxy } = behind("haproxy", (c) => replaceIn(c, "    default_backend heartline\n", "    http-request deny if { hdr(upgrade) -i websocket }\n    default_backend heartline\n", 1));

    it("names HAProxy as the one refusing the upgrade, from its error page", async () => {
      const r = await doctor(proxy().url, 2);
      const ws = check(r, "websocket");
      assert.equal(ws.status, "fail", formatReport(r));
      assert.equal(ws.by, "HAProxy");
      assert.match(ws.summary, /refused by HAProxy: HTTP 403 instead of 101/);
      assert.equal(ws.fixes[0]!.for, "HAProxy");
    });
  });

  describe("with timeout server 5s", () => {
    const { proxy } = behind("haproxy", (c) => replaceIn(c, "timeout server 60s", "timeout server 5s", 1));

    it("measures the HTTP stream's cut at 5 s ± 2 s", async () => {
      const r = await doctor(proxy().url, 9);
      assertCut(r, "http", 5);
      assert.equal(check(r, "long-poll").status, "fail");
    });
  });

  describe("with timeout tunnel 5s", () => {
    const { proxy } = behind("haproxy", (c) => replaceIn(c, "timeout tunnel 60s", "timeout tunnel 5s", 1));

    it("measures the WebSocket's cut at 5 s ± 2 s, while HTTP streams live on", async () => {
      const r = await doctor(proxy().url, 9);
      assertCut(r, "ws", 5);
      assert.equal(check(r, "idle").details.httpCutMs, undefined, formatReport(r));
    });
  });
});
