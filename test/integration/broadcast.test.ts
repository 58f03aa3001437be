/**
 * `POST /api/broadcast` and `hl.broadcast()` (SPEC §10) over real sockets:
 * one data to up to 1,000 channels, each its own publish; the server's
 * credential; hostile channel lists refused before anything is stored;
 * per-channel failures in the answer; idempotency keys per channel.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getJson, withServer, WsClient, type TestServer } from "../helpers/server.js";

const API_KEY = "broadcast-key";
const auth = { Authorization: `Bearer ${API_KEY}` };

function post(s: TestServer, body: unknown, headers: Record<string, string> = auth) {
  return getJson(`${s.url}/api/broadcast`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

const offsetOf = async (s: TestServer, channel: string) => (await getJson(`${s.url}/api/channels/${channel}`, { headers: auth })).body.offset as number;

describe("broadcast", () => {
  const s = withServer({ apiKey: API_KEY });

  it("stores one data on 1,000 channels, each its own publish; subscribers of some of them receive it once", async () => {
    const channels = Array.from({ length: 1000 }, (_, i) => `b:${i}`);
    const subs = await Promise.all([0, 499, 999].map((i) => WsClient.connect(`${s.wsUrl}/ws?channel=b:${i}`)));
    await Promise.all(subs.map((c) => c.next((f) => f.type === "subscribed")));
    const r = await post(s, { channels, data: { hello: "all" } });
    assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 300));
    assert.equal(r.body.results.length, 1000);
    assert.deepEqual(r.body.results.map((x: any) => x.channel), channels);
    assert.ok(r.body.results.every((x: any) => x.offset === 1 && typeof x.epoch === "string"));
    for (const c of subs) {
      const m = await c.next((f) => f.type === "message");
      assert.deepEqual(m.data, { hello: "all" });
      c.close();
    }
    await new Promise((res) => setTimeout(res, 100));
    for (const c of subs) assert.equal(c.messages().length, 1);
  });

  it("needs the API key: 401 without it or with a wrong one, nothing stored", async () => {
    assert.equal((await post(s, { channels: ["k:1"], data: 1 }, {})).status, 401);
    assert.equal((await post(s, { channels: ["k:1"], data: 1 }, { Authorization: "Bearer nope" })).status, 401);
    assert.equal(await offsetOf(s, "k:1"), 0);
  });

  it("refuses hostile bodies with 400 (or 413 / 415) and stores nothing", async () => {
    const bad: Array<[unknown, number]> = [
      [{ channels: "h:1", data: 1 }, 400],
      [{ channels: [], data: 1 }, 400],
      [{ channels: Array.from({ length: 1001 }, (_, i) => `h:${i}`), data: 1 }, 400],
      [{ channels: ["h:1", "h:2", "h:1"], data: 1 }, 400],
      [{ channels: ["h:1", "bad channel"], data: 1 }, 400],
      [{ channels: ["h:1", 7], data: 1 }, 400],
      [{ channels: ["h:1"] }, 400],
      [{ channels: ["h:1"], data: "x".repeat(70_000) }, 413],
      [{ channels: ["h:1"], data: 1, idempotencyKey: "has space" }, 400],
      [[1, 2], 400],
      ["{nope", 400],
    ];
    for (const [body, status] of bad) {
      const r = await post(s, body);
      assert.equal(r.status, status, JSON.stringify(body).slice(0, 80));
      assert.equal(typeof r.body.error.code, "string");
    }
    const plain = await getJson(`${s.url}/api/broadcast`, { method: "POST", headers: { "Content-Type": "text/plain", ...auth }, body: "{}" });
    assert.equal(plain.status, 415);
    assert.equal(await offsetOf(s, "h:1"), 0);
    assert.equal(await offsetOf(s, "h:2"), 0);
  });

  it("with an idempotencyKey, a repeat answers the first offsets and stores nothing", async () => {
    const body = { channels: ["i:1", "i:2"], data: { n: 1 }, idempotencyKey: "batch-42" };
    const first = await post(s, body);
    const again = await post(s, body);
    assert.deepEqual(again.body, first.body);
    assert.equal(await offsetOf(s, "i:1"), 1);
    // The key is per channel: a new channel in the list is stored.
    const more = await post(s, { ...body, channels: ["i:1", "i:3"] });
    assert.deepEqual(more.body.results.map((x: any) => x.offset), [1, 1]);
    assert.equal(await offsetOf(s, "i:1"), 1);
  });

  it("the library's broadcast() does the same", async () => {
    const r = await s.hl.broadcast(["l:1", "l:2"], { lib: true });
    assert.deepEqual(r.results.map((x) => ("offset" in x ? x.offset : -1)), [1, 1]);
    await assert.rejects(s.hl.broadcast(["l:1", "l:1"], 1), /twice/);
  });
});

describe("broadcast past --max-channels", () => {
  const s = withServer({ apiKey: API_KEY, maxChannels: 3 });
  it("a channel the broker refuses is an entry with its error; the others are stored", async () => {
    const r = await post(s, { channels: ["m:1", "m:2", "m:3", "m:4", "m:5"], data: 1 });
    assert.equal(r.status, 200);
    const ok = r.body.results.filter((x: any) => x.offset === 1);
    const refused = r.body.results.filter((x: any) => x.error?.code === "channel_limit");
    assert.equal(ok.length, 3);
    assert.equal(refused.length, 2);
  });
});
