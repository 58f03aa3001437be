/**
 * Real nginx and HAProxy in front of a test server, configured with the
 * README's ```nginx and ```haproxy blocks exactly as printed. Only the
 * addresses change: every `127.0.0.1:8080` becomes the upstream's address,
 * and `listen 80;` / `bind :80` a free port on 127.0.0.1. Each proxy runs in
 * the foreground as a child of the test, with its files in a temporary
 * directory. Without the binary the tests are skipped with a message, except
 * on CI (CI=true), where they fail. A test may change the block first
 * (`edit`, with {@link replaceIn} for changes that must match), to run a
 * proxy configured the way a real one goes wrong.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./redis.js";
import { waitFor } from "./server.js";

const README = fileURLToPath(new URL("../../README.md", import.meta.url));

export type ProxyKind = "nginx" | "haproxy";

function findBinary(name: string): string | undefined {
  for (const dir of ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"]) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}

const BINARIES: Record<ProxyKind, string | undefined> = { nginx: findBinary("nginx"), haproxy: findBinary("haproxy") };

/** For `describe(name, { skip: proxySkip("nginx") }, …)`: a reason to skip, or false. On CI a missing proxy is a failure. */
export function proxySkip(kind: ProxyKind): string | false {
  if (BINARIES[kind] || process.env.CI === "true") return false;
  return `${kind} is not installed: proxy tests skipped (apt-get install ${kind})`;
}

/** The one fenced block of `lang` in README.md. */
export function readmeBlock(lang: ProxyKind): string {
  const blocks = [...readFileSync(README, "utf8").matchAll(new RegExp("^```" + lang + "\\n([\\s\\S]*?)^```$", "gm"))];
  if (blocks.length !== 1) throw new Error(`README.md has ${blocks.length} \`\`\`${lang} blocks; expected exactly one`);
  return blocks[0]![1]!;
}

/** Replaces `from` by `to`, requiring `count` occurrences (so the README cannot drift from what is tested). */
export function replaceIn(text: string, from: string, to: string, count: number): string {
  const n = text.split(from).length - 1;
  if (n !== count) throw new Error(`expected ${count} × ${JSON.stringify(from)} in the README block, found ${n}`);
  return text.split(from).join(to);
}

/** The README's block with the test's addresses. */
export function readmeConfig(kind: ProxyKind, listenPort: number, upstreamPort: number): string {
  let text = replaceIn(readmeBlock(kind), "127.0.0.1:8080", `127.0.0.1:${upstreamPort}`, 1);
  text = kind === "nginx" ? replaceIn(text, "listen 80;", `listen 127.0.0.1:${listenPort};`, 1) : replaceIn(text, "bind :80\n", `bind 127.0.0.1:${listenPort}\n`, 1);
  return text;
}

export class Proxy {
  private output = "";
  private constructor(
    readonly kind: ProxyKind,
    readonly port: number,
    private readonly proc: ChildProcess,
    private readonly dir: string,
  ) {
    proc.stdout?.on("data", (d: Buffer) => (this.output += d.toString()));
    proc.stderr?.on("data", (d: Buffer) => (this.output += d.toString()));
  }

  /** `http://127.0.0.1:<port>` */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Starts `kind` with the README's configuration, changed by `edit` when given, in front of `upstreamPort`. */
  static async start(kind: ProxyKind, upstreamPort: number, edit: (config: string) => string = (c) => c): Promise<Proxy> {
    const bin = BINARIES[kind];
    if (!bin) throw new Error(`${kind} is not installed (apt-get install ${kind}); the proxy tests need it`);
    const dir = mkdtempSync(join(tmpdir(), `heartline-${kind}-`));
    let lastErr: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const conf = join(dir, `${kind}.conf`);
      let args: string[];
      if (kind === "nginx") {
        // The README block goes inside http { }; the rest keeps nginx in the temporary directory.
        const root = process.getuid?.() === 0 ? "user root;\n" : "";
        writeFileSync(
          conf,
          `${root}worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\nevents {}\nhttp {\n` +
            `access_log off;\nclient_body_temp_path ${dir}/client_body;\nproxy_temp_path ${dir}/proxy;\n` +
            `fastcgi_temp_path ${dir}/fastcgi;\nuwsgi_temp_path ${dir}/uwsgi;\nscgi_temp_path ${dir}/scgi;\n` +
            edit(readmeConfig("nginx", port, upstreamPort)) +
            "}\n",
        );
        args = ["-p", dir, "-e", `${dir}/error.log`, "-c", conf, "-g", "daemon off;"];
      } else {
        writeFileSync(conf, edit(readmeConfig("haproxy", port, upstreamPort)));
        // -db: foreground, no daemon.
        args = ["-db", "-f", conf];
      }
      const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
      const p = new Proxy(kind, port, proc, dir);
      running.add(proc);
      proc.once("exit", () => running.delete(proc));
      try {
        await waitFor(
          async () => {
            if (proc.exitCode !== null) throw new Error(`${kind} exited with code ${proc.exitCode}: ${p.output}${p.errorLog()}`);
            const r = await fetch(`${p.url}/healthz`).catch(() => undefined);
            return r?.status === 200;
          },
          10_000,
          `${kind} to answer /healthz`,
        );
        return p;
      } catch (err) {
        lastErr = err;
        await p.kill();
      }
    }
    rmSync(dir, { recursive: true, force: true });
    throw lastErr;
  }

  private errorLog(): string {
    try {
      return readFileSync(join(this.dir, "error.log"), "utf8");
    } catch {
      return "";
    }
  }

  private async kill(): Promise<void> {
    const proc = this.proc;
    if (proc.exitCode === null && proc.signalCode === null) {
      const gone = new Promise((r) => proc.once("exit", r));
      // nginx: SIGTERM is a fast shutdown; HAProxy: SIGTERM stops at once too.
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 3000);
      await gone;
      clearTimeout(t);
    }
  }

  /** Stops the proxy and removes its directory. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});
