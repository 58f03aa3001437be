/**
 * `heartline serve --workers 2 --redis …` as a real process tree: workers
 * share one port and meet through Redis, a killed worker is replaced while the
 * port keeps serving, and SIGTERM stops everything.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { request } from "node:http";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { waitFor, WsClient } from "../helpers/server.js";
import { freePort, RedisServer, redisSkip } from "../helpers/redis.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

type LogLine = { msg?: string; [k: string]: unknown };

/** A request over a fresh connection (no keep-alive), so the primary hands each request to the next worker. */
function fresh(url: string, init: { method?: string; body?: string } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: init.method ?? "GET",
        agent: false,
        headers: { Connection: "close", ...(init.body ? { "Content-Type": "application/json" } : {}) },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("heartline serve --workers", { skip: redisSkip }, () => {
  let redis: RedisServer;
  let proc: ChildProcess | undefined;
  const lines: LogLine[] = [];
  let port: number;

  before(async () => {
    redis = await RedisServer.start();
    port = await freePort();
  });
  after(async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGKILL");
      for (const l of lines) if (l.msg === "worker started" && alive(l.pid as number)) process.kill(l.pid as number, "SIGKILL");
    }
    await redis?.stop();
  });

  const logged = (msg: string) => lines.filter((l) => l.msg === msg);

  it("runs 2 workers on one port that share messages through Redis, replaces a killed worker, and stops on SIGTERM", async () => {
    proc = spawn(
      process.execPath,
      // The built CLI (npm test builds first): three processes transpiling src/ are too slow on a busy machine.
      ["dist/cli.js", "serve", "--host", "127.0.0.1", "--port", String(port), "--workers", "2", "--redis", redis.url, "--drain-timeout", "2"],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HEARTLINE_LOG_LEVEL: "info" } },
    );
    let stderr = "";
    proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    let partial = "";
    proc.stdout!.on("data", (d: Buffer) => {
      partial += d.toString();
      let nl: number;
      while ((nl = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        try {
          lines.push(JSON.parse(line) as LogLine);
        } catch {
          /* not a log line */
        }
      }
    });
    const exited = once(proc, "exit") as Promise<[number | null, NodeJS.Signals | null]>;

    // Both workers listen on the one port.
    await waitFor(() => logged("listening").length >= 2, 20_000, `two workers listening (stderr: ${stderr})`);
    assert.deepEqual(
      logged("listening").map((l) => l.port),
      [port, port],
    );
    const workers = logged("worker started").map((l) => l.pid as number);
    assert.equal(workers.length, 2);
    assert.equal(new Set(workers).size, 2);
    assert.ok(workers.every(alive));

    // A subscriber on one worker gets messages published through both (the primary deals connections round-robin).
    const base = `http://127.0.0.1:${port}`;
    const ws = await WsClient.connect(`ws://127.0.0.1:${port}/ws?channel=w:room`);
    await ws.next((f) => f.type === "subscribed");
    for (let i = 1; i <= 10; i++) {
      const r = await fresh(`${base}/api/publish`, { method: "POST", body: JSON.stringify({ channel: "w:room", data: i }) });
      assert.equal(r.status, 200, r.body);
      assert.equal(JSON.parse(r.body).offset, i);
    }
    await waitFor(() => ws.messages("w:room").length >= 10, 5000, "10 messages");
    assert.deepEqual(
      ws.messages("w:room").map((f) => f.data),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    );
    ws.close();

    // Kill one worker: the primary notices, the port keeps serving, a new worker takes its place.
    const victim = workers[0]!;
    process.kill(victim, "SIGKILL");
    const exit = await waitFor(() => lines.find((l) => l.msg === "worker exited; starting a new one" && l.pid === victim), 5000, "the primary to log the exit");
    assert.equal(exit.signal, "SIGKILL");
    for (let i = 0; i < 6; i++) {
      const r = await fresh(`${base}/healthz`);
      assert.equal(r.status, 200);
    }
    await waitFor(() => logged("worker started").length === 3 && logged("listening").length >= 3, 20_000, "a replacement worker listening");
    const replacement = logged("worker started")[2]!.pid as number;
    assert.ok(alive(replacement));
    assert.equal(alive(victim), false);
    for (let i = 0; i < 4; i++) assert.equal((await fresh(`${base}/readyz`)).status, 200);

    // SIGTERM: every worker drains and exits, then the primary.
    proc.kill("SIGTERM");
    const [code, signal] = await Promise.race([
      exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the primary did not exit within 10 s")), 10_000).unref()),
    ]);
    assert.equal(code, 0, stderr);
    assert.equal(signal, null);
    // The last log lines may still be in the pipe when 'exit' comes.
    await waitFor(() => logged("worker stopped").length >= 2 || undefined, 2000, `two 'worker stopped' lines (stderr: ${stderr})`);
    assert.equal(logged("worker stopped").length, 2);
    await waitFor(() => !alive(workers[1]!) && !alive(replacement), 2000, "the workers to be gone");
    await assert.rejects(fresh(`${base}/healthz`));
  });
});
