/**
 * Server CPU per HTTP publish, with nobody subscribed: what one `POST` to the
 * publish endpoint costs each server (request read, message stored, answer
 * written), apart from any fan-out. The load comes from `wrk` (Debian's
 * package: C, no code shared with any server), pinned to core 1, over 4
 * kept-alive connections with a 100-byte payload; the servers are pinned to
 * core 0, one at a time, in turn, `runs` times. Server CPU is user + system
 * time from /proc, over the measured seconds only.
 *
 *   npm run build && npx tsx bench/publish-cost.ts [runs=3] [seconds=5] [servers=heartline,nchan,socketio]
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cpuMicrosOf, machine, pinned, sysMicrosOf } from "./proc.js";
import { nchanMissing, startServer, type Endpoint, type ServerName } from "./servers.js";

const runs = Number(process.argv[2] ?? 3);
const seconds = Number(process.argv[3] ?? 5);
const servers = (process.argv[4] ?? "heartline,nchan,socketio").split(",") as ServerName[];
const CONNECTIONS = 4;
const PAYLOAD = JSON.stringify("x".repeat(98));
const CHANNEL = "publish-cost";

/** The publish request of each server, as its `publish()` in loadgen.ts sends it. */
function request(ep: Endpoint): { path: string; body: string } {
  if (ep.server === "heartline") return { path: "/api/publish", body: `{"channel":"${CHANNEL}","data":${PAYLOAD}}` };
  if (ep.server === "socketio") return { path: `/publish?room=${CHANNEL}`, body: PAYLOAD };
  return { path: `/pub/${CHANNEL}`, body: PAYLOAD };
}

/** Runs wrk for `secs` seconds; resolves with the requests it completed and the non-2xx answers among them. */
function wrk(url: string, script: string, secs: number): Promise<{ requests: number; failed: number }> {
  const [cmd, args] = pinned(1, "wrk", ["-t1", `-c${CONNECTIONS}`, `-d${secs}s`, "-s", script, url]);
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    proc.stdout.on("data", (c: Buffer) => (out += c.toString()));
    proc.on("error", (err) => reject(new Error(`wrk could not start (apt-get install wrk): ${err.message}`)));
    proc.on("exit", (code) => {
      const requests = /(\d+) requests in/.exec(out);
      if (code !== 0 || requests === null) return reject(new Error(`wrk exited with ${code}: ${out.slice(-500)}`));
      resolve({ requests: Number(requests[1]), failed: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0) });
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), "heartline-publish-cost-"));
const m = machine();
console.log(`publish cost — ${new Date().toISOString()}, ${m.cpus} × ${m.model}, Node ${m.node}, load average ${m.loadavg.map((l) => l.toFixed(2)).join(" ")}`);
console.log(`server CPU µs per publish (kernel part), publishes per second; wrk, ${CONNECTIONS} connections, ${seconds} s measured after 2 s`);
const totals = new Map<ServerName, number[]>();
try {
  for (let run = 1; run <= runs; run++) {
    for (const name of servers) {
      if (name === "nchan" && nchanMissing()) {
        console.log(`nchan: ${nchanMissing()}`);
        continue;
      }
      const h = await startServer(name);
      try {
        const { path, body } = request(h.endpoint);
        const script = join(dir, `${name}.lua`);
        writeFileSync(script, `wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = ${JSON.stringify(body)}\n`);
        const url = `http://${h.endpoint.host}:${h.endpoint.port}${path}`;
        await wrk(url, script, 2);
        const cpu0 = cpuMicrosOf(h.pids());
        const sys0 = sysMicrosOf(h.pids());
        const r = await wrk(url, script, seconds);
        const us = (cpuMicrosOf(h.pids()) - cpu0) / r.requests;
        const sys = (sysMicrosOf(h.pids()) - sys0) / r.requests;
        if (r.failed > 0) throw new Error(`${r.failed} of ${r.requests} publishes were refused`);
        totals.set(name, [...(totals.get(name) ?? []), us]);
        console.log(`run ${run} ${name.padEnd(9)} ${us.toFixed(2)} µs (${sys.toFixed(2)}) · ${Math.round(r.requests / seconds)}/s`);
      } finally {
        await h.stop();
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const hl = totals.get("heartline");
for (const [name, xs] of totals) {
  const ratio = hl && name !== "heartline" ? ` · Heartline ÷ ${name} ${(median(hl) / median(xs)).toFixed(2)}` : "";
  console.log(`median ${name.padEnd(9)} ${median(xs).toFixed(2)} µs${ratio}`);
}
process.exit(0);
