/**
 * RSS per idle connection, per transport: starts `heartline serve` (built
 * dist/) in its own process, opens N idle subscribers of one transport from
 * this process, and reports (server RSS after − before) ÷ N.
 *
 *   npm run build && npx tsx bench/idle-rss.ts [N=5000] [ws,sse,poll]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import WebSocket from "ws";

const N = Number(process.argv[2] ?? 5000);
const transports = (process.argv[3] ?? "ws,sse,poll").split(",");

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startServer(): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(
    process.execPath,
    ["dist/cli.js", "serve", "--port", "0", "--host", "127.0.0.1", "--max-connections", "20000", "--max-pending-connections-per-ip", "0", "--poll-timeout", "120", "--heartbeat-interval", "60"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let buf = "";
    proc.stdout!.on("data", (chunk: Buffer) => {
      buf += chunk.toString();
      for (const line of buf.split("\n")) {
        try {
          const j = JSON.parse(line) as { msg?: string; port?: number };
          if (j.msg === "listening" && j.port) resolve(j.port);
        } catch {
          /* partial line */
        }
      }
    });
    proc.once("exit", () => reject(new Error("server exited")));
  });
  proc.stdout!.resume();
  return { proc, port };
}

async function openIdle(kind: string, port: number, n: number): Promise<() => void> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const closers: Array<() => void> = [];
  let cursor = "";
  if (kind === "poll") {
    cursor = await new Promise<string>((resolve) =>
      http.get(`http://127.0.0.1:${port}/poll?channel=bench:idle`, (res) => {
        let b = "";
        res.on("data", (c) => (b += c));
        res.on("end", () => resolve(JSON.parse(b).cursor));
      }),
    );
  }
  const batch = 250;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, n - i) }, (_, j) => {
        const channel = `bench:idle:${(i + j) % 100}`;
        return new Promise<void>((resolve, reject) => {
          if (kind === "ws") {
            const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?channel=${channel}`);
            ws.once("message", () => resolve());
            ws.once("error", reject);
            closers.push(() => ws.terminate());
          } else {
            const path = kind === "sse" ? `/sse?channel=${channel}` : `/poll?channel=bench:idle&cursor=${cursor}`;
            const req = http.get({ host: "127.0.0.1", port, path, agent }, (res) => {
              if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`));
              res.once("data", () => resolve());
            });
            req.on("error", () => {});
            closers.push(() => req.destroy());
            if (kind === "poll") setTimeout(resolve, 5); // a held poll sends nothing until data or timeout
          }
        });
      }),
    );
  }
  return () => closers.forEach((c) => c());
}

async function main(): Promise<void> {
  const rows: Array<{ transport: string; n: number; beforeKiB: number; afterKiB: number; perConnKiB: number }> = [];
  for (const kind of transports) {
    const { proc, port } = await startServer();
    await sleep(500);
    const before = rssKiB(proc.pid!);
    const close = await openIdle(kind, port, N);
    await sleep(2000);
    const after = rssKiB(proc.pid!);
    rows.push({ transport: kind, n: N, beforeKiB: before, afterKiB: after, perConnKiB: Number(((after - before) / N).toFixed(2)) });
    close();
    proc.kill("SIGKILL");
    await sleep(300);
  }
  console.table(rows);
  console.log(JSON.stringify(rows));
  process.exit(0);
}

void main();
