/**
 * `hl.diagnostics()`: why the client fell back from one transport to the
 * next and why its connections ended; and with `report: true`, the same
 * reduced to transports and reasons, counted by the server for /metrics.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { ManualClock } from "../../src/index.js";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";
import { client, connected, CutProxy, dropConnection, ManualClientClock, serverBehindProxy } from "./helpers.js";

const FAST = { backoffBase: 0.02, backoffMax: 0.1 };

async function metrics(s: TestServer): Promise<string> {
  return (await fetch(`${s.url}/metrics`)).text();
}

describe("Heartline client: diagnostics", () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  it("records each fallback with its reason and each cut with its cause, and reports them to the server once connected", async () => {
    const s = await startServer({ transports: ["poll"] });
    servers.push(s);
    const proxy = await CutProxy.start(s.port);
    const hl = client(proxy.url, { ...FAST, report: true });
    hl.subscribe("diag:a", () => {});
    try {
      await connected(hl, "poll");
      const d = hl.diagnostics();
      assert.deepEqual(
        d.fallbacks.map(({ from, to }) => [from, to]),
        [
          ["ws", "sse"],
          ["sse", "poll"],
        ],
      );
      // The upgrade's answer is a status; an EventSource does not show its status (a browser's neither).
      assert.equal(d.fallbacks[0]!.reason, "refused");
      assert.ok(d.fallbacks[0]!.code! >= 400, JSON.stringify(d.fallbacks));
      assert.equal(d.fallbacks[1]!.reason, "failed");
      assert.deepEqual(d.cuts, []);
      await waitFor(async () => (await metrics(s)).includes('heartline_client_fallbacks_total{from="sse",to="poll",reason="failed"} 1') || undefined, 5000, "the report");
      assert.match(await metrics(s), /heartline_client_fallbacks_total\{from="ws",to="sse",reason="refused"\} 1/);

      // The connection is cut: a network cut, reported after the next connection.
      await dropConnection(proxy, hl);
      await connected(hl, "poll");
      const cut = hl.diagnostics().cuts;
      assert.equal(cut.length, 1);
      assert.deepEqual([cut[0]!.transport, cut[0]!.cause], ["poll", "network"]);
      assert.ok(cut[0]!.after >= 0);
      await waitFor(async () => (await metrics(s)).includes('heartline_client_cuts_total{transport="poll",cause="network"} 1') || undefined, 5000, "the second report");
      // Reported once each: the fallbacks of the first report are not counted again.
      assert.match(await metrics(s), /heartline_client_fallbacks_total\{from="sse",to="poll",reason="failed"\} 1\n/);
    } finally {
      hl.close();
      await proxy.close();
    }
  });
});

describe("Heartline client: diagnostics of a silent connection", () => {
  // The server's clock never moves, so it sends no heartbeat.
  const fx = serverBehindProxy({}, { clock: new ManualClock() });

  it("records a connection replaced by the watchdog as a `silent` cut, sends no report without the option, and hands out copies", async () => {
    const clock = new ManualClientClock();
    const hl = client(fx.proxy.url, { transports: ["ws"], clock, random: () => 0.5 });
    hl.subscribe("diag:silent", () => {});
    try {
      await connected(hl, "ws");
      clock.advance(35_000);
      assert.equal(hl.state, "disconnected");
      clock.advance(125);
      await connected(hl, "ws");
      const d = hl.diagnostics();
      assert.deepEqual(d.cuts.map(({ transport, cause, after }) => [transport, cause, after]), [["ws", "silent", 35_000]]);
      d.cuts.length = 0;
      assert.equal(hl.diagnostics().cuts.length, 1, "a copy");
      await new Promise((r) => setTimeout(r, 100));
      assert.doesNotMatch(await (await fetch(`${fx.s.url}/metrics`)).text(), /heartline_client_cuts_total\{/);
    } finally {
      hl.close();
    }
  });
});
