/**
 * What an anonymous client can make the memory broker hold: reading a
 * channel costs a small record with a short life, the number of channels is
 * capped (`--max-channels`, `channel_limit`), and stored history is capped in
 * bytes (`--max-history-bytes`), the loss announced as a reset.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ManualClock } from "../../src/index.js";
import { encodeCursor } from "../../src/hub/cursor.js";
import { mb, runPool, startChildServer, type ChildServer } from "../helpers/child.js";
import { getJson, withServer, WsClient } from "../helpers/server.js";

const cursorAt = (channel: string, epoch: string, offset: number) => encodeCursor([[channel, { epoch, offset }]]);

async function healthy(url: string): Promise<void> {
  const r = await getJson(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
  assert.equal(r.status, 200);
}

/** Subscribes `ws` to every channel of `names` by frame, waits for each `subscribed`, then unsubscribes them. */
async function subscribeRound(ws: WsClient, names: string[]): Promise<void> {
  for (const channel of names) ws.send({ type: "subscribe", channel });
  for (let i = 0; i < names.length; i++) {
    const f = await ws.next((x) => x.type === "subscribed" || x.type === "error", 10_000);
    assert.equal(f.type, "subscribed", JSON.stringify(f));
  }
  for (const channel of names) ws.send({ type: "unsubscribe", channel });
}

/** A metric's value from /metrics. */
async function metric(url: string, name: string): Promise<number> {
  const text = (await getJson(`${url}/metrics`)).body as string;
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

/**
 * A GET that meets a kept-alive connection closed by the server as it was reused is retried once, as
 * HTTP allows for idempotent requests (RFC 9112 §9.3.1); a second failure fails the test.
 */
async function get(url: string): Promise<Response> {
  try {
    return await fetch(url);
  } catch {
    return fetch(url);
  }
}

describe("reading fresh channels", () => {
  let s: ChildServer;
  before(async () => {
    s = await startChildServer([]);
  });
  after(() => s?.stop());

  it("20,000 reads of fresh channels (polls, channel info, WebSocket subscribes) grow the server's RSS by less than 32 MB", async () => {
    // Warm up every path on a few channels, so the baseline holds code, buffers and a grown heap, not channels.
    // RSS saws with the collector: the baseline is the highest it reached while warming up.
    const warm = await WsClient.connect(`${s.wsUrl}/ws`);
    let base = 0;
    for (let round = 0; round < 5; round++) {
      await runPool(1000, 32, async (i) => {
        const r = await get(i % 5 === 0 ? `${s.url}/api/channels/warm:${i % 7}` : `${s.url}/poll?channel=warm:${i % 7}`);
        assert.equal(r.status, 200);
        await r.arrayBuffer();
      });
      await subscribeRound(warm, ["warm:a", "warm:b"]);
      base = Math.max(base, s.rss());
    }
    warm.close();

    const polls = 16_000;
    const infos = 2_000;
    await runPool(polls + infos, 32, async (i) => {
      const url = i < polls ? `${s.url}/poll?channel=fresh:p${i}` : `${s.url}/api/channels/fresh:i${i}`;
      const r = await get(url);
      assert.equal(r.status, 200, `${url} answered ${r.status}`);
      await r.arrayBuffer();
    });
    const sockets = await Promise.all(Array.from({ length: 4 }, () => WsClient.connect(`${s.wsUrl}/ws`)));
    await Promise.all(
      sockets.map(async (ws, k) => {
        for (let round = 0; round < 5; round++) {
          await subscribeRound(ws, Array.from({ length: 100 }, (_, j) => `fresh:w${k}.${round}.${j}`));
        }
      }),
    );
    for (const ws of sockets) ws.close();

    const grown = s.rss() - base;
    console.log(`# RSS ${mb(base)} → +${mb(grown)} after 20,000 fresh reads`);
    await healthy(s.url);
    assert.ok(grown < 32 * 1024 * 1024, `RSS grew by ${mb(grown)} after 20,000 fresh reads`);
    // The fresh channels and the warm ones, unless a slow run let some of them pass their 60 s.
    const channels = await metric(s.url, "heartline_broker_channels");
    assert.ok(channels > 15_000 && channels <= 20_000 + 7 + 2, `${channels} channels in /metrics`);
  });
});

describe("--max-channels", () => {
  const s = withServer({ maxChannels: 20 });

  it("refuses a new channel with 503 channel_limit on every way in, while existing channels keep working", async () => {
    for (let i = 0; i < 19; i++) assert.equal((await getJson(`${s.url}/poll?channel=cap:${i}`)).status, 200);
    const published = await s.hl.publish("cap:pub", "first");
    assert.equal(s.hl.hub.brokerUsage()!.channels, 20);

    const refusals = [
      await getJson(`${s.url}/poll?channel=cap:new1`),
      await getJson(`${s.url}/api/channels/cap:new2`),
      await getJson(`${s.url}/api/publish`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ channel: "cap:new3", data: 1 }) }),
    ];
    for (const r of refusals) {
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assert.equal(r.body.error.code, "channel_limit");
      assert.match(r.body.error.message, /--max-channels/);
      assert.match(r.headers.get("retry-after") ?? "", /^\d+$/);
    }

    const ws = await WsClient.connect(`${s.wsUrl}/ws`);
    try {
      ws.send({ type: "subscribe", channel: "cap:new4" });
      const err = await ws.next((f) => f.type === "error");
      assert.equal(err.code, "channel_limit");
      assert.equal(err.channel, "cap:new4");
      // The connection stays, and existing channels work on it.
      ws.send({ type: "subscribe", channel: "cap:pub", since: { epoch: published.epoch, offset: 0 } });
      assert.deepEqual(await ws.next((f) => f.type === "subscribed"), { type: "subscribed", channel: "cap:pub", epoch: published.epoch, offset: 1, recovered: true });
      assert.equal((await ws.next((f) => f.type === "message")).data, "first");
      const second = await getJson(`${s.url}/api/publish`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ channel: "cap:pub", data: "second" }) });
      assert.equal(second.status, 200);
      assert.equal((await ws.next((f) => f.type === "message")).data, "second");
      const polled = await getJson(`${s.url}/poll?channel=cap:3&channel=cap:pub&cursor=${cursorAt("cap:pub", published.epoch, 1)}`);
      assert.equal(polled.status, 200);
      assert.deepEqual(polled.body.messages, [{ channel: "cap:pub", offset: 2, data: "second" }]);
    } finally {
      ws.close();
    }
    assert.equal(s.hl.hub.brokerUsage()!.channels, 20);
  });
});

