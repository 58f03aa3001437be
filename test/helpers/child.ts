/**
 * A Heartline server in a child process (`node dist/cli.js serve`, built by
 * `npm run build`), so that its resident memory is its own: read from
 * /proc/<pid>/status as it stands, without forcing a collection.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "./server.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = join(ROOT, "dist", "cli.js");

export interface ChildServer {
  child: ChildProcess;
  port: number;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `ws://127.0.0.1:<port>` */
  wsUrl: string;
  /** Resident set size of the server process now, in bytes (VmRSS). */
  rss(): number;
  /** What the process wrote to stderr so far. */
  stderr(): string;
  /** Kills the process and waits for it to end. */
  stop(): Promise<void>;
}

/** Starts `heartline serve --port 0 --host 127.0.0.1 …args` and waits for its `listening` line. */
export async function startChildServer(args: string[], timeoutMs = 20_000): Promise<ChildServer> {
  assert.ok(existsSync(CLI), `${CLI} is missing: run npm run build first`);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("HEARTLINE_")) env[k] = v;
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", "--host", "127.0.0.1", "--log-level", "warn", ...args], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const ended = new Promise<void>((resolve) => child.once("close", () => resolve()));
  let port: number;
  try {
    port = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`serve exited early (${child.exitCode}): ${stderr}${stdout}`);
        for (const line of stdout.split("\n")) {
          if (!line.startsWith("{")) continue;
          const o = JSON.parse(line) as { msg?: string; port?: number };
          if (o.msg === "listening" && typeof o.port === "number") return o.port;
        }
        return undefined;
      },
      timeoutMs,
      "the server's listening line",
    );
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  const pid = child.pid!;
  return {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    rss: () => {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      assert.ok(m, "VmRSS in /proc/<pid>/status");
      return Number(m[1]) * 1024;
    },
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await ended;
    },
  };
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` at a time. */
export async function runPool(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

/** Megabytes, for messages. */
export const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1) + " MB";
