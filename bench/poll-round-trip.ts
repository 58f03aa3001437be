/**
 * Server CPU per long poll answered at once: `heartline serve` (built dist/,
 * pinned to core 0) and, in this process (pinned to core 1), N kept-alive
 * raw TCP pollers that each poll again as soon as an answer arrives, every
 * poll with a cursor one message behind, so every poll is admitted, read and
 * answered without waiting. What a poll costs the server per round trip,
 * without the fan-out around it (the steady stream's long-poll rows mix the
 * two).
 *
 *   npm run build && npx tsx bench/poll-round-trip.ts [runs=3] [ms=3000] [connections=50]
 */
import { connect, type Socket } from "node:net";
import { cpuMicrosOf, pinProcess, sysMicrosOf } from "./proc.js";
import { startHeartline } from "./servers.js";

const runs = Number(process.argv[2] ?? 3);
const durationMs = Number(process.argv[3] ?? 3000);
const connections = Number(process.argv[4] ?? 50);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

pinProcess(process.pid, 1);
for (let run = 1; run <= runs; run++) {
  const h = await startHeartline();
  const { host, port } = h.endpoint;
  const base = `http://${host}:${port}`;
  const { cursor } = (await (await fetch(`${base}/poll?channel=rtt&timeout=0`)).json()) as { cursor: string };
  const published = await fetch(`${base}/api/publish`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ channel: "rtt", data: "x".repeat(100) }) });
  if (!published.ok) throw new Error(`publish: ${published.status}`);
  const request = `GET /poll?channel=rtt&cursor=${encodeURIComponent(cursor)}&timeout=0 HTTP/1.1\r\nHost: ${host}:${port}\r\nAccept: application/json\r\nUser-Agent: poll-round-trip\r\n\r\n`;
  let answers = 0;
  let stopping = false;
  const sockets: Socket[] = [];
  for (let i = 0; i < connections; i++) {
    const s = connect(port, host);
    s.setNoDelay(true);
    s.setEncoding("latin1");
    let buffered = "";
    s.on("data", (d: string) => {
      buffered += d;
      for (;;) {
        const end = buffered.indexOf("\r\n\r\n");
        if (end < 0) return;
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(buffered.slice(0, end))?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.slice(end + 4 + length);
        answers++;
        if (!stopping) s.write(request);
      }
    });
    s.on("error", () => {});
    s.write(request);
    sockets.push(s);
  }
  await sleep(1000);
  const a0 = answers;
  const cpu0 = cpuMicrosOf(h.pids());
  const sys0 = sysMicrosOf(h.pids());
  const t0 = performance.now();
  await sleep(durationMs);
  const n = answers - a0;
  const cpu = cpuMicrosOf(h.pids()) - cpu0;
  const sys = sysMicrosOf(h.pids()) - sys0;
  const seconds = (performance.now() - t0) / 1000;
  stopping = true;
  console.log(`run ${run}: ${Math.round(n / seconds)} polls/s, server ${(cpu / n).toFixed(2)} µs per poll (kernel ${(sys / n).toFixed(2)}), server busy ${((100 * cpu) / 1e6 / seconds).toFixed(0)} %`);
  for (const s of sockets) s.destroy();
  await h.stop(true);
}
process.exit(0);
