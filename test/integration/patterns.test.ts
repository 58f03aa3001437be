/**
 * Channel patterns (token claims, --client-publish) are matched in time
 * bounded by the lengths of pattern and name: a pattern with many inner `*`
 * against a long channel name answers at once and never blocks the server.
 * (A backtracking matcher takes about a second per such match, so ten of
 * them hold /healthz for ten seconds; the bounds below leave room for a busy
 * machine and still tell the two apart.)
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { sign, nowSec } from "../helpers/auth.js";
import { startChildServer, type ChildServer } from "../helpers/child.js";
import { getJson } from "../helpers/server.js";

const SECRET = "a-test-secret-of-at-least-32-bytes!!";
const HOSTILE = "*a*a*a*a*a*a*b";
const NAME = "a".repeat(255);

describe("channel patterns with inner wildcards", () => {
  let s: ChildServer;
  before(async () => {
    // In a child process: a blocked event loop there cannot stall this test.
    s = await startChildServer(["--api-key", "k", "--jwt-secret", SECRET, "--client-publish", HOSTILE]);
  });
  after(() => s?.stop());

  /** Runs `hostile` requests and a /healthz issued at the same moment; returns how long /healthz took. */
  async function healthzDuring(hostile: () => Promise<{ status: number; body: any }>, expected: number, code: string): Promise<number> {
    await getJson(`${s.url}/healthz`, { signal: AbortSignal.timeout(3000) }); // a warm connection and code path
    const started = performance.now();
    const attacks = Array.from({ length: 10 }, hostile);
    for (const a of attacks) a.catch(() => {}); // awaited below; a blocked server must not leave them unhandled
    const health = getJson(`${s.url}/healthz`, { signal: AbortSignal.timeout(3000) }).then((r) => {
      assert.equal(r.status, 200);
      return performance.now() - started;
    });
    const healthMs = await health;
    for (const r of await Promise.all(attacks)) {
      assert.equal(r.status, expected, JSON.stringify(r.body));
      assert.equal(r.body.error.code, code);
    }
    const allMs = performance.now() - started;
    assert.ok(allMs < 2500, `10 hostile requests took ${allMs.toFixed(0)} ms`);
    return healthMs;
  }

  it("a --client-publish pattern against a 255-character channel: the publish is refused at once and /healthz answers meanwhile", async () => {
    const ms = await healthzDuring(
      () =>
        getJson(`${s.url}/api/publish`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ channel: NAME, data: 1 }),
          signal: AbortSignal.timeout(3000),
        }),
      401,
      "unauthorized",
    );
    assert.ok(ms < 1000, `/healthz took ${ms.toFixed(0)} ms`);
  });

  it("a token's channels pattern against a 255-character channel: the poll is refused at once and /healthz answers meanwhile", async () => {
    const token = await sign({ sub: "u", exp: nowSec() + 600, channels: [HOSTILE, "*" + "a*".repeat(60) + "b"] }, SECRET);
    const ms = await healthzDuring(() => getJson(`${s.url}/poll?channel=${NAME}&token=${token}`, { signal: AbortSignal.timeout(3000) }), 403, "forbidden");
    assert.ok(ms < 1000, `/healthz took ${ms.toFixed(0)} ms`);
  });

  it("keeps matching what the pattern means", async () => {
    const token = await sign({ sub: "u", exp: nowSec() + 600, channels: [HOSTILE] }, SECRET);
    const r = await getJson(`${s.url}/poll?channel=${"a".repeat(200)}b&token=${token}`, { signal: AbortSignal.timeout(3000) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });
});
