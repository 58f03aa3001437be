/**
 * Idempotent publish over real sockets: `POST /api/publish` with an
 * `idempotencyKey` answers a repeat with the first result, subscribers get
 * the message once, and every malformed key is a 400 that stores nothing.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HeartlineError } from "../../src/index.js";
import { getJson, startServer, withServer, WsClient, type TestServer } from "../helpers/server.js";
import { isMessage, isPosition, SseStream } from "../helpers/sse.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** POST /api/publish with any body (an object is sent as JSON). */
function post(server: TestServer, body: unknown) {
  return getJson(`${server.url}/api/publish`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function channelOffset(server: TestServer, channel: string): Promise<number> {
  const r = await getJson(`${server.url}/api/channels/${channel}`);
  assert.equal(r.status, 200);
  return r.body.offset as number;
}

describe("POST /api/publish with idempotencyKey", () => {
  const server = withServer({ idempotencyTtl: 0.5 });

  it("answers repeats, sequential and concurrent, with the first epoch and offset; subscribers get the message once", async () => {
    const channel = "idem:room";
    const ws = await WsClient.connect(`${server.wsUrl}/ws?channel=${channel}`);
    const sse = await SseStream.open(`${server.url}/sse?channel=${channel}`);
    try {
      await ws.next((f) => f.type === "subscribed");
      await sse.next(isPosition);
      const first = await post(server, { channel, data: { n: 1 }, idempotencyKey: "order-1" });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.deepEqual(Object.keys(first.body).sort(), ["channel", "epoch", "offset"]);
      const repeats = [
        await post(server, { channel, data: { n: 1 }, idempotencyKey: "order-1" }),
        ...(await Promise.all(Array.from({ length: 8 }, () => post(server, { channel, data: { n: 1 }, idempotencyKey: "order-1" })))),
      ];
      for (const r of repeats) assert.deepEqual([r.status, r.body], [200, first.body]);
      const other = await post(server, { channel, data: { n: 2 }, idempotencyKey: "order-2" });
      assert.equal(other.body.offset, first.body.offset + 1);
      const plain = await post(server, { channel, data: { n: 3 } });
      assert.equal(plain.body.offset, first.body.offset + 2);
      await ws.next((f) => f.type === "message" && (f.data as { n: number }).n === 3);
      await sse.next((e) => isMessage(e) && JSON.parse(e.data!).data.n === 3);
      assert.deepEqual(ws.messages(channel).map((f) => f.data), [{ n: 1 }, { n: 2 }, { n: 3 }]);
      assert.deepEqual(sse.items.filter(isMessage).map((e) => JSON.parse(e.data!).data), [{ n: 1 }, { n: 2 }, { n: 3 }]);
      assert.equal(await channelOffset(server, channel), 3);
    } finally {
      ws.close();
      sse.close();
    }
  });

  it("concurrent first publishes with one key store one message", async () => {
    const channel = "idem:race";
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => post(server, { channel, data: i, idempotencyKey: "race" })));
    assert.ok(answers.every((r) => r.status === 200));
    assert.equal(new Set(answers.map((r) => r.body.offset)).size, 1);
    assert.equal(await channelOffset(server, channel), 1);
  });

  it("keeps keys per channel: the same key on another channel is stored there", async () => {
    const a = await post(server, { channel: "idem:a", data: 1, idempotencyKey: "same" });
    const b = await post(server, { channel: "idem:b", data: 1, idempotencyKey: "same" });
    assert.deepEqual([a.body.offset, b.body.offset, b.body.channel], [1, 1, "idem:b"]);
    assert.equal(await channelOffset(server, "idem:b"), 1);
  });

  it("forgets a key after --idempotency-ttl: a later publish with it is stored", async () => {
    const channel = "idem:ttl";
    const first = await post(server, { channel, data: 1, idempotencyKey: "k" });
    await sleep(700);
    const later = await post(server, { channel, data: 1, idempotencyKey: "k" });
    assert.equal(later.body.offset, first.body.offset + 1);
  });

  it("refuses a malformed idempotencyKey with 400 bad_request, storing nothing", async () => {
    const channel = "idem:hostile";
    const bad: unknown[] = [
      "",
      "x".repeat(129),
      "x".repeat(5000),
      "with space",
      " lead",
      "tab\there",
      "new\nline",
      "ключ",
      "emoji-😀",
      "a/b",
      "a%20b",
      "a+b",
      "a:b",
      "{tag}",
      "\u0000",
      123,
      0,
      null,
      true,
      false,
      {},
      { key: "a" },
      ["a"],
    ];
    for (const key of bad) {
      const r = await post(server, { channel, data: 1, idempotencyKey: key });
      assert.equal(r.status, 400, `${JSON.stringify(key)?.slice(0, 40)} → ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, "bad_request");
      assert.match(r.body.error.message, /idempotencyKey/);
    }
    assert.equal(await channelOffset(server, channel), 0, "nothing was stored");
    const edge = await post(server, { channel, data: 1, idempotencyKey: "A-z0.9_~" + "x".repeat(120) });
    assert.equal(edge.status, 200, "128 unreserved characters are a valid key");
    assert.equal((await post(server, { channel, data: 1, idempotencyKey: "A-z0.9_~" + "x".repeat(120) })).body.offset, 1);
    assert.equal((await getJson(`${server.url}/healthz`)).status, 200);
  });

  it("the library's publish takes { idempotencyKey }, shares keys with the HTTP API and refuses bad keys", async () => {
    const hl = server.hl;
    const first = await hl.publish("idem:lib", { x: 1 }, { idempotencyKey: "lib-1" });
    assert.deepEqual(await hl.publish("idem:lib", { x: 1 }, { idempotencyKey: "lib-1" }), first);
    const http = await post(server, { channel: "idem:lib", data: { x: 1 }, idempotencyKey: "lib-1" });
    assert.deepEqual(http.body, first);
    await assert.rejects(hl.publish("idem:lib", 1, { idempotencyKey: "bad key" }), (err: unknown) => {
      assert.ok(err instanceof HeartlineError);
      assert.equal(err.code, "bad_request");
      return true;
    });
    await assert.rejects(hl.publish("idem:lib", 1, { idempotencyKey: 7 as unknown as string }), HeartlineError);
    assert.equal((await hl.publish("idem:lib", 2)).offset, 2);
  });
});

describe("--idempotency-ttl", () => {
  it("is refused unless a number of seconds greater than 0", async () => {
    for (const v of [0, -1, "soon"]) {
      await assert.rejects(startServer({ idempotencyTtl: v }), /idempotency-ttl|idempotencyTtl/);
    }
  });
});
