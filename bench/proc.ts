/**
 * What the benchmark reads about a process from /proc: CPU time (utime +
 * stime of every thread), resident memory, child processes, and pinning to
 * a core with `taskset`.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { cpus, loadavg } from "node:os";

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on every common Linux build). */
export const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces). */
function statFields(pid: number): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, all threads) of `pid` in microseconds; 0 once it is gone. */
export function cpuMicros(pid: number): number {
  const f = statFields(pid);
  if (!f) return 0;
  // After ")": state(3) ppid(4) … utime is field 14 and stime 15 of stat(5).
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLOCK_TICKS;
}

/** Kernel (system) CPU time of `pid` in microseconds: the share spent in syscalls such as socket writes. */
export function sysMicros(pid: number): number {
  const f = statFields(pid);
  return f ? (Number(f[12]) * 1e6) / CLOCK_TICKS : 0;
}

/** A per-process reading summed over several processes. */
function sumOf(pids: readonly number[], read: (pid: number) => number): number {
  let t = 0;
  for (const p of pids) t += read(p);
  return t;
}

/** Summed kernel CPU time of several processes, in microseconds. */
export const sysMicrosOf = (pids: readonly number[]): number => sumOf(pids, sysMicros);

/**
 * Write syscalls (write, writev, sendmsg, …) `pid` has made, all threads
 * (`syscw` of /proc/<pid>/io); 0 when unreadable or gone.
 */
export function writeSyscalls(pid: number): number {
  try {
    const m = /^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Summed write syscalls of several processes. */
export const writeSyscallsOf = (pids: readonly number[]): number => sumOf(pids, writeSyscalls);

/** Summed CPU time of several processes, in microseconds. */
export const cpuMicrosOf = (pids: readonly number[]): number => sumOf(pids, cpuMicros);

/** Resident set size of `pid` in KiB (VmRSS); 0 once it is gone. */
export function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Summed RSS of several processes, in KiB. */
export const rssKiBOf = (pids: readonly number[]): number => sumOf(pids, rssKiB);

/** Direct children of `pid` (for nginx: its workers). */
export function childrenOf(pid: number): number[] {
  try {
    const raw = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
    if (raw) return raw.split(/\s+/).map(Number);
  } catch {
    /* kernel without CONFIG_PROC_CHILDREN: scan below */
  }
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f && Number(f[1]) === pid) out.push(Number(name));
  }
  return out;
}

/** `taskset` when present and the machine has at least two cores; else undefined. */
export const TASKSET = (() => {
  if (cpus().length < 2) return undefined;
  for (const p of ["/usr/bin/taskset", "/bin/taskset", "/usr/local/bin/taskset"]) if (existsSync(p)) return p;
  return undefined;
})();

/** `cmd args` prefixed with `taskset -c <core>` when pinning is possible. */
export function pinned(core: number, cmd: string, args: string[]): [string, string[]] {
  return TASKSET ? [TASKSET, ["-c", String(core), cmd, ...args]] : [cmd, args];
}

/** Pins every thread of a running process (this one, for instance) to `core`. */
export function pinProcess(pid: number, core: number): boolean {
  if (!TASKSET) return false;
  try {
    execFileSync(TASKSET, ["-a", "-p", "-c", String(core), String(pid)], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** A short description of the machine for the report. */
export function machine(): { cpus: number; model: string; loadavg: number[]; node: string; pinned: boolean } {
  const c = cpus();
  return {
    cpus: c.length,
    model: c[0]?.model ?? "unknown",
    loadavg: loadavg().map((x) => Number(x.toFixed(2))),
    node: process.version,
    pinned: TASKSET !== undefined,
  };
}
