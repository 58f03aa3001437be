/**
 * Random WebSocket frames against a live server with tokens on: JSON that
 * almost makes sense (every frame type, good and bad channels, positions,
 * tokens, ids), random JSON, random text and binary frames. The server
 * answers with frames of known types and error codes from the registry (never
 * internal_error), keeps the connection open, and frees everything after.
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import fc from "fast-check";
import { ERROR_CODES } from "../../src/errors.js";
import { nowSec, sign } from "../helpers/auth.js";
import { waitFor, withServer, WsClient } from "../helpers/server.js";
import { anyText, params } from "./fuzz-params.js";

const SECRET = "heartline-fuzz-secret-0123456789abcdef";
const SERVER_FRAMES = new Set(["subscribed", "message", "reset", "ping", "error", "unsubscribed", "published", "refresh", "refreshed"]);

type Sent = { text: string } | { bytes: Uint8Array };

describe("fuzz: WebSocket frames", () => {
  let token: string;
  let tokens: string[];

  const s = withServer({
    jwtSecret: SECRET,
    clientPublish: ["fuzz:*", "public:*"],
    maxChannelsPerConnection: 5,
    maxMessageBytes: 2048,
    historySize: 20,
  });
  before(async () => {
    const exp = nowSec() + 3600;
    token = await sign({ sub: "fuzzer", exp, channels: ["fuzz:*", "public:*"], publish: ["fuzz:*"] }, SECRET);
    // Tokens a refresh frame may carry: valid (wider, narrower), another subject, expired, forged.
    tokens = [
      token,
      await sign({ sub: "fuzzer", exp, channels: ["fuzz:a"] }, SECRET),
      await sign({ sub: "fuzzer", exp, channels: ["*"], publish: ["*"] }, SECRET),
      await sign({ sub: "someone-else", exp, channels: ["*"] }, SECRET),
      await sign({ sub: "fuzzer", exp: nowSec() - 10, channels: ["*"] }, SECRET),
      await sign({ sub: "fuzzer", exp, channels: ["*"] }, "not-the-secret-not-the-secret-!!"),
      await sign({ sub: "fuzzer", exp, channels: "fuzz:*" }, SECRET),
    ];
  });

  const channel = fc.oneof(
    fc.constantFrom("fuzz:a", "fuzz:b", "public:x", "secret:1", "", "bad channel", "x".repeat(256)),
    fc.stringMatching(/^[A-Za-z0-9_\-:.@/]{1,12}$/),
    fc.string({ maxLength: 12 }),
    fc.anything({ maxDepth: 1 }),
  );
  const since = fc.oneof(
    fc.constant(undefined),
    fc.record(
      { epoch: fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,10}$/), fc.anything({ maxDepth: 0 })), offset: fc.oneof(fc.nat(30), fc.integer(), fc.double(), fc.anything({ maxDepth: 0 })) },
      { requiredKeys: [] },
    ),
    fc.anything({ maxDepth: 1 }),
  );
  const frame = (tokenPool: () => string[]): fc.Arbitrary<Sent> =>
    fc.oneof(
      fc
        .record(
          {
            type: fc.oneof(fc.constantFrom("subscribe", "unsubscribe", "publish", "pong", "refresh", "ping", "message", "SUBSCRIBE"), fc.anything({ maxDepth: 0 })),
            channel,
            since,
            data: fc.jsonValue({ maxDepth: 2 }),
            id: fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.anything({ maxDepth: 1 })),
            token: fc.oneof(fc.nat(tokenPool().length - 1).map((i) => tokenPool()[i]!), fc.string({ maxLength: 20 }), fc.anything({ maxDepth: 0 })),
          },
          { requiredKeys: ["type"] },
        )
        .map((f) => ({ text: JSON.stringify(f) })),
      fc.json({ maxDepth: 2 }).map((text) => ({ text })),
      anyText({ maxLength: 40 }).map((text) => ({ text })),
      fc.uint8Array({ maxLength: 40 }).map((bytes) => ({ bytes })),
    );

  it("answers every frame with known frames and registry codes, never internal_error, and stays open", async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(frame(() => tokens), { minLength: 1, maxLength: 15 }), fc.boolean(), async (frames, withToken) => {
        const ws = await WsClient.connect(`${s.wsUrl}/ws${withToken ? `?token=${token}` : ""}`);
        try {
          for (const f of frames) {
            if ("text" in f) ws.ws.send(f.text);
            else ws.ws.send(f.bytes, { binary: true });
          }
          const id = `sentinel-${++n}`;
          ws.send({ type: "unsubscribe", channel: "public:sentinel", id });
          await ws.next((f) => f.type === "unsubscribed" && f.id === id, 3000);
          assert.equal(ws.ws.readyState, ws.ws.OPEN, "the connection stays open");
          for (const f of ws.frames) {
            assert.ok(SERVER_FRAMES.has(f.type), `unknown frame ${JSON.stringify(f)}`);
            if (f.type === "error") {
              assert.ok(typeof f.code === "string" && f.code in ERROR_CODES, `unknown code ${JSON.stringify(f)}`);
              assert.notEqual(f.code, "internal_error", JSON.stringify(f));
              assert.equal(typeof f.message, "string");
            }
          }
        } finally {
          ws.close();
          await ws.closed;
        }
      }),
      params(30),
    );
    await waitFor(() => s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0, 5000, "every connection to be freed");
    assert.deepEqual({ ...s.hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
    assert.equal(s.hl.hub.totalWaiters, 0);
  });

  it("random frames on many connections at once leave nothing behind", async () => {
    const conns = await Promise.all(Array.from({ length: 8 }, (_, i) => WsClient.connect(`${s.wsUrl}/ws${i % 2 ? `?token=${token}` : ""}`)));
    const samples = fc.sample(fc.array(frame(() => tokens), { minLength: 5, maxLength: 20 }), { numRuns: conns.length, seed: 42 });
    conns.forEach((c, i) => {
      for (const f of samples[i]!) {
        if ("text" in f) c.ws.send(f.text);
        else c.ws.send(f.bytes, { binary: true });
      }
    });
    // Half of them go away abruptly in the middle of it.
    conns.forEach((c, i) => (i % 2 ? c.ws.terminate() : c.close()));
    await waitFor(() => s.hl.connections === 0 && s.hl.hub.totalSubscriptions === 0, 5000, "every connection to be freed");
    assert.deepEqual({ ...s.hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
  });
});
