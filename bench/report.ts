/**
 * Turns the benchmark's measurements into the tables printed on stdout (and
 * pasted into docs/PERFORMANCE.md): one table per scenario, every figure
 * beside the same figure of the peers measured in the same run, and the
 * Heartline/peer ratios; then the project's targets, met or missed.
 */
import { hooksTable, type HookRow } from "./hooks.js";
import { presenceTables, type PresenceResult } from "./presence.js";
import type { ProfileSummary } from "./cpu-profile.js";
import type { ServerName, Transport } from "./servers.js";

export interface FanoutRow {
  server: ServerName;
  transport: Transport;
  subscribers: number;
  /** Server CPU (utime + stime) per delivered message, µs. */
  serverUsPerMsg?: number;
  /** The kernel (system time) part of `serverUsPerMsg`, µs. */
  serverSysUsPerMsg?: number;
  /** The load generator's own CPU per delivered message, µs. */
  generatorUsPerMsg?: number;
  deliveredPerSec?: number;
  delivered?: number;
  rounds?: number;
  extra?: number;
  error?: string;
}

/** A row of the steady stream: scenario 1's figures (no rounds), and what only a steady stream shows. */
export interface SteadyRow extends Omit<FanoutRow, "rounds" | "extra"> {
  publishedPerSec?: number;
  /** Mean messages published but not yet delivered to every subscriber, seen at each publish (the window bounds it). */
  meanInFlight?: number;
  /** Server write syscalls (write, writev, …; its publish answers included) per delivered message. */
  writesPerMsg?: number;
  /** Which of the scenario's rounds measured it (each row is measured once a round, the servers in turn). */
  round?: number;
}

/**
 * The steady stream's rows reduced to one per server, transport and size:
 * the round with the median CPU per message (the lower middle of an even
 * count). A row whose every round failed stays, with its error.
 */
