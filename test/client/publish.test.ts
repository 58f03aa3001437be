/**
 * hl.publish(): over the WebSocket (a `publish` frame with an id, answered by
 * `published` or an `error` frame) while connected on it, else POST /api/publish.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { WebSocketServer, type WebSocket as WsSocket } from "ws";
import { HeartlineError } from "../../src/client/index.js";
import { waitFor, withServer } from "../helpers/server.js";
import { client, connected, ManualClientClock, Recorder } from "./helpers.js";

describe("Heartline client: publish", () => {
  const s = withServer({ clientPublish: ["game:*"], apiKey: "k" });

  it("over WebSocket: resolves with the stored position, and the message comes back to subscribers", async () => {
    const hl = client(s.url, { transports: ["ws"] });
    const r = new Recorder();
    hl.subscribe("game:1", r.handler);
    try {
      await connected(hl, "ws");
      const before = s.hl.stats.delivered.ws;
      const res = await hl.publish("game:1", { move: "e4" });
      assert.equal(res.channel, "game:1");
      assert.equal(res.offset, 1);
      assert.match(res.epoch, /^[A-Za-z0-9_-]+$/);
      await r.until(1);
      assert.deepEqual(r.messages, [{ channel: "game:1", offset: 1, data: { move: "e4" } }]);
      assert.equal(s.hl.stats.delivered.ws, before + 1);
      const second = await hl.publish("game:1", null);
      assert.equal(second.offset, 2);
    } finally {
      hl.close();
    }
  });

  it("over WebSocket: a refused publish rejects with the error frame's code", async () => {
    const hl = client(s.url, { transports: ["ws"] });
    try {
      await connected(hl, "ws");
      await assert.rejects(hl.publish("chat:lobby", 1), (e: unknown) => {
        assert.ok(e instanceof HeartlineError);
        assert.equal(e.code, "forbidden");
        assert.equal(e.status, undefined); // a frame, not an HTTP answer
        return true;
      });
      // The connection stays up after a per-frame error.
      assert.equal(hl.state, "connected");
      assert.equal((await hl.publish("game:2", 1)).offset, 1);
    } finally {
      hl.close();
    }
  });

  it("over HTTP when not on WebSocket: POST /api/publish, with its status and code on refusal", async () => {
    const hl = client(s.url, { transports: ["sse"] });
    const r = new Recorder();
    hl.subscribe("game:3", r.handler);
    try {
      await connected(hl, "sse");
      await waitFor(() => s.hl.hub.subscriberCount("game:3") === 1 || undefined);
      const res = await hl.publish("game:3", "hello");
      assert.equal(res.channel, "game:3");
      assert.equal(res.offset, 1);
      await r.until(1);
      assert.deepEqual(r.messages, [{ channel: "game:3", offset: 1, data: "hello" }]);
      await assert.rejects(hl.publish("chat:lobby", 1), (e: unknown) => {
        assert.ok(e instanceof HeartlineError);
        assert.equal(e.code, "unauthorized");
        assert.equal(e.status, 401);
        return true;
      });
    } finally {
      hl.close();
    }
  });

  it("sends the token from getToken() as a Bearer header over HTTP", async () => {
    const hl = client(s.url, { transports: ["poll"], getToken: () => "k" });
    try {
      // With the API key as token, a channel outside --client-publish is accepted.
      const res = await hl.publish("chat:lobby", 1);
      assert.equal(res.channel, "chat:lobby");
    } finally {
      hl.close();
    }
  });

  it("rejects a bad channel name without a request, and anything after close()", async () => {
    const hl = client(s.url, { transports: ["poll"] });
    await assert.rejects(hl.publish("bad channel", 1), { name: "HeartlineError", code: "bad_channel" });
    hl.close();
    await assert.rejects(hl.publish("game:1", 1), { name: "HeartlineError", code: "closed" });
  });

  it("fails a WebSocket publish still waiting for its acknowledgement when the client closes", async () => {
    const hl = client(s.url, { transports: ["ws"], backoffBase: 0.02 });
    try {
      await connected(hl, "ws");
      const pending = hl.publish("game:4", 1);
      hl.close();
      await assert.rejects(pending, { name: "HeartlineError", code: "closed" });
    } finally {
      hl.close();
    }
  });
});

describe("Heartline client: unanswered publishes", () => {
  it("rejects with timeout after publishTimeout, and with disconnected when the socket drops first", async () => {
    const server = createServer();
    const wss = new WebSocketServer({ server });
    const sockets: WsSocket[] = [];
    const frames: unknown[] = [];
    wss.on("connection", (ws: WsSocket) => {
      sockets.push(ws);
      ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const clock = new ManualClientClock();
    const hl = client(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { transports: ["ws"], clock, publishTimeout: 2 });
    try {
      await connected(hl, "ws"); // no channels: the socket counts as open at once
      const first = hl.publish("game:1", 1);
      await waitFor(() => frames.length === 1 || undefined);
      assert.deepEqual(frames[0], { type: "publish", channel: "game:1", data: 1, id: 1 });
      clock.advance(1999);
      clock.advance(1);
      await assert.rejects(first, { name: "HeartlineError", code: "timeout" });
      const second = hl.publish("game:1", 2);
      await waitFor(() => frames.length === 2 || undefined);
      sockets[0]!.terminate();
      await assert.rejects(second, { name: "HeartlineError", code: "disconnected" });
    } finally {
      hl.close();
      wss.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
