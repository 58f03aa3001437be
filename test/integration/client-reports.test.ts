/**
 * `POST /api/diagnostics`: clients' reports of fallbacks and cut connections,
 * counted in /metrics with fixed label sets; everything else is refused with
 * a clear error and counted nowhere.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getJson, withServer } from "../helpers/server.js";

describe("POST /api/diagnostics", () => {
  const s = withServer();
  const post = (body: string, type = "application/json") => getJson(`${s.url}/api/diagnostics`, { method: "POST", headers: { "Content-Type": type }, body });
  const counted = async () => (await (await fetch(`${s.url}/metrics`)).text()).split("\n").filter((l) => l.startsWith("heartline_client_"));

  it("counts a report by transports and reasons", async () => {
    const r = await post(JSON.stringify({ fallbacks: [{ from: "ws", to: "sse", reason: "timeout" }], cuts: [{ transport: "sse", cause: "silent" }, { transport: "sse", cause: "silent" }] }));
    assert.deepEqual([r.status, r.body], [200, { counted: 3 }]);
    assert.deepEqual((await counted()).sort(), ['heartline_client_cuts_total{transport="sse",cause="silent"} 2', 'heartline_client_fallbacks_total{from="ws",to="sse",reason="timeout"} 1']);
  });

  it("refuses hostile or malformed reports with a clear error and counts none of them", async () => {
    const before = await counted();
    const cases: Array<[string, string | undefined, number, string]> = [
      ["{", "application/json", 400, "bad_json"],
      ['{"fallbacks":[{"from":"ws","to":"sse","reason":"timeout"}]}', "text/plain", 415, "unsupported_media_type"],
      ['{"cuts":[{"transport":"carrier-pigeon","cause":"silent"}]}', "application/json", 400, "bad_request"],
      ['{"cuts":[{"transport":"ws","cause":"user alice@example.com left"}]}', "application/json", 400, "bad_request"],
      ['{"cuts":[{"transport":"ws","cause":"silent","ip":"10.0.0.1"}]}', "application/json", 400, "bad_request"],
      [JSON.stringify({ cuts: Array.from({ length: 21 }, () => ({ transport: "ws", cause: "silent" })) }), "application/json", 400, "bad_request"],
      ['[]', "application/json", 400, "bad_request"],
      ['{"fallbacks":"ws"}', "application/json", 400, "bad_request"],
      [JSON.stringify({ cuts: [], pad: "x".repeat(5000) }), "application/json", 413, "message_too_large"],
    ];
    for (const [body, type, status, code] of cases) {
      const r = await post(body, type);
      assert.equal(r.status, status, `${body.slice(0, 60)} → ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code, body.slice(0, 60));
    }
    assert.deepEqual(await counted(), before);
    assert.equal(s.hl.connections, 0);
  });

  it("counts at most a burst of reports at once for the whole server, answering 429 with Retry-After beyond it", async () => {
    const body = JSON.stringify({ cuts: [{ transport: "poll", cause: "network" }] });
    const answers = await Promise.all(Array.from({ length: 300 }, () => post(body)));
    const ok = answers.filter((r) => r.status === 200).length;
    const limited = answers.filter((r) => r.status === 429);
    assert.ok(ok >= 50 && ok < 300, `${ok} counted`);
    assert.ok(limited.length > 0);
    assert.equal(limited[0]!.body.error.code, "rate_limited");
    assert.equal(limited[0]!.headers.get("retry-after"), "1");
    assert.ok((await counted()).includes(`heartline_client_cuts_total{transport="poll",cause="network"} ${ok}`));
  });
});
