/**
 * An uncaught exception ends the process (fatal line, exit code 1) instead of
 * serving on in an unknown state; with --workers, the primary replaces it.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { RedisServer, redisSkip } from "../helpers/redis.js";
import { waitFor } from "../helpers/server.js";

const CHILD = fileURLToPath(new URL("../helpers/crash-child.ts", import.meta.url));
type Line = { msg?: string; level?: number | string; worker?: number; code?: number; err?: { message?: string } };

function run(mode: string, env: Record<string, string> = {}): { proc: ChildProcess; lines: Line[] } {
  const proc = spawn(process.execPath, ["--import", "tsx", CHILD, mode], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  const lines: Line[] = [];
  let buf = "";
  proc.stdout!.setEncoding("utf8");
  proc.stdout!.on("data", (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        lines.push(JSON.parse(line) as Line);
      } catch {
        // not a log line
      }
    }
  });
  proc.stderr!.resume();
  return { proc, lines };
}

describe("uncaught exceptions", () => {
  const procs: ChildProcess[] = [];
  after(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  });

  it("log a fatal line and exit with code 1", async () => {
    const { proc, lines } = run("single");
    procs.push(proc);
    const [code] = (await Promise.race([once(proc, "exit"), new Promise((_, rej) => setTimeout(() => rej(new Error("the process kept running")), 15_000))])) as [number];
    assert.equal(code, 1);
    const fatal = lines.find((l) => l.level === 60);
    assert.ok(fatal, `no fatal line in ${JSON.stringify(lines)}`);
    assert.match(fatal.msg ?? "", /uncaught exception/);
    assert.match(fatal.err?.message ?? "", /thrown on purpose/);
  });

  describe("with --workers 2", { skip: redisSkip }, () => {
    let redis: RedisServer | undefined;
    after(async () => {
      await redis?.stop();
    });

    it("the worker that threw exits with code 1 and the primary starts a new one", async () => {
      redis = await RedisServer.start();
      const { proc, lines } = run("workers", { CRASH_REDIS_URL: redis.url });
      procs.push(proc);
      const exited = await waitFor(() => lines.find((l) => l.msg === "worker exited; starting a new one"), 20_000, "a worker to exit");
      assert.equal(exited.worker, 1);
      assert.equal(exited.code, 1);
      await waitFor(() => lines.find((l) => l.msg === "worker started" && l.worker === 3), 20_000, "a replacement worker");
      // Stopped while the replacement may still be starting: the primary still ends every worker.
      const exit = once(proc, "exit");
      proc.kill("SIGTERM");
      const [code] = (await Promise.race([exit, new Promise((_, rej) => setTimeout(() => rej(new Error("the primary did not stop")), 15_000))])) as [number];
      assert.equal(code, 0);
    });
  });
});
