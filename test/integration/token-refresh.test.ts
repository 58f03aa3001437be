/**
 * Token expiry on live connections, on a ManualClock: the `refresh` request
 * before `exp`, in-band refresh with no gap, re-scoping by refresh, invalid
 * refreshes, the 4001 close at `exp`, SSE streams ended at `exp`, and polls
 * that never outlive their token.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock, type Heartline } from "../../src/index.js";
import { sign, type Claims } from "../helpers/auth.js";
import { SseStream } from "../helpers/sse.js";
import { getJson, waitFor, withServer, WsClient } from "../helpers/server.js";

const SECRET = "heartline-refresh-secret-0123456789abcdef";

async function assertIdle(hl: Heartline): Promise<void> {
  await waitFor(() => hl.connections === 0 && hl.hub.totalSubscriptions === 0 && hl.hub.totalWaiters === 0, 5000, "connections to close");
  assert.deepEqual({ ...hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
}

describe("token expiry and refresh", () => {
  const clock = new ManualClock();
  /** Wall time at clock 0, on a whole second. */
  const BASE = Math.floor(Date.now() / 1000) * 1000;
  /** Moves the wall clock without moving the ticker (a late tick). */
  let skew = 0;
  const wallSec = () => (BASE + clock.now() + skew) / 1000;

  /** A token that expires `life` seconds from the server's now. */
  const token = (life: number, claims: Claims = {}) =>
    sign({ sub: "dana", exp: wallSec() + life, channels: ["chat:*", "public:*"], ...claims }, SECRET);

  /** Advances the clock in whole seconds, so every tick in between runs. */
  const advance = (seconds: number) => clock.advance(seconds * 1000);

  let syncs = 0;
  /** A round trip: every frame the server sent before it has arrived. */
  async function sync(ws: WsClient): Promise<void> {
    const id = `sync-${++syncs}`;
    ws.send({ type: "unsubscribe", channel: "public:sync", id });
    await ws.next((f) => f.id === id);
  }
  const refreshes = (ws: WsClient) => ws.frames.filter((f) => f.type === "refresh");

  const s = withServer(
    { jwtSecret: SECRET, heartbeatInterval: 3600, heartbeatTimeout: 3600, historyTtl: 3600 },
    { clock, wallClock: () => BASE + clock.now() + skew },
  );

  it("asks for a refresh a third of the lifetime before exp, once, then closes with 4001 token_expired at exp", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=chat:exp&token=${await token(60)}`);
    await ws.next((f) => f.type === "subscribed");
    advance(39);
    await sync(ws);
    assert.equal(refreshes(ws).length, 0, "no refresh before exp - 20 s");
    advance(1);
    assert.deepEqual(await ws.next((f) => f.type === "refresh"), { type: "refresh" });
    advance(19);
    await sync(ws);
    assert.equal(refreshes(ws).length, 1, "asked once");
    assert.equal(ws.ws.readyState, ws.ws.OPEN, "still open 1 s before exp");
    advance(1);
    await ws.closed;
    assert.equal(ws.closeCode, 4001);
    assert.equal(ws.closeReason, "token expired");
    await assertIdle(s.hl);
  });

  it("asks at most 30 s before exp for long-lived tokens", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws?token=${await token(600)}`);
    advance(569);
    await sync(ws);
    assert.equal(refreshes(ws).length, 0);
    advance(1);
    await ws.next((f) => f.type === "refresh");
    ws.close();
    await assertIdle(s.hl);
  });

  it("an in-band refresh keeps the connection past the first exp: every offset arrives exactly once, in order", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=chat:seq&token=${await token(60)}`);
    await ws.next((f) => f.type === "subscribed");
    let n = 0;
    const publish = async (count: number) => {
      for (let i = 0; i < count; i++) await s.hl.publish("chat:seq", ++n);
    };
    await publish(5);
    advance(40);
    await ws.next((f) => f.type === "refresh");
    await publish(5);
    const second = await token(120);
    ws.send({ type: "refresh", token: second, id: "r1" });
    const refreshed = await ws.next((f) => f.type === "refreshed");
    assert.deepEqual(refreshed, { type: "refreshed", exp: wallSec() + 120, id: "r1" });
    await publish(5);
    advance(30); // past the first token's exp
    await publish(5);
    await sync(ws);
    assert.equal(ws.ws.readyState, ws.ws.OPEN, "open after the first token's exp");
    assert.equal(ws.frames.filter((f) => f.type === "error").length, 0);
    // The second token is asked to be refreshed in turn, then expires.
    advance(60); // the second token expires at +160 s and is asked for at +130 s
    await ws.next((f) => f.type === "refresh");
    await publish(5);
    advance(30);
    await ws.closed;
    assert.equal(ws.closeCode, 4001);
    const offsets = ws.messages("chat:seq").map((m) => m.offset);
    assert.deepEqual(
      offsets,
      Array.from({ length: 25 }, (_, i) => i + 1),
    );
    assert.deepEqual(
      ws.messages("chat:seq").map((m) => m.data),
      offsets,
    );
    await assertIdle(s.hl);
  });

  it("an invalid refresh gets an error frame and the old deadline stands", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=chat:bad&token=${await token(60)}`);
    await ws.next((f) => f.type === "subscribed");
    advance(40);
    await ws.next((f) => f.type === "refresh");
    const attempts: Array<[unknown, string]> = [
      ["garbage", "unauthorized"],
      [await sign({ sub: "dana", exp: wallSec() + 600, channels: ["chat:*"] }, "another-secret-another-secret-!!"), "unauthorized"],
      [await token(600, { sub: "mallory" }), "forbidden"],
      [await token(-1), "token_expired"],
      [42, "bad_request"],
    ];
    let id = 0;
    for (const [tok, code] of attempts) {
      ws.send({ type: "refresh", token: tok, id: ++id });
      const err = await ws.next((f) => f.id === id);
      assert.equal(err.type, "error");
      assert.equal(err.code, code, `${String(tok).slice(0, 20)}: ${JSON.stringify(err)}`);
    }
    advance(19);
    await sync(ws);
    assert.equal(ws.ws.readyState, ws.ws.OPEN);
    advance(1);
    await ws.closed;
    assert.equal(ws.closeCode, 4001);
    assert.equal(ws.frames.filter((f) => f.type === "refreshed").length, 0);
    await assertIdle(s.hl);
  });

  it("a refresh with fewer channels unsubscribes the dropped one with error forbidden", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=chat:keep&channel=chat:drop&token=${await token(60)}`);
    await ws.next((f) => f.type === "subscribed" && f.channel === "chat:keep");
    await ws.next((f) => f.type === "subscribed" && f.channel === "chat:drop");
    assert.equal(s.hl.hub.subscriberCount("chat:drop"), 1);
    ws.send({ type: "refresh", token: await token(300, { channels: ["chat:keep"] }), id: "narrow" });
    const dropped = await ws.next((f) => f.type === "error");
    assert.deepEqual(dropped, {
      type: "error",
      code: "forbidden",
      message: "the token does not allow subscribing to chat:drop",
      channel: "chat:drop",
    });
    await ws.next((f) => f.type === "refreshed" && f.id === "narrow");
    assert.equal(s.hl.hub.subscriberCount("chat:drop"), 0);
    assert.equal(s.hl.hub.subscriberCount("chat:keep"), 1);
    await s.hl.publish("chat:drop", "gone");
    await s.hl.publish("chat:keep", "kept");
    assert.deepEqual(await ws.next((f) => f.type === "message"), { type: "message", channel: "chat:keep", offset: 1, data: "kept" });
    ws.send({ type: "subscribe", channel: "chat:drop", id: "again" });
    assert.equal((await ws.next((f) => f.id === "again")).code, "forbidden");
    await sync(ws);
    assert.equal(ws.messages("chat:drop").length, 0);
    // The first token's exp (60 s) no longer applies.
    advance(100);
    await sync(ws);
    assert.equal(ws.ws.readyState, ws.ws.OPEN);
    ws.close();
    await assertIdle(s.hl);
  });

  it("a connection opened without a token may take one by refresh, and is then bound to its exp", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws`);
    ws.send({ type: "subscribe", channel: "chat:later", id: 1 });
    assert.equal((await ws.next((f) => f.id === 1)).code, "unauthorized");
    ws.send({ type: "refresh", token: await token(30) });
    await ws.next((f) => f.type === "refreshed");
    ws.send({ type: "subscribe", channel: "chat:later", id: 2 });
    await ws.next((f) => f.type === "subscribed" && f.channel === "chat:later");
    advance(30);
    await ws.closed;
    assert.equal(ws.closeCode, 4001);
    await assertIdle(s.hl);
  });

  it("an SSE stream gets event: error token_expired at exp and ends; the same token cannot resume", async () => {
    const tok = await token(60);
    const sse = await SseStream.open(`${s.url}/sse?channel=chat:sse&token=${tok}`);
    await sse.until((t) => t.includes("event: position"), 5000, "the position event");
    advance(59);
    await s.hl.publish("chat:sse", "before exp");
    await sse.until((t) => t.includes('"before exp"'), 5000, "the message before exp");
    const idLine = /id: (\S+)\ndata: \{"channel":"chat:sse"/.exec(sse.text);
    assert.ok(idLine, sse.text);
    advance(1);
    assert.equal(await sse.ended, true, "the server ended the stream");
    assert.ok(
      sse.text.endsWith('event: error\ndata: {"code":"token_expired","message":"the token has expired; reconnect with a new one"}\n\n'),
      JSON.stringify(sse.text.slice(-200)),
    );
    await assertIdle(s.hl);
    await s.hl.publish("chat:sse", "after exp");
    const again = await SseStream.attempt(`${s.url}/sse?channel=chat:sse&token=${tok}`, { "Last-Event-ID": idLine[1]! });
    assert.ok(!(again instanceof SseStream));
    assert.equal(again.status, 401);
    assert.equal(again.body.error.code, "token_expired");
    // A new token resumes from the last id without loss.
    const back = await SseStream.open(`${s.url}/sse?channel=chat:sse&token=${await token(60)}`, { "Last-Event-ID": idLine[1]! });
    await back.until((t) => t.includes("event: position"), 5000, "the replay");
    assert.deepEqual(
      back.messages().map((m) => m.data),
      ["after exp"],
    );
    back.close();
    await assertIdle(s.hl);
  });

  it("a held poll never waits past its token's exp, and a poll woken after exp delivers nothing", async () => {
    const tok = await token(20);
    const first = await getJson(`${s.url}/poll?channel=chat:poll&token=${tok}`);
    assert.equal(first.status, 200);
    const cursor: string = first.body.cursor;
    let answered = false;
    const held = getJson(`${s.url}/poll?channel=chat:poll&cursor=${cursor}&timeout=25&token=${tok}`).finally(() => (answered = true));
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    advance(19);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(answered, false, "still held 1 s before exp");
    advance(1);
    const r = await held;
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { messages: [], cursor, resets: [], presence: [] });
    await s.hl.publish("chat:poll", "m1");
    const refused = await getJson(`${s.url}/poll?channel=chat:poll&cursor=${cursor}&token=${tok}`);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error.code, "token_expired");

    // The wall clock passes exp before the ticker runs (a late tick): a poll woken then gets nothing.
    const tok2 = await token(20);
    const c2: string = (await getJson(`${s.url}/poll?channel=chat:poll&token=${tok2}`)).body.cursor;
    const held2 = getJson(`${s.url}/poll?channel=chat:poll&cursor=${c2}&timeout=25&token=${tok2}`);
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the second poll to be held");
    skew = 21_000;
    try {
      await s.hl.publish("chat:poll", "m2");
      const r2 = await held2;
      assert.equal(r2.status, 200);
      assert.deepEqual(r2.body, { messages: [], cursor: c2, resets: [], presence: [] });
    } finally {
      skew = 0;
    }
    // A fresh token gets both messages from the first cursor: nothing was lost.
    const fresh = await getJson(`${s.url}/poll?channel=chat:poll&cursor=${cursor}&token=${await token(60)}`);
    assert.deepEqual(
      fresh.body.messages.map((m: { data: unknown }) => m.data),
      ["m1", "m2"],
    );
    await assertIdle(s.hl);
  });
});
