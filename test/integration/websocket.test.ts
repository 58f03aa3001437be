/**
 * WebSocket transport (SPEC §2–4): subscribing by query and by frame, resume
 * from `since` and from a cursor, resets, client publish, limits, hostile
 * input, and exactly-once delivery across cut connections.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, it } from "node:test";
import WebSocket from "ws";
import { getJson, waitFor, withServer, WsClient, type Frame, type TestServer } from "../helpers/server.js";

/** Asserts that nothing is held any more: connections, subscriptions, poll waiters. */
async function assertIdle(s: TestServer): Promise<void> {
  await waitFor(() => s.hl.connections === 0, 5000, "every connection to be released");
  assert.deepEqual({ ...s.hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
  assert.equal(s.hl.hub.totalSubscriptions, 0);
  assert.equal(s.hl.hub.totalWaiters, 0);
}

async function closeAll(...clients: WsClient[]): Promise<void> {
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
}

/** Attempts an upgrade the server must refuse; gives the HTTP status and JSON body it answered with. */
function refusedUpgrade(url: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on("error", () => {});
    ws.on("open", () => {
      ws.terminate();
      reject(new Error(`the upgrade of ${url} was accepted`));
    });
    ws.on("unexpected-response", (req, res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        req.destroy();
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
        } catch (err) {
          reject(err);
        }
      });
    });
  });
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("WebSocket transport", () => {
  const s = withServer({ clientPublish: ["game:*"], maxChannelsPerConnection: 4 });

  it("subscribes to the query's channels at once, acknowledging each with its latest offset", async () => {
    let last;
    for (let i = 1; i <= 3; i++) last = await s.hl.publish("q:a", { i });
    const info = await getJson(`${s.url}/api/channels/q:b`);
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=q:a&channel=q:b`);
    const acks = [await c.next((f) => f.type === "subscribed"), await c.next((f) => f.type === "subscribed")];
    acks.sort((x, y) => String(x.channel).localeCompare(String(y.channel)));
    assert.deepEqual(acks, [
      { type: "subscribed", channel: "q:a", epoch: last!.epoch, offset: 3, recovered: false },
      { type: "subscribed", channel: "q:b", epoch: info.body.epoch, offset: 0, recovered: false },
    ]);
    assert.equal(s.hl.hub.subscriberCount("q:a"), 1);
    assert.equal(s.hl.hub.subscriberCount("q:b"), 1);
    await s.hl.publish("q:b", "live");
    await s.hl.publish("q:a", { i: 4 });
    assert.deepEqual(await c.next((f) => f.type === "message"), { type: "message", channel: "q:b", offset: 1, data: "live" });
    assert.deepEqual(await c.next((f) => f.type === "message"), { type: "message", channel: "q:a", offset: 4, data: { i: 4 } });
    // Without `since`, nothing before the subscription is replayed.
    assert.deepEqual(
      c.messages().map((m) => [m.channel, m.offset]),
      [
        ["q:b", 1],
        ["q:a", 4],
      ],
    );
    await closeAll(c);
    await assertIdle(s);
  });

  it("subscribes and unsubscribes by frame; nothing arrives after the unsubscribed ack", async () => {
    const c = await WsClient.connect(`${s.wsUrl}/ws`);
    assert.equal(s.hl.hub.totalSubscriptions, 0);
    c.send({ type: "subscribe", channel: "d:x" });
    const ack = await c.next((f) => f.type === "subscribed");
    assert.equal(ack.channel, "d:x");
    assert.equal(ack.offset, 0);
    assert.equal(ack.recovered, false);
    assert.equal(s.hl.hub.subscriberCount("d:x"), 1);
    await s.hl.publish("d:x", { n: 1 });
    assert.deepEqual(await c.next((f) => f.type === "message"), { type: "message", channel: "d:x", offset: 1, data: { n: 1 } });

    c.send({ type: "unsubscribe", channel: "d:x", id: "u1" });
    assert.deepEqual(await c.next((f) => f.type === "unsubscribed"), { type: "unsubscribed", channel: "d:x", id: "u1" });
    assert.equal(s.hl.hub.subscriberCount("d:x"), 0);
    await s.hl.publish("d:x", { n: 2 });
    // A message on another channel, published later, proves the d:x one would have arrived by now.
    c.send({ type: "subscribe", channel: "d:y" });
    await c.next((f) => f.type === "subscribed" && f.channel === "d:y");
    await s.hl.publish("d:y", { n: 3 });
    await c.next((f) => f.type === "message" && f.channel === "d:y");
    assert.deepEqual(
      c.messages().map((m) => [m.channel, m.offset]),
      [
        ["d:x", 1],
        ["d:y", 1],
      ],
    );
    assert.equal(c.frames.filter((f) => f.type === "error").length, 0);
    await closeAll(c);
    await assertIdle(s);
  });

  it("replays exactly the messages after `since`, then goes live, with recovered: true", async () => {
    let epoch = "";
    for (let i = 1; i <= 10; i++) epoch = (await s.hl.publish("r:1", { i })).epoch;
    const c = await WsClient.connect(`${s.wsUrl}/ws`);
    c.send({ type: "subscribe", channel: "r:1", since: { epoch, offset: 6 } });
    await c.next((f) => f.type === "message" && f.offset === 10);
    await s.hl.publish("r:1", { i: 11 });
    await c.next((f) => f.type === "message" && f.offset === 11);
    assert.deepEqual(c.frames, [
      { type: "subscribed", channel: "r:1", epoch, offset: 10, recovered: true },
      ...range(7, 11).map((i) => ({ type: "message", channel: "r:1", offset: i, data: { i } })),
    ]);
    await closeAll(c);
    await assertIdle(s);
  });

  it("a resume with nothing to replay is still recovered: true, with no reset", async () => {
    let epoch = "";
    for (let i = 1; i <= 3; i++) epoch = (await s.hl.publish("r:2", { i })).epoch;
    const c = await WsClient.connect(`${s.wsUrl}/ws`);
    c.send({ type: "subscribe", channel: "r:2", since: { epoch, offset: 3 } });
    assert.deepEqual(await c.next(), { type: "subscribed", channel: "r:2", epoch, offset: 3, recovered: true });
    await s.hl.publish("r:2", { i: 4 });
    assert.deepEqual(await c.next(), { type: "message", channel: "r:2", offset: 4, data: { i: 4 } });
    assert.deepEqual(
      c.frames.map((f) => f.type),
      ["subscribed", "message"],
    );
    await closeAll(c);
    await assertIdle(s);
  });

  it("resumes from the cursor= of the /ws query, as given by GET /poll", async () => {
    await s.hl.publish("c:1", { i: 1 });
    await s.hl.publish("c:1", { i: 2 });
    const polled = await getJson(`${s.url}/poll?channel=c:1`);
    assert.equal(polled.status, 200);
    const cursor: string = polled.body.cursor;
    let epoch = "";
    for (let i = 3; i <= 5; i++) epoch = (await s.hl.publish("c:1", { i })).epoch;
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=c:1&channel=c:2&cursor=${cursor}`);
    await waitFor(() => c.frames.filter((f) => f.type === "subscribed").length === 2 && c.messages("c:1").length === 3);
    const byChannel = Object.fromEntries(c.frames.filter((f) => f.type === "subscribed").map((a) => [a.channel, a]));
    assert.deepEqual(byChannel["c:1"], { type: "subscribed", channel: "c:1", epoch, offset: 5, recovered: true });
    // A channel the cursor does not name starts live, without a reset.
    assert.equal(byChannel["c:2"]!.recovered, false);
    assert.equal(byChannel["c:2"]!.offset, 0);
    await s.hl.publish("c:1", { i: 6 });
    await waitFor(() => c.messages("c:1").length === 4);
    assert.deepEqual(
      c.messages("c:1"),
      range(3, 6).map((i) => ({ type: "message", channel: "c:1", offset: i, data: { i } })),
    );
    assert.equal(c.frames.filter((f) => f.type === "reset").length, 0);
    await closeAll(c);
    await assertIdle(s);
  });

  it("lets clients publish on --client-publish patterns (ack echoes the id) and refuses elsewhere", async () => {
    const listener = await WsClient.connect(`${s.wsUrl}/ws?channel=game:room1`);
    await listener.next((f) => f.type === "subscribed");
    const c = await WsClient.connect(`${s.wsUrl}/ws`);
    c.send({ type: "publish", channel: "game:room1", data: { move: "e4" }, id: "p1" });
    const ack = await c.next();
    assert.equal(typeof ack.epoch, "string");
    assert.deepEqual(ack, { type: "published", channel: "game:room1", epoch: ack.epoch, offset: 1, id: "p1" });
    assert.deepEqual(await listener.next((f) => f.type === "message"), {
      type: "message",
      channel: "game:room1",
      offset: 1,
      data: { move: "e4" },
    });

    c.send({ type: "publish", channel: "chat:room1", data: "nope", id: 7 });
    const err = await c.next();
    assert.equal(err.type, "error");
    assert.equal(err.code, "forbidden");
    assert.equal(err.channel, "chat:room1");
    assert.equal(err.id, 7);
    assert.equal(typeof err.message, "string");
    const info = await getJson(`${s.url}/api/channels/chat:room1`);
    assert.equal(info.body.offset, 0, "a refused publish must store nothing");
    await closeAll(listener, c);
    await assertIdle(s);
  });

  it("refuses a subscribe frame past --max-channels-per-connection with too_many_channels", async () => {
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=m:1&channel=m:2`);
    c.send({ type: "subscribe", channel: "m:3" });
    c.send({ type: "subscribe", channel: "m:4" });
    for (let i = 0; i < 4; i++) await c.next((f) => f.type === "subscribed");
    c.send({ type: "subscribe", channel: "m:5", id: "five" });
    const err = await c.next((f) => f.type === "error");
    assert.equal(err.code, "too_many_channels");
    assert.equal(err.channel, "m:5");
    assert.equal(err.id, "five");
    assert.equal(s.hl.hub.subscriberCount("m:5"), 0);
    assert.equal(s.hl.hub.totalSubscriptions, 4);
    // Subscribing again to a channel it holds is not a new slot.
    c.send({ type: "subscribe", channel: "m:1" });
    assert.equal((await c.next()).type, "subscribed");
    assert.equal(s.hl.hub.totalSubscriptions, 4);
    // Freeing a slot makes room.
    c.send({ type: "unsubscribe", channel: "m:2" });
    await c.next((f) => f.type === "unsubscribed");
    c.send({ type: "subscribe", channel: "m:5" });
    assert.equal((await c.next()).channel, "m:5");
    await s.hl.publish("m:5", 1);
    assert.deepEqual(await c.next(), { type: "message", channel: "m:5", offset: 1, data: 1 });
    await closeAll(c);
    await assertIdle(s);
  });

  it("answers too many query channels with HTTP 400 too_many_channels before the upgrade", async () => {
    const r = await refusedUpgrade(`${s.wsUrl}/ws?channel=n:1&channel=n:2&channel=n:3&channel=n:4&channel=n:5`);
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, "too_many_channels");
    assert.equal(typeof r.body.error.message, "string");
    assert.equal(s.hl.hub.totalSubscriptions, 0);
    await assertIdle(s);
  });

  it("answers a bad cursor= or channel= in the query with HTTP 400 before the upgrade", async () => {
    const badCursors = ["garbage", "2~abc.e.1", "1~abc.e.-1", "1~abc.e.01", "1~ABC.e.1", "1~abc.e.99999999999999999", "1~abc..1", "1~abc.e.1~", "1~abc.e.1~abc.e"];
    for (const cursor of badCursors) {
      const r = await refusedUpgrade(`${s.wsUrl}/ws?channel=b:1&cursor=${encodeURIComponent(cursor)}`);
      assert.equal(r.status, 400, cursor.slice(0, 40));
      assert.equal(r.body.error.code, "bad_cursor", cursor.slice(0, 40));
    }
    for (const channel of ["bad channel", "x".repeat(256), "a?b", "é"]) {
      const r = await refusedUpgrade(`${s.wsUrl}/ws?channel=${encodeURIComponent(channel)}`);
      assert.equal(r.status, 400, channel.slice(0, 40));
      assert.equal(r.body.error.code, "bad_channel", channel.slice(0, 40));
    }
    const empty = await refusedUpgrade(`${s.wsUrl}/ws?channel=`);
    assert.equal(empty.body.error.code, "bad_channel");
    await assertIdle(s);
    // The server still upgrades good requests.
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=b:1`);
    assert.equal((await c.next()).type, "subscribed");
    await closeAll(c);
    await assertIdle(s);
  });

  it("answers every malformed frame with an error frame and keeps the connection working", async () => {
    const c = await WsClient.connect(`${s.wsUrl}/ws`);
    const expectError = async (send: () => void, code: string, what: string) => {
      send();
      const f = await c.next();
      assert.equal(f.type, "error", what);
      assert.equal(f.code, code, what);
      assert.equal(typeof f.message, "string", what);
    };
    await expectError(() => c.ws.send(Buffer.from([1, 2, 3]), { binary: true }), "unsupported_frame", "binary frame");
    await expectError(() => c.ws.send(Buffer.from('{"type":"subscribe"}'), { binary: true }), "unsupported_frame", "binary JSON");
    for (const text of ["not json", "{", '{"type":"subscribe",}', "", "\u0000"]) {
      await expectError(() => c.send(text), "bad_json", JSON.stringify(text));
    }
    for (const text of ["[]", "[1,2]", "42", "null", "true", '"subscribe"', "{}", '{"type":"bogus"}', '{"type":7}', '{"type":null}', '{"channel":"h:1"}']) {
      await expectError(() => c.send(text), "bad_request", text);
    }
    const badChannels: unknown[] = ["bad channel", "", "x".repeat(256), "a?b", "é", 42, null, ["h:1"], { name: "h:1" }, undefined];
    for (const channel of badChannels) {
      await expectError(() => c.send({ type: "subscribe", channel }), "bad_channel", `subscribe ${JSON.stringify(channel)}`);
    }
    await expectError(() => c.send({ type: "unsubscribe", channel: "no way" }), "bad_channel", "unsubscribe");
    await expectError(() => c.send({ type: "publish", channel: "game:bad name", data: 1 }), "bad_channel", "publish");
    const badSince: unknown[] = [
      "abc",
      "1~abc.e.1",
      5,
      true,
      [1, 2],
      [],
      { epoch: "e", offset: -1 },
      { epoch: "e", offset: 1.5 },
      { epoch: "e", offset: "3" },
      { epoch: "e", offset: 1e300 },
      { epoch: "e", offset: 2 ** 60 },
      { epoch: "e" },
      { offset: 3 },
      { epoch: 12, offset: 3 },
      { epoch: "", offset: 3 },
      { epoch: "bad epoch", offset: 3 },
      { epoch: "x".repeat(65), offset: 3 },
    ];
    for (const since of badSince) {
      await expectError(() => c.send({ type: "subscribe", channel: "h:1", since }), "bad_cursor", `since ${JSON.stringify(since)}`);
    }
    await expectError(() => c.send('{"type":"subscribe","channel":"h:1","since":{"epoch":"e","offset":1e999}}'), "bad_cursor", "since Infinity");
    assert.equal(s.hl.hub.totalSubscriptions, 0, "no malformed frame may leave a subscription behind");
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    assert.equal(s.hl.connections, 1);

    // Still a working connection.
    c.send({ type: "subscribe", channel: "h:1" });
    assert.equal((await c.next()).type, "subscribed");
    await s.hl.publish("h:1", { ok: true });
    assert.deepEqual(await c.next(), { type: "message", channel: "h:1", offset: 1, data: { ok: true } });
    await closeAll(c);
    await assertIdle(s);
  });

  it("closes a frame over maxMessageBytes + 4096 with 1009, frees it, and stays up", async () => {
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=big:1`);
    await c.next((f) => f.type === "subscribed");
    assert.equal(s.hl.connections, 1);
    c.send({ type: "publish", channel: "game:big", data: "x".repeat(s.hl.config.maxMessageBytes + 4096) });
    await c.closed;
    assert.equal(c.closeCode, 1009);
    await assertIdle(s);
    assert.equal((await getJson(`${s.url}/api/channels/game:big`)).body.offset, 0);

    // A frame just under the limit is read (and refused for its data size, not cut).
    const d = await WsClient.connect(`${s.wsUrl}/ws`);
    d.send({ type: "publish", channel: "game:big", data: "x".repeat(s.hl.config.maxMessageBytes + 1) });
    const err = await d.next();
    assert.equal(err.code, "message_too_large");
    d.send({ type: "subscribe", channel: "big:1" });
    assert.equal((await d.next()).type, "subscribed");
    await s.hl.publish("big:1", "after");
    assert.deepEqual(await d.next(), { type: "message", channel: "big:1", offset: 1, data: "after" });
    await closeAll(d);
    await assertIdle(s);
  });

  it("delivers 1,000 messages exactly once and in order to a client whose connection is cut repeatedly", async () => {
    const channel = "eo:1";
    const received: number[] = [];
    const subscribed: Frame[] = [];
    const resets: Frame[] = [];
    let epoch: string | undefined;
    let current: WebSocket | undefined;
    let connections = 0;
    let stopped = false;
    let resumedAt = 0;
    /** Messages published while the client was away, so served from history on resume. */
    let replayed = 0;

    const connect = () => {
      const ws = new WebSocket(`${s.wsUrl}/ws`);
      current = ws;
      connections++;
      ws.on("error", () => {});
      ws.on("open", () => {
        const last = received.length > 0 ? received[received.length - 1]! : 0;
        resumedAt = last;
        ws.send(JSON.stringify(epoch ? { type: "subscribe", channel, since: { epoch, offset: last } } : { type: "subscribe", channel }));
      });
      ws.on("message", (data) => {
        if (ws !== current) return;
        const f = JSON.parse(data.toString()) as Frame;
        if (f.type === "subscribed") {
          subscribed.push(f);
          if (epoch) replayed += (f.offset as number) - resumedAt;
          epoch ??= f.epoch as string;
        } else if (f.type === "message") received.push(f.offset as number);
        else if (f.type === "reset") resets.push(f);
      });
      ws.on("close", () => {
        if (!stopped) setImmediate(connect);
      });
    };
    connect();
    await waitFor(() => subscribed.length === 1, 5000, "the first subscription");

    const cuts = new Set([60, 180, 181, 333, 500, 640, 777, 905, 990]);
    for (let i = 1; i <= 1000; i++) {
      await s.hl.publish(channel, { i });
      if (cuts.has(i)) current!.terminate();
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => received.length >= 1000 && received[received.length - 1] === 1000, 10_000, "all 1,000 messages");
    stopped = true;
    const last = current!;
    last.close();
    if (last.readyState !== WebSocket.CLOSED) await once(last, "close");

    assert.deepEqual(received, range(1, 1000));
    assert.deepEqual(resets, []);
    assert.ok(connections >= 8, `expected the connection to be cut and resumed, got ${connections} connections`);
    assert.ok(subscribed.length >= 2);
    for (const f of subscribed.slice(1)) assert.equal(f.recovered, true);
    assert.ok(replayed > 0, "some messages must have been published while the client was cut off");
    await assertIdle(s);
  });
});

describe("WebSocket resume when history is gone", () => {
  const s = withServer({ historySize: 5 });

  it("announces a trimmed position with recovered: false and a reset, then goes live", async () => {
    let epoch = "";
    for (let i = 1; i <= 20; i++) epoch = (await s.hl.publish("t:1", { i })).epoch;
    const c = await WsClient.connect(`${s.wsUrl}/ws`);
    c.send({ type: "subscribe", channel: "t:1", since: { epoch, offset: 3 } });
    assert.deepEqual(await c.next(), { type: "subscribed", channel: "t:1", epoch, offset: 20, recovered: false });
    assert.deepEqual(await c.next(), { type: "reset", channel: "t:1", epoch, offset: 20 });
    await s.hl.publish("t:1", { i: 21 });
    assert.deepEqual(await c.next(), { type: "message", channel: "t:1", offset: 21, data: { i: 21 } });
    assert.equal(c.frames.length, 3);
    await closeAll(c);
    await assertIdle(s);
  });

  it("replays from the oldest retained position, and resets one before it", async () => {
    let epoch = "";
    for (let i = 1; i <= 20; i++) epoch = (await s.hl.publish("t:2", { i })).epoch;
    // History holds 16..20: since 15 is complete, since 14 is not.
    const ok = await WsClient.connect(`${s.wsUrl}/ws`);
    ok.send({ type: "subscribe", channel: "t:2", since: { epoch, offset: 15 } });
    await ok.next((f) => f.type === "message" && f.offset === 20);
    assert.deepEqual(ok.frames, [
      { type: "subscribed", channel: "t:2", epoch, offset: 20, recovered: true },
      ...range(16, 20).map((i) => ({ type: "message", channel: "t:2", offset: i, data: { i } })),
    ]);
    const late = await WsClient.connect(`${s.wsUrl}/ws`);
    late.send({ type: "subscribe", channel: "t:2", since: { epoch, offset: 14 } });
    assert.equal((await late.next()).recovered, false);
    assert.deepEqual(await late.next(), { type: "reset", channel: "t:2", epoch, offset: 20 });
    await closeAll(ok, late);
    await assertIdle(s);
  });

  it("announces an unknown epoch with recovered: false and a reset to the current epoch", async () => {
    let epoch = "";
    for (let i = 1; i <= 3; i++) epoch = (await s.hl.publish("t:3", { i })).epoch;
    const c = await WsClient.connect(`${s.wsUrl}/ws`);
    c.send({ type: "subscribe", channel: "t:3", since: { epoch: "gone-epoch", offset: 2 } });
    assert.deepEqual(await c.next(), { type: "subscribed", channel: "t:3", epoch, offset: 3, recovered: false });
    assert.deepEqual(await c.next(), { type: "reset", channel: "t:3", epoch, offset: 3 });
    await s.hl.publish("t:3", { i: 4 });
    assert.deepEqual(await c.next(), { type: "message", channel: "t:3", offset: 4, data: { i: 4 } });
    await closeAll(c);
    await assertIdle(s);
  });

  it("resets a trimmed cursor= position given in the /ws query", async () => {
    const polled = await getJson(`${s.url}/poll?channel=t:4`);
    let epoch = "";
    for (let i = 1; i <= 20; i++) epoch = (await s.hl.publish("t:4", { i })).epoch;
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=t:4&cursor=${polled.body.cursor}`);
    assert.deepEqual(await c.next(), { type: "subscribed", channel: "t:4", epoch, offset: 20, recovered: false });
    assert.deepEqual(await c.next(), { type: "reset", channel: "t:4", epoch, offset: 20 });
    await s.hl.publish("t:4", { i: 21 });
    assert.deepEqual(await c.next(), { type: "message", channel: "t:4", offset: 21, data: { i: 21 } });
    await closeAll(c);
    await assertIdle(s);
  });
});
