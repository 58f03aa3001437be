/**
 * What a connect hook adds (scenario `hooks`): server CPU per WebSocket
 * connection (open, subscribe, close) and per long poll (`timeout=0`), with
 * no hook and with `--proxy-connect-url` pointing at a minimal backend (a
 * separate process on the generator's core, answering every call at once).
 * Polls are measured twice with the hook: one client polling again and
 * again (its connect answer is reused) and a new client every time (the
 * hook is called for each poll). The generator is this process, pinned to
 * core 1; it uses `ws` and node:http, nothing of Heartline.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { Agent, request } from "node:http";
import WebSocket from "ws";
import { cpuMicros, pinned } from "./proc.js";
import { startHeartline, type ServerHandle } from "./servers.js";

export interface HookRow {
  case: string;
  /** Operations measured. */
  n: number;
  /** Server CPU per operation without hooks, µs. */
  plainUs: number;
  /** Server CPU per operation with the connect hook, µs. */
  hookUs: number;
  /** Hook calls the server made during the run (from /metrics). */
  hookCalls: number;
  /** The backend's own CPU per operation, µs. */
  backendUs: number;
}

const BACKEND = `
const http = require("node:http");
const body = JSON.stringify({ result: { user: "bench" } });
const s = http.createServer((req, res) => { req.resume(); req.on("end", () => { res.writeHead(200, { "content-type": "application/json", "content-length": body.length }); res.end(body); }); });
s.keepAliveTimeout = 60000;
s.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: s.address().port })));
`;

async function startBackend(): Promise<{ proc: ChildProcess; url: string }> {
  const [cmd, args] = pinned(1, process.execPath, ["-e", BACKEND]);
  const proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.once("data", (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port));
    proc.once("exit", () => reject(new Error("the hook backend exited")));
  });
  return { proc, url: `http://127.0.0.1:${port}/connect` };
}

async function pool(n: number, concurrency: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await one(next++);
    }),
  );
}

function wsOnce(port: number, i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?channel=bench:hooks`, { headers: { cookie: `sid=client-${i}` } });
    ws.on("message", (d: Buffer) => {
      if (d.toString().includes('"subscribed"')) ws.close();
    });
    ws.on("close", () => resolve());
    ws.on("error", reject);
  });
}

function pollOnce(port: number, agent: Agent, sid: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/poll?channel=bench:hooks&timeout=0", agent, headers: { cookie: `sid=${sid}` } }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`poll answered ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end();
  });
}

async function hookCalls(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^heartline_hook_requests_total\{[^}]*hook="connect"[^}]*\} (\d+)/gm)) n += Number(m[1]);
  return n;
}

/** Server CPU µs per operation of `run` on a fresh server, after a warm-up of the same kind. */
async function measure(h: ServerHandle, n: number, run: (n: number, offset: number) => Promise<void>, started: () => Promise<void>): Promise<number> {
  await run(Math.min(500, n), 1_000_000);
  await started();
  const pid = h.pids()[0]!;
  const before = cpuMicros(pid);
  await run(n, 0);
  return (cpuMicros(pid) - before) / n;
}

export async function hooksScenario(progress: (what: string) => void, quick: boolean): Promise<HookRow[]> {
  const n = quick ? 1000 : 4000;
  const backend = await startBackend();
  const rows: HookRow[] = [];
  try {
    const cases: Array<{ name: string; run: (port: number) => (n: number, offset: number) => Promise<void> }> = [
      { name: "WebSocket connection (open, subscribe, close)", run: (port) => (k, off) => pool(k, 50, (i) => wsOnce(port, off + i)) },
      {
        name: "long poll, the same client again (answer reused)",
        run: (port) => {
          const agent = new Agent({ keepAlive: true, maxSockets: 50 });
          return (k) => pool(k, 50, () => pollOnce(port, agent, "one-client"));
        },
      },
      {
        name: "long poll, a new client each time (hook called)",
        run: (port) => {
          const agent = new Agent({ keepAlive: true, maxSockets: 50 });
          return (k, off) => pool(k, 50, (i) => pollOnce(port, agent, `client-${off + i}`));
        },
      },
    ];
    for (const c of cases) {
      const row: HookRow = { case: c.name, n, plainUs: 0, hookUs: 0, hookCalls: 0, backendUs: 0 };
      for (const hooked of [false, true]) {
        progress(`hooks · ${c.name} · ${hooked ? "connect hook" : "no hook"}`);
        const h = await startHeartline({ args: hooked ? ["--proxy-connect-url", backend.url] : [] });
        try {
          const port = h.endpoint.port;
          let calls0 = 0;
          let b0 = 0;
          const us = await measure(h, n, c.run(port), async () => {
            calls0 = hooked ? await hookCalls(port) : 0;
            b0 = cpuMicros(backend.proc.pid!);
          });
          if (hooked) {
            row.hookUs = us;
            row.backendUs = (cpuMicros(backend.proc.pid!) - b0) / n;
            row.hookCalls = (await hookCalls(port)) - calls0;
          } else row.plainUs = us;
        } finally {
          await h.stop(false);
        }
      }
      rows.push(row);
    }
  } finally {
    backend.proc.kill("SIGKILL");
  }
  return rows;
}

export function hooksTable(rows: HookRow[]): string {
  const f = (x: number) => x.toFixed(1);
  const lines = [
    "| operation | n | no hook µs/op | connect hook µs/op | added µs/op | hook calls | backend µs/op |",
    "|---|---|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.case} | ${r.n} | ${f(r.plainUs)} | ${f(r.hookUs)} | ${f(r.hookUs - r.plainUs)} | ${r.hookCalls} | ${f(r.backendUs)} |`),
  ];
  return lines.join("\n") + "\n";
}
