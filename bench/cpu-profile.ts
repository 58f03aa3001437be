/**
 * Reads a V8 `.cpuprofile` (written by `node --cpu-prof`) and ranks
 * functions by self time, and the code they live in by area (Heartline,
 * `ws`, Node internals, GC…).
 *
 *   npx tsx bench/cpu-profile.ts <file.cpuprofile> [top=15]
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface HotSpot {
  function: string;
  /** file:line (1-based) relative to the repository when inside it. */
  where: string;
  selfMs: number;
  /** Share of the busy time (idle excluded). */
  selfPct: number;
}

export interface ProfileSummary {
  busyMs: number;
  idleMs: number;
  top: HotSpot[];
  byArea: Array<{ area: string; selfMs: number; selfPct: number }>;
}

const ROOT = fileURLToPath(new URL("../", import.meta.url));

function shortUrl(url: string): string {
  let u = url.startsWith("file://") ? fileURLToPath(url) : url;
  if (u.startsWith(ROOT)) u = u.slice(ROOT.length);
  const nm = u.lastIndexOf("node_modules/");
  if (nm >= 0) u = u.slice(nm);
  return u;
}

function areaOf(fn: string, url: string): string {
  if (fn === "(garbage collector)") return "garbage collector";
  if (fn === "(program)") return "V8/native (program)";
  if (url.includes("/dist/")) return "Heartline (dist/)";
  if (url.includes("node_modules/ws/")) return "ws";
  if (url.includes("node_modules/")) return "other dependencies";
  if (url.startsWith("node:")) return "Node internals (" + url.slice(5).replace(/^internal\//, "").split("/")[0] + ")";
  if (url === "") return "native / builtins";
  return "other";
}

/**
 * Self time per function and per area. `window` ([from, to] in µs of the
 * monotonic clock, as `process.hrtime`) keeps only the samples taken inside
 * it, so start-up and shutdown do not blur the steady state.
 */
export function summarize(profile: CpuProfile, top = 15, window?: [number, number]): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  // Self time from the sample stream (exact), not from hitCount × mean interval.
  const self = new Map<number, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (window && (t < window[0] || t > window[1])) continue;
    const id = profile.samples[i]!;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const fns = new Map<string, HotSpot>();
  const areas = new Map<string, number>();
  let idleUs = 0;
  let busyUs = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === "(idle)") {
      idleUs += us;
      continue;
    }
    busyUs += us;
    const name = functionName || "(anonymous)";
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : "(native)";
    const key = name + "@" + where;
    const h = fns.get(key) ?? { function: name, where, selfMs: 0, selfPct: 0 };
    h.selfMs += us / 1000;
    fns.set(key, h);
    const a = areaOf(functionName, url);
    areas.set(a, (areas.get(a) ?? 0) + us);
  }
  const pct = (us: number) => Number(((100 * us) / Math.max(busyUs, 1)).toFixed(1));
  const list = [...fns.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  for (const h of list) {
    h.selfPct = pct(h.selfMs * 1000);
    h.selfMs = Number(h.selfMs.toFixed(1));
  }
  return {
    busyMs: Math.round(busyUs / 1000),
    idleMs: Math.round(idleUs / 1000),
    top: list,
    byArea: [...areas.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([area, us]) => ({ area, selfMs: Math.round(us / 1000), selfPct: pct(us) })),
  };
}

export function summarizeFile(file: string, top = 15, window?: [number, number]): ProfileSummary {
  return summarize(JSON.parse(readFileSync(file, "utf8")) as CpuProfile, top, window);
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop()!) && process.argv[2]) {
  const s = summarizeFile(process.argv[2], Number(process.argv[3] ?? 15));
  console.log(`busy ${s.busyMs} ms, idle ${s.idleMs} ms`);
  console.table(s.byArea);
  console.table(s.top);
}