export function steadyMedians(rows: SteadyRow[]): SteadyRow[] {
  const groups = new Map<string, SteadyRow[]>();
  for (const r of rows) {
    const k = `${r.server} ${r.transport} ${r.subscribers}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const ok = g.filter((r) => !r.error && r.serverUsPerMsg !== undefined).sort((a, b) => a.serverUsPerMsg! - b.serverUsPerMsg!);
    return ok.length > 0 ? ok[Math.floor((ok.length - 1) / 2)]! : g[0]!;
  });
}

/** Heartline ÷ `peer` in each round where both were measured, by transport and size, and the median of those ratios. */
export function steadyRoundRatios(rows: SteadyRow[], peer: ServerName): RoundRatios[] {
  const ok = rows.filter((r) => !r.error && r.serverUsPerMsg !== undefined);
  const out: RoundRatios[] = [];
  for (const [t, n] of keys(ok, (r) => r.subscribers)) {
    const byRound: Array<number | undefined> = [];
    for (const hl of ok.filter((r) => r.server === "heartline" && r.transport === t && r.subscribers === n)) {
      const p = ok.find((r) => r.server === peer && r.transport === t && r.subscribers === n && r.round === hl.round);
      if (p) byRound[(hl.round ?? 1) - 1] = hl.serverUsPerMsg! / p.serverUsPerMsg!;
    }
    const sorted = byRound.filter((x) => x !== undefined).sort((a, b) => a - b);
    if (sorted.length === 0) continue;
    const mid = sorted.length / 2;
    out.push({ transport: t, subscribers: n, byRound, median: sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2 });
  }
  return out;
}

export interface RoundRatios {
  transport: Transport;
  subscribers: number;
  /** Heartline ÷ the peer by round (index 0: round 1); undefined where either failed. */
  byRound: Array<number | undefined>;
  /** The median of the rounds where both were measured. */
  median: number;
}

export interface IdleRow {
  server: ServerName;
  transport: Transport;
  connections: number;
  opened?: number;
  /** RSS as it stands (no forced GC), before and a while after the last connection opened. */
  rssBeforeAsIsKiB?: number;
  rssAfterAsIsKiB?: number;
  /** (RSS after − before) ÷ connections, both as they stand, KiB: what `top` shows. */
  perConnAsIsKiB?: number;
  /** The same readings each after a forced GC (Node servers). */
  rssBeforeKiB?: number;
  rssAfterKiB?: number;
  /** (RSS after − before) ÷ connections, each after a forced GC, KiB. */
  perConnKiB?: number;
  /** Heartline only: JS heap in use (from its /metrics) after − before, ÷ connections, KiB. */
  heapPerConnKiB?: number;
  error?: string;
}

export interface LatencyRow {
  server: ServerName;
  transport: Transport;
  subscribers: number;
  rate: number;
  samples?: number;
  expected?: number;
  p50?: number;
  p99?: number;
  max?: number;
  publishErrors?: number;
  /** p99 timed when the generator reached each subscriber's socket, ms. */
  handledP99?: number;
  /** p99 lateness of the generator's publish timer, ms (scheduling noise of the machine). */
  timerLateP99?: number;
  error?: string;
}

export interface HoldResult {
  connections: number;
  opened: number;
  failed: number;
  openSeconds: number;
  holdSeconds: number;
  heartbeatSeconds: number;
  dropped: number;
  heartbeatsPerConnection: number;
  /** The server's own count (GET /api/channels/…) at the end. */
  serverSubscribers: number;
  /** Connections that received the message published at the end. */
  finalDelivered: number;
  rssBeforeKiB: number;
  rssOpenKiB: number;
  rssEndKiB: number;
  perConnKiB: number;
  serverCpuPct: number;
  errors: string[];
  error?: string;
}

export interface ProfileResult {
  subscribers: number;
  transport: Transport;
  /** The load profiled: the steady stream or scenario 1's lock-step rounds. */
  load: "steady" | "rounds";
  serverUsPerMsg?: number;
  file?: string;
  summary?: ProfileSummary;
  error?: string;
}

export interface Results {
  startedAt: string;
  quick: boolean;
  machine: { cpus: number; model: string; loadavg: number[]; node: string; pinned: boolean; loadavgEnd?: number[] };
  skipped: string[];
  plan: unknown;
  fanout: FanoutRow[];
  steady: SteadyRow[];
  idle: IdleRow[];
  latency: LatencyRow[];
  hold?: HoldResult;
  profile?: ProfileResult;
  hooks?: HookRow[];
  presence?: PresenceResult;
  targets: Target[];
}

export interface Target {
  target: string;
  measured: string;
  met: boolean | null;
}

const PEERS: ServerName[] = ["socketio", "nchan"];
const LABEL: Record<ServerName, string> = { heartline: "Heartline", socketio: "Socket.IO", nchan: "nchan" };
const TRANSPORT_LABEL: Record<Transport, string> = { ws: "WebSocket", sse: "SSE", "sse-h2": "SSE over HTTP/2 (TLS)", poll: "long-poll" };

function num(v: number | undefined, digits = 1): string {
  if (v === undefined || !Number.isFinite(v)) return "—";
  return v >= 100 ? v.toFixed(0) : v.toFixed(digits);
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "—";
  return (a / b).toFixed(2);
}

function table(headers: string[], rows: string[][]): string {
  const out = ["| " + headers.join(" | ") + " |", "|" + headers.map(() => "---").join("|") + "|"];
  for (const r of rows) out.push("| " + r.join(" | ") + " |");
  return out.join("\n");
}

function cell<T extends { server: ServerName; error?: string }>(row: T | undefined, f: (r: T) => string): string {
  if (!row) return "—";
  if (row.error) return "error";
  return f(row);
}

/** The scenario keys present, in order: (transport, size). */
function keys<T extends { transport: Transport }>(rows: T[], size: (r: T) => number): Array<[Transport, number]> {
  const seen = new Set<string>();
  const out: Array<[Transport, number]> = [];
  for (const t of ["ws", "sse", "sse-h2", "poll"] as Transport[]) {
    for (const r of rows) {
      if (r.transport !== t) continue;
      const k = t + "/" + size(r);
      if (!seen.has(k)) {
        seen.add(k);
        out.push([t, size(r)]);
      }
    }
  }
  return out;
}

/** The fan-out table (scenario 1, and the steady stream's with `extra` columns: a header and a cell per server). */
export function fanoutTable<R extends FanoutRow | SteadyRow>(rows: R[], extra: Array<[header: string, value: (r: R) => string]> = []): string {
  const all = ["heartline", ...PEERS] as ServerName[];
  const body = keys(rows, (r) => r.subscribers).map(([t, n]) => {
    const by = (s: ServerName) => rows.find((r) => r.server === s && r.transport === t && r.subscribers === n);
    const hl = by("heartline");
    const perServer = (f: (r: R) => string) => all.map((s) => cell(by(s), f)).join(" / ");
    return [
      TRANSPORT_LABEL[t],
      String(n),
      ...all.map((s) => cell(by(s), (r) => num(r.serverUsPerMsg, 2))),
      ...PEERS.map((s) => ratio(hl?.serverUsPerMsg, by(s)?.serverUsPerMsg)),
      perServer((r) => num(r.serverSysUsPerMsg, 2)),
      perServer((r) => num(r.generatorUsPerMsg, 2)),
      perServer((r) => (r.deliveredPerSec ? Math.round(r.deliveredPerSec / 1000) + "k" : "—")),
      ...extra.map(([, f]) => perServer(f)),
    ];
  });
  return table(
    [
      "transport",
      "subscribers",
      "Heartline µs/msg",
      "Socket.IO µs/msg",
      "nchan µs/msg",
      "HL/Socket.IO",
      "HL/nchan",
      "of which kernel µs/msg (HL / SIO / nchan)",
      "generator µs/msg (HL / SIO / nchan)",
      "delivered/s (HL / SIO / nchan)",
      ...extra.map(([h]) => h),
    ],
    body,
  );
}

/**
 * The steady stream's table: scenario 1's columns, then publishes per
 * second, the messages in flight, the server's write syscalls per delivered
 * message and the server's and generator's CPU together; of several rounds,
 * each server's median round, then Heartline ÷ nchan round by round.
 */
export function steadyTable(rows: SteadyRow[]): string {
  const rounds = Math.max(1, ...rows.map((r) => r.round ?? 1));
  const byRound = steadyRoundRatios(rows, "nchan");
  const note = rounds > 1 ? `Each row is the median of ${rounds} rounds (the servers in turn within a round).\n\n` : "";
  const perRound =
    rounds > 1 && byRound.length > 0
      ? "\n\nHeartline ÷ nchan, round by round (each pair measured minutes apart):\n\n" +
        table(
          ["transport", "subscribers", ...Array.from({ length: rounds }, (_, i) => `round ${i + 1}`), "median"],
          byRound.map((b) => [TRANSPORT_LABEL[b.transport], String(b.subscribers), ...Array.from({ length: rounds }, (_, i) => b.byRound[i]?.toFixed(2) ?? "—"), b.median.toFixed(2)]),
        )
      : "";
  return note + steadyColumns(steadyMedians(rows)) + perRound;
}

function steadyColumns(rows: SteadyRow[]): string {
  return fanoutTable(rows, [
    ["published/s (HL / SIO / nchan)", (r) => num(r.publishedPerSec, 0)],
    ["mean in flight (HL / SIO / nchan)", (r) => num(r.meanInFlight, 1)],
    ["server writes/msg (HL / SIO / nchan)", (r) => num(r.writesPerMsg, 2)],
    // On loopback the kernel work of sending can land on the receiver: a
    // server that leaves Nagle's algorithm on (nginx does for streaming
    // responses) queues small sends, and the generator's ACKs transmit them.
    // The sum is the whole machine's work per delivered message.
    ["server + generator µs/msg (HL / SIO / nchan)", (r) => (r.serverUsPerMsg !== undefined && r.generatorUsPerMsg !== undefined ? num(r.serverUsPerMsg + r.generatorUsPerMsg, 2) : "—")],
  ]);
}

export function idleTable(rows: IdleRow[]): string {
  const all = ["heartline", ...PEERS] as ServerName[];
  const body = keys(rows, (r) => r.connections).map(([t, n]) => {
    const by = (s: ServerName) => rows.find((r) => r.server === s && r.transport === t && r.connections === n);
    const hl = by("heartline");
    return [
      TRANSPORT_LABEL[t],
      n.toLocaleString("en-US"),
      ...all.map((s) => cell(by(s), (r) => num(r.perConnAsIsKiB, 2))),
      ...PEERS.map((s) => ratio(hl?.perConnAsIsKiB, by(s)?.perConnAsIsKiB)),
      all.map((s) => cell(by(s), (r) => num(r.perConnKiB, 2))).join(" / "),
      cell(hl, (r) => num(r.heapPerConnKiB, 2)),
    ];
  });
  return table(
    [
      "transport",
      "connections",
      "Heartline KiB/conn",
      "Socket.IO KiB/conn",
      "nchan KiB/conn",
      "HL/Socket.IO",
      "HL/nchan",
      "after forced GC KiB/conn (HL / SIO / nchan)",
      "Heartline JS heap KiB/conn (after forced GC)",
    ],
    body,
  );
}

export function latencyTable(rows: LatencyRow[]): string {
  const body = keys(rows, (r) => r.subscribers).map(([t]) => {
    const by = (s: ServerName) => rows.find((r) => r.server === s && r.transport === t);
    const hl = by("heartline");
    const f = (r: LatencyRow) => `${num(r.p50, 2)} / ${num(r.p99, 2)} / ${num(r.max, 1)}`;
    return [
      TRANSPORT_LABEL[t],
      ...(["heartline", ...PEERS] as ServerName[]).map((s) => cell(by(s), f)),
      ...PEERS.map((s) => ratio(hl?.p99, by(s)?.p99)),
      (["heartline", ...PEERS] as ServerName[]).map((s) => cell(by(s), (r) => `${r.samples}/${r.expected}` + (r.publishErrors ? ` (${r.publishErrors} publishes failed)` : ""))).join(" · "),
      (["heartline", ...PEERS] as ServerName[]).map((s) => cell(by(s), (r) => num(r.handledP99, 2))).join(" / "),
      (["heartline", ...PEERS] as ServerName[]).map((s) => cell(by(s), (r) => num(r.timerLateP99, 1))).join(" / "),
    ];
  });
  return table(
    [
      "transport",
      "Heartline p50 / p99 / max ms",
      "Socket.IO p50 / p99 / max ms",
      "nchan p50 / p99 / max ms",
      "p99 HL/Socket.IO",
      "p99 HL/nchan",
      "samples/expected (HL · SIO · nchan)",
      "p99 when the generator reached the socket, ms (HL / SIO / nchan)",
      "generator timer late p99 ms (HL / SIO / nchan)",
    ],
    body,
  );
}

export function holdTable(h: HoldResult): string {
  if (h.error) return `error: ${h.error}`;
  return table(
    ["connections held", "opened (s)", "held (s)", "heartbeat (s)", "dropped", "heartbeats/conn", "server count at end", "final message delivered", "RSS before → open → end (MiB)", "KiB/conn", "server CPU %"],
    [
      [
        `${h.opened.toLocaleString("en-US")} / ${h.connections.toLocaleString("en-US")}`,
        num(h.openSeconds),
        String(h.holdSeconds),
        String(h.heartbeatSeconds),
        String(h.dropped),
        num(h.heartbeatsPerConnection),
        h.serverSubscribers.toLocaleString("en-US"),
        h.finalDelivered.toLocaleString("en-US"),
        `${(h.rssBeforeKiB / 1024).toFixed(0)} → ${(h.rssOpenKiB / 1024).toFixed(0)} → ${(h.rssEndKiB / 1024).toFixed(0)}`,
        num(h.perConnKiB, 2),
        num(h.serverCpuPct),
      ],
    ],
  );
}

export function profileTable(p: ProfileResult): string {
  if (p.error || !p.summary) return `error: ${p.error ?? "no profile"}`;
  const s = p.summary;
  const areas = table(
    ["area", "self ms", "% of busy"],
    s.byArea.slice(0, 10).map((a) => [a.area, String(a.selfMs), a.selfPct.toFixed(1)]),
  );
  const top = table(
    ["function", "where", "self ms", "% of busy"],
    s.top.map((h) => [h.function, h.where, h.selfMs.toFixed(1), h.selfPct.toFixed(1)]),
  );
  return `busy ${s.busyMs} ms, idle ${s.idleMs} ms in the measured window (${p.subscribers} ${TRANSPORT_LABEL[p.transport]} subscribers, ${p.load === "steady" ? "steady stream" : "lock-step rounds"}, ${num(p.serverUsPerMsg, 2)} µs/msg while profiled)\n\n${areas}\n\n${top}`;
}

/** The project's targets against this run's figures. */
export function evaluateTargets(r: Results): Target[] {
  const out: Target[] = [];
  const f = (s: ServerName, t: Transport, n: number) => r.fanout.find((x) => x.server === s && x.transport === t && x.subscribers === n && !x.error);
  const sizes = [...new Set(r.fanout.map((x) => x.subscribers))];
  for (const n of sizes) {
    const hl = f("heartline", "ws", n);
    const sio = f("socketio", "ws", n);
    const nc = f("nchan", "ws", n);
    if (hl && sio)
      out.push({
        target: `WS fan-out CPU/msg ≤ ⅓ of Socket.IO's (${n} subscribers)`,
        measured: `${num(hl.serverUsPerMsg, 2)} vs ${num(sio.serverUsPerMsg, 2)} µs → ratio ${ratio(hl.serverUsPerMsg, sio.serverUsPerMsg)}`,
        met: hl.serverUsPerMsg! <= sio.serverUsPerMsg! / 3,
      });
    if (hl && nc)
      out.push({
        target: `WS fan-out CPU/msg ≤ nchan's, lock-step rounds (${n} subscribers)`,
        measured: `${num(hl.serverUsPerMsg, 2)} vs ${num(nc.serverUsPerMsg, 2)} µs → ratio ${ratio(hl.serverUsPerMsg, nc.serverUsPerMsg)}`,
        met: hl.serverUsPerMsg! <= nc.serverUsPerMsg!,
      });
    const hp = f("heartline", "poll", n);
    const np = f("nchan", "poll", n);
    if (hp && np)
      out.push({
        target: `long-poll CPU/msg ≤ nchan's, lock-step rounds (${n} subscribers)`,
        measured: `${num(hp.serverUsPerMsg, 2)} vs ${num(np.serverUsPerMsg, 2)} µs → ratio ${ratio(hp.serverUsPerMsg, np.serverUsPerMsg)}`,
        met: hp.serverUsPerMsg! <= np.serverUsPerMsg!,
      });
  }
  // Of several rounds, the median of the round-by-round ratios.
  const medians = steadyMedians(r.steady);
  const st = (s: ServerName, t: Transport, n: number) => medians.find((x) => x.server === s && x.transport === t && x.subscribers === n && !x.error);
  const byRound = steadyRoundRatios(r.steady, "nchan");
  for (const n of [...new Set(r.steady.map((x) => x.subscribers))]) {
    for (const t of ["ws", "sse", "poll"] as Transport[]) {
      const hl = st("heartline", t, n);
      const nc = st("nchan", t, n);
      const rounds = byRound.find((b) => b.transport === t && b.subscribers === n);
      if (hl && nc && rounds)
        out.push({
          target: `${TRANSPORT_LABEL[t]} fan-out CPU/msg ≤ 0.8 × nchan's, steady stream (${n} subscribers)`,
          measured:
            rounds.byRound.length > 1
              ? `median ${num(hl.serverUsPerMsg, 2)} vs ${num(nc.serverUsPerMsg, 2)} µs; ratio by round ${rounds.byRound.map((x) => x?.toFixed(2) ?? "—").join(", ")} → median ${rounds.median.toFixed(2)}`
              : `${num(hl.serverUsPerMsg, 2)} vs ${num(nc.serverUsPerMsg, 2)} µs → ratio ${rounds.median.toFixed(2)}`,
          met: rounds.median <= 0.8,
        });
    }
  }
  // Idle memory as `top` shows it: RSS as it stands, no forced GC.
  const idle = (s: ServerName, t: Transport, n: number) => r.idle.find((x) => x.server === s && x.transport === t && x.connections === n && !x.error);
  for (const n of [...new Set(r.idle.map((x) => x.connections))]) {
    const hl = idle("heartline", "ws", n);
    const sio = idle("socketio", "ws", n);
    if (hl && sio)
      out.push({
        target: `idle WS RSS/conn ≤ ½ of Socket.IO's, as it stands (${n})`,
        measured: `${num(hl.perConnAsIsKiB, 2)} vs ${num(sio.perConnAsIsKiB, 2)} KiB → ratio ${ratio(hl.perConnAsIsKiB, sio.perConnAsIsKiB)}`,
        met: hl.perConnAsIsKiB! <= sio.perConnAsIsKiB! / 2,
      });
    for (const t of ["ws", "sse", "poll"] as Transport[]) {
      const x = idle("heartline", t, n);
      if (x) out.push({ target: `idle ${TRANSPORT_LABEL[t]} RSS/conn ≤ 6 KiB, as it stands (${n})`, measured: `${num(x.perConnAsIsKiB, 2)} KiB (after forced GC ${num(x.perConnKiB, 2)})`, met: x.perConnAsIsKiB! <= 6 });
    }
  }
  for (const t of ["ws", "sse"] as Transport[]) {
    const x = r.latency.find((l) => l.server === "heartline" && l.transport === t && !l.error);
    if (x) out.push({ target: `p99 publish→receive ≤ 3 ms on ${TRANSPORT_LABEL[t]} (100 subscribers, 50 msg/s)`, measured: `${num(x.p99, 2)} ms`, met: x.p99! <= 3 });
  }
  if (r.hold && !r.hold.error) {
    const h = r.hold;
    out.push({
      target: `${h.connections.toLocaleString("en-US")} WS connections held ${h.holdSeconds} s with a ${h.heartbeatSeconds} s heartbeat, none dropped`,
      measured: `${h.opened} opened, ${h.dropped} dropped, ${h.finalDelivered} got the final message, RSS ${(h.rssEndKiB / 1024).toFixed(0)} MiB`,
      met: h.opened === h.connections && h.dropped === 0 && h.finalDelivered === h.opened,
    });
  }
  return out;
}

