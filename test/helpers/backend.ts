/**
 * The example application backend (examples/backend/server.mjs) in a child
 * process, as an application would run it next to Heartline: sessions, the
 * four HTTP hooks, and the test-only faults of `BACKEND_FAULTS`.
 */
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jsonLine, spawnListening } from "./child.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const BACKEND_SCRIPT = join(ROOT, "examples", "backend", "server.mjs");

export type HookName = "connect" | "subscribe" | "publish" | "rpc";

export interface Backend {
  child: ChildProcess;
  port: number;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** The URL of one hook, `http://127.0.0.1:<port>/hooks/<name>`. */
  hookUrl(name: HookName): string;
  /** `--proxy-<hook>-url <url>` for each hook named (all four by default). */
  proxyArgs(hooks?: readonly HookName[]): string[];
  /** Logs `name` in and answers its cookie as a `Cookie` header value (`sid=…`). */
  login(name: string): Promise<string>;
  /** What the process wrote to stderr so far. */
  stderr(): string;
  /** Kills the process and waits for it to end. */
  stop(): Promise<void>;
}

export const ALL_HOOKS: readonly HookName[] = ["connect", "subscribe", "publish", "rpc"];

/** Starts the backend on port 0 with `args` and `BACKEND_FAULTS=faults`, and waits for `{"listening":port}`. */
export async function startBackend(options: { faults?: string; args?: string[] } = {}): Promise<Backend> {
  const env: NodeJS.ProcessEnv = { ...process.env, BACKEND_FAULTS: options.faults ?? "" };
  const portOf = (line: string) => {
    const o = jsonLine(line);
    return typeof o?.listening === "number" ? o.listening : undefined;
  };
  const { child, port, stderr, stop } = await spawnListening([BACKEND_SCRIPT, "--port", "0", ...(options.args ?? [])], env, portOf, "the backend", 10_000);
  const url = `http://127.0.0.1:${port}`;
  const hookUrl = (name: HookName) => `${url}/hooks/${name}`;
  return {
    child,
    port,
    url,
    hookUrl,
    proxyArgs: (hooks = ALL_HOOKS) => hooks.flatMap((h) => [`--proxy-${h}-url`, hookUrl(h)]),
    login: async (name) => {
      const res = await fetch(`${url}/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name }),
      });
      if (res.status !== 200) throw new Error(`login ${name}: ${res.status} ${await res.text()}`);
      const cookie = /^(sid=[^;]+)/.exec(res.headers.get("set-cookie") ?? "");
      if (!cookie) throw new Error(`login ${name}: no sid cookie`);
      return cookie[1]!;
    },
    stderr,
    stop,
  };
}

/** The value of one sample in Prometheus text (labels in any order); 0 when the sample is absent. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have.set(l[1]!, l[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return 0;
}

/** `heartline_hook_requests_total{hook,outcome}` of a running server, by `hook/outcome`. */
export async function hookCounts(url: string): Promise<(hook: string, outcome: "ok" | "refused" | "unavailable") => number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return (hook, outcome) => metricValue(text, "heartline_hook_requests_total", { hook, outcome });
}

/** Open subscriber connections of a running server, by transport, from /metrics. */
export async function openConnections(url: string): Promise<{ ws: number; sse: number; poll: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const of = (transport: string) => metricValue(text, "heartline_connections", { transport });
  return { ws: of("ws"), sse: of("sse"), poll: of("poll") };
}
