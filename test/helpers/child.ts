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

/** A child process that has said which port it listens on. */
export interface Spawned {
  child: ChildProcess;
  port: number;
  /** What the process wrote to stderr so far. */
  stderr(): string;
  /** Kills the process and waits for it to end. */
  stop(): Promise<void>;
}

/**
 * Starts `node …args` and waits until `portOf` finds the port in one of its
 * stdout lines; kills it when it exits first or the time runs out.
 */
export async function spawnListening(
  args: string[],
  env: NodeJS.ProcessEnv,
  portOf: (line: string) => number | undefined,
  what: string,
  timeoutMs: number,
): Promise<Spawned> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const ended = new Promise<void>((resolve) => child.once("close", () => resolve()));
  let port: number;
  try {
    port = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`${what} exited early (${child.exitCode}): ${stderr}${stdout}`);
        for (const line of stdout.split("\n").slice(0, -1)) {
          const p = portOf(line);
          if (p !== undefined) return p;
        }
        return undefined;
      },
      timeoutMs,
      `the listening line of ${what}`,
    );
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return {
    child,
    port,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await ended;
    },
  };
}

/** A JSON line's field, or undefined for a line that is not a JSON object. */
export function jsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Starts `heartline serve --port 0 --host 127.0.0.1 …args` and waits for its `listening` line. */
export async function startChildServer(args: string[], timeoutMs = 20_000): Promise<ChildServer> {
  assert.ok(existsSync(CLI), `${CLI} is missing: run npm run build first`);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("HEARTLINE_")) env[k] = v;
  const serve = [CLI, "serve", "--port", "0", "--host", "127.0.0.1", "--log-level", "warn", ...args];
  const portOf = (line: string) => {
    const o = jsonLine(line);
    return o?.msg === "listening" && typeof o.port === "number" ? o.port : undefined;
  };
  const s = await spawnListening(serve, env, portOf, "heartline serve", timeoutMs);
  const pid = s.child.pid!;
  return {
    ...s,
    url: `http://127.0.0.1:${s.port}`,
    wsUrl: `ws://127.0.0.1:${s.port}`,
    rss: () => {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      assert.ok(m, "VmRSS in /proc/<pid>/status");
      return Number(m[1]) * 1024;
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
