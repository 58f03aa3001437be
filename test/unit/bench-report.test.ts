import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { steadyMedians, steadyRoundRatios, steadyTable, evaluateTargets, type SteadyRow } from "../../bench/report.js";

const row = (server: SteadyRow["server"], transport: SteadyRow["transport"], subscribers: number, round: number, us?: number, error?: string): SteadyRow => ({
  server,
  transport,
  subscribers,
  round,
  serverUsPerMsg: us,
  error,
});

describe("the steady stream's rounds in the report", () => {
  const rows = [
    row("heartline", "poll", 100, 1, 4.0),
    row("nchan", "poll", 100, 1, 3.0),
    row("heartline", "poll", 100, 2, 2.0),
    row("nchan", "poll", 100, 2, 4.0),
    row("heartline", "poll", 100, 3, 3.0),
    row("nchan", "poll", 100, 3, 5.0),
  ];

  it("keeps each server's median round, not its first or its mean", () => {
    const m = steadyMedians(rows);
    assert.equal(m.length, 2);
    assert.equal(m.find((r) => r.server === "heartline")!.serverUsPerMsg, 3.0);
    assert.equal(m.find((r) => r.server === "nchan")!.serverUsPerMsg, 4.0);
  });

  it("pairs Heartline and the peer of the same round, and takes the median of those ratios", () => {
    const [r] = steadyRoundRatios(rows, "nchan");
    assert.deepEqual(r!.byRound.map((x) => x!.toFixed(3)), ["1.333", "0.500", "0.600"]);
    assert.equal(r!.median.toFixed(3), "0.600");
  });

  it("leaves out a round where either server failed, and keeps a row whose every round failed", () => {
    const failing = [...rows.slice(0, 3), row("nchan", "poll", 100, 2, undefined, "stalled"), ...rows.slice(4), row("heartline", "ws", 100, 1, undefined, "refused")];
    const [r] = steadyRoundRatios(failing, "nchan");
    assert.equal(r!.byRound[1], undefined);
    assert.equal(r!.byRound.filter((x) => x !== undefined).length, 2);
    assert.equal(r!.median.toFixed(3), (((4 / 3) + 0.6) / 2).toFixed(3));
    assert.equal(steadyMedians(failing).find((x) => x.transport === "ws")!.error, "refused");
  });

  it("judges the 0.8 target by the median ratio and prints the rounds", () => {
    const t = evaluateTargets({ fanout: [], steady: rows, idle: [], latency: [] } as never).find((x) => x.target.startsWith("long-poll fan-out CPU/msg ≤ 0.8"));
    assert.ok(t);
    assert.equal(t.met, true);
    assert.match(t.measured, /1\.33, 0\.50, 0\.60 → median 0\.60/);
    assert.match(steadyTable(rows), /median of 3 rounds[\s\S]*\| long-poll \| 100 \| 1\.33 \| 0\.50 \| 0\.60 \| 0\.60 \|/);
  });
});