describe("records of channels that are only read", () => {
  const clock = new ManualClock();
  const s = withServer({ pollTimeout: 25, historyTtl: 300, heartbeatInterval: 3600, heartbeatTimeout: 3600 }, { clock });

  it("are forgotten max(60 s, 2 × --poll-timeout) after the last read, but kept while a subscriber is on the channel", async () => {
    const hub = s.hl.hub;
    const before = hub.brokerUsage()!.channels;
    for (let i = 0; i < 50; i++) assert.equal((await getJson(`${s.url}/poll?channel=brief:${i}`)).status, 200);
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=quiet:held`);
    const sub = await ws.next((f) => f.type === "subscribed");
    try {
      assert.equal(hub.brokerUsage()!.channels, before + 51);
      clock.advance(45_000);
      hub.sweepBroker(clock.now());
      assert.equal(hub.brokerUsage()!.channels, before + 51, "still there within 60 s");
      clock.advance(20_000);
      hub.sweepBroker(clock.now());
      assert.equal(hub.brokerUsage()!.channels, before + 1, "only the channel with a subscriber is left after 65 s");
      clock.advance(600_000);
      hub.sweepBroker(clock.now());
      // The subscriber of the quiet channel sees its first message in the epoch it was given: no reset.
      const m = await s.hl.publish("quiet:held", "hello");
      assert.equal(m.epoch, sub.epoch);
      assert.deepEqual(await ws.next((f) => f.type === "message" || f.type === "reset"), { type: "message", channel: "quiet:held", offset: 1, data: "hello" });
    } finally {
      ws.close();
    }
  });
});

describe("--max-history-bytes", () => {
  let s: ChildServer;
  before(async () => {
    // The npm start configuration: anyone may publish on game:*.
    s = await startChildServer(["--client-publish", "game:*", "--api-key", "k", "--max-history-bytes", String(8 * 1024 * 1024)]);
  });
  after(() => s?.stop());

  it("keeps RSS bounded under anonymous publishes of far more than the cap, announces what it dropped, keeps the newest", async () => {
    const data = "x".repeat(60_000);
    const publish = async (channel: string) => {
      const r = await getJson(`${s.url}/api/publish`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ channel, data }) });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body as { epoch: string; offset: number };
    };
    // Warm up past the cap, so the baseline has the heap at its working size and the history full.
    await runPool(600, 8, async (i) => void (await publish(`game:warm${i % 4}`)));
    const base = s.rss();
    const first = await publish("game:room0");
    const channels = 20;
    const rounds = 20;
    const perRound = 200; // 20 × 200 × 60 KB: 229 MB of data, 29 × the cap
    const peaks: number[] = [];
    for (let round = 0; round < rounds; round++) {
      await runPool(perRound, 8, async (i) => {
        await publish(`game:room${i % channels}`);
      });
      peaks.push(s.rss());
    }
    // RSS is read as it stands, so it saws with the collector; its peaks must not climb with what is published.
    const firstHalf = Math.max(...peaks.slice(0, rounds / 2));
    const secondHalf = Math.max(...peaks.slice(rounds / 2));
    const grown = Math.max(firstHalf, secondHalf) - base;
    const published = rounds * perRound * data.length;
    console.log(`# RSS ${mb(base)} → peaks +${mb(firstHalf - base)}, then +${mb(secondHalf - base)} while publishing ${mb(published)}`);
    await healthy(s.url);
    const bytes = await metric(s.url, "heartline_history_bytes");
    assert.ok(bytes <= 8 * 1024 * 1024, `history holds ${bytes} bytes`);
    assert.ok(bytes > 6 * 1024 * 1024, `history is used up to the cap (${bytes} bytes)`);
    assert.ok(grown < 128 * 1024 * 1024, `RSS grew by ${mb(grown)} while publishing ${mb(published)}`);
    assert.ok(secondHalf - firstHalf < 40 * 1024 * 1024, `RSS peaks climbed by ${mb(secondHalf - firstHalf)} in the second half`);

    // A resume from a dropped position: a reset, never a silent gap.
    const resumed = (await getJson(`${s.url}/poll?channel=game:room0&cursor=${cursorAt("game:room0", first.epoch, first.offset - 1)}`)).body;
    assert.deepEqual(resumed.messages, []);
    assert.equal(resumed.resets.length, 1);
    assert.equal(resumed.resets[0].channel, "game:room0");
    // The newest messages are still there: two published last, one after the other.
    const ch = "game:room7";
    await publish(ch);
    const pos = await publish(ch);
    const recent = (await getJson(`${s.url}/poll?channel=${ch}&cursor=${cursorAt(ch, pos.epoch, pos.offset - 2)}`)).body;
    assert.deepEqual(recent.resets, []);
    assert.deepEqual(
      recent.messages.map((m: { offset: number }) => m.offset),
      [pos.offset - 1, pos.offset],
    );
    assert.equal(recent.messages[1].data.length, data.length);
  });
});