export function targetsTable(targets: Target[]): string {
  return table(
    ["target", "measured", "met"],
    targets.map((t) => [t.target, t.measured, t.met === null ? "—" : t.met ? "yes" : "**no**"]),
  );
}

export function fullReport(r: Results): string {
  const parts: string[] = [];
  const m = r.machine;
  parts.push(
    `Heartline benchmark${r.quick ? " (quick)" : ""} — ${r.startedAt}\n` +
      `machine: ${m.cpus} × ${m.model}, Node ${m.node}, load average at start ${m.loadavg.join(" ")}` +
      (m.loadavgEnd ? `, at end ${m.loadavgEnd.join(" ")}` : "") +
      `, ${m.pinned ? "servers pinned to core 0, generator to core 1" : "not pinned (no taskset or one core)"}`,
  );
  if (r.skipped.length) parts.push(r.skipped.map((s) => `note: ${s}`).join("\n"));
  if (r.fanout.length) parts.push("## 1. Fan-out: server CPU per delivered message (closed loop)\n\n" + fanoutTable(r.fanout));
  if (r.steady.length) {
    const p = r.plan as { steady?: { publishers: number; window: number; bytes: number } };
    const how = p.steady ? ` (${p.steady.publishers} publishers, window ${p.steady.window}, ${p.steady.bytes}-byte payloads)` : "";
    parts.push(`## 1b. Fan-out under a steady stream: server CPU per delivered message${how}\n\n` + steadyTable(r.steady));
  }
  if (r.idle.length) parts.push("## 2. Idle connections: RSS per connection, as it stands (no forced GC), and after a forced GC\n\n" + idleTable(r.idle));
  if (r.latency.length) parts.push(`## 3. Publish → receive latency (${r.latency[0]!.subscribers} subscribers, ${r.latency[0]!.rate} msg/s)\n\n` + latencyTable(r.latency));
  if (r.hold) parts.push("## 4. Connections held by one Heartline process\n\n" + holdTable(r.hold));
  if (r.hooks) parts.push("## 5. What a connect hook adds: server CPU per connection and per poll\n\n" + hooksTable(r.hooks));
  if (r.presence) parts.push("## 6. What presence costs: join and leave, memory and Redis commands per member, fan-out unchanged\n\n" + presenceTables(r.presence));
  if (r.profile) parts.push(`## Profile: Heartline ${TRANSPORT_LABEL[r.profile.transport]} fan-out (self time)\n\n` + profileTable(r.profile));
  const errors = [...r.fanout, ...r.steady, ...r.idle, ...r.latency].filter((x) => x.error);
  if (errors.length) parts.push("## Errors\n\n" + errors.map((e) => `- ${LABEL[e.server]} ${e.transport}: ${e.error}`).join("\n"));
  if (r.targets.length) parts.push("## Targets\n\n" + targetsTable(r.targets));
  return parts.join("\n\n") + "\n";
}
