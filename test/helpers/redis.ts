/**
 * A private redis-server for a test file: a free loopback port (never 6379),
 * no persistence, killed in after(). Without redis-server the cluster tests
 * are skipped with a message, except on CI (CI=true), where they fail.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const found = spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0;

/** For `describe(name, { skip: redisSkip }, …)`: a reason to skip, or false. On CI a missing redis-server is a failure, not a skip. */
export const redisSkip: string | false =
  found || process.env.CI === "true" ? false : "redis-server is not installed: cluster tests skipped (apt-get install redis-server)";

/** A free TCP port on 127.0.0.1 (asked from the kernel, then released). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", resolve);
  });
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Sends PING; resolves true on +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ port, host: "127.0.0.1" });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once("error", () => done(false));
    s.once("connect", () => s.write("PING\r\n"));
    s.once("data", (d) => done(d.toString().startsWith("+PONG")));
  });
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

export class RedisServer {
  private proc: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), "heartline-redis-"));

  private constructor(
    readonly port: number,
    private readonly args: readonly string[],
  ) {}

  /** `redis://127.0.0.1:<port>` */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** `127.0.0.1:<port>` */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Whether the process is up (started and not killed). */
  get alive(): boolean {
    return this.proc !== undefined;
  }

  /**
   * Starts a redis-server on a free port (retrying another port if the first is taken meanwhile).
   * `args` are added to the command line; relative paths in them are inside the server's own directory.
   */
  static async start(args: readonly string[] = []): Promise<RedisServer> {
    if (!found) throw new Error("redis-server is not installed (apt-get install redis-server); the cluster tests need it");
    let lastErr: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const r = new RedisServer(await freePort(), args);
      try {
        await r.restart();
        return r;
      } catch (err) {
        lastErr = err;
        await r.stop();
      }
    }
    throw lastErr;
  }

  /** Starts (again) on the same port, empty: no RDB, no AOF. */
  async restart(): Promise<void> {
    if (this.proc) throw new Error("redis-server is already running");
    const proc = spawn(
      "redis-server",
      ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", this.dir, "--loglevel", "warning", ...this.args],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    this.proc = proc;
    running.add(proc);
    let exited = false;
    proc.once("exit", () => {
      exited = true;
      running.delete(proc);
    });
    const deadline = Date.now() + 10_000;
    while (!(await ping(this.port))) {
      if (exited || Date.now() > deadline) {
        await this.kill();
        throw new Error(`redis-server did not start on port ${this.port}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** SIGKILL, as a crash: nothing is saved. Resolves once the process is gone. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = undefined;
    if (proc.exitCode === null && proc.signalCode === null) {
      const gone = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGKILL");
      await gone;
    }
  }

  /** Kills the server and removes its directory. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
