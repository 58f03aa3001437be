/**
 * The WebSocket fast path writes frames built once per message straight to
 * the TCP socket `ws` holds. Its assumption about `ws` is checked on every
 * upgrade (rawSocketOf): these tests prove that the check holds for the
 * pinned ws version, that it refuses a connection it cannot vouch for, and
 * that a connection without the fast path (ws.send) delivers the same
 * messages, in order.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { after, before, describe, it } from "node:test";
import { Writable } from "node:stream";
import { pino } from "pino";
import WebSocket, { WebSocketServer } from "ws";
import { rawSocketOf, WebSocketTransport } from "../../src/transports/websocket.js";
import { publishHttp, startServer, waitFor, WsClient, type TestServer } from "../helpers/server.js";

const WS_VERSION = (await import("ws/package.json", { with: { type: "json" } })).default.version as string;

/** A bare `ws` server: each upgrade's socket and the WebSocket made of it. */
async function bareWsServer(perMessageDeflate: boolean): Promise<{ server: Server; url: string; upgraded: Promise<{ ws: WebSocket; socket: Duplex }> }> {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate });
  const server = createServer();
  const upgraded = new Promise<{ ws: WebSocket; socket: Duplex }>((resolve) => {
    server.on("upgrade", (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => resolve({ ws, socket })));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, upgraded };
}

describe(`WebSocket fast path (ws ${WS_VERSION})`, () => {
  it("the check finds the upgraded socket in the pinned ws version", async () => {
    const { server, url, upgraded } = await bareWsServer(false);
    const client = new WebSocket(url);
    client.on("error", () => {});
    try {
      const { ws, socket } = await upgraded;
      assert.equal(rawSocketOf(ws, socket), socket, "ws holds the very socket the upgrade was handed");
    } finally {
      client.terminate();
      server.closeAllConnections();
      server.close();
    }
  });

  it("the check refuses a connection with compression, and a socket that is not the upgraded one", async () => {
    const { server, url, upgraded } = await bareWsServer(true);
    const client = new WebSocket(url, { perMessageDeflate: true });
    client.on("error", () => {});
    try {
      const { ws, socket } = await upgraded;
      assert.notEqual(ws.extensions, "");
      assert.equal(rawSocketOf(ws, socket), null);
      const plain = { extensions: "", _socket: undefined } as unknown as WebSocket;
      assert.equal(rawSocketOf(plain, socket), null);
    } finally {
      client.terminate();
      server.closeAllConnections();
      server.close();
    }
  });

  describe("in Heartline", () => {
    let s: TestServer;
    const verdicts: Array<unknown> = [];
    const original = WebSocketTransport.prototype.rawSocket;
    before(async () => {
      WebSocketTransport.prototype.rawSocket = function (ws, socket) {
        const raw = original.call(this, ws, socket);
        verdicts.push(raw);
        return raw;
      };
      s = await startServer({ maxMessageBytes: 100_000 });
    });
    after(async () => {
      WebSocketTransport.prototype.rawSocket = original;
      await s.close();
    });

    it("every connection takes the fast path and receives whole frames", async () => {
      const c = await WsClient.connect(`${s.wsUrl}/ws?channel=fast:a`);
      try {
        await c.next((f) => f.type === "subscribed");
        assert.equal(verdicts.length, 1);
        assert.notEqual(verdicts[0], null, "the fast path is used");
        const big = "x".repeat(70_000);
        for (const data of [1, "two", big, { n: 4 }]) assert.equal((await publishHttp(s, "fast:a", data)).status, 200);
        await waitFor(() => c.messages("fast:a").length === 4 || undefined);
        assert.deepEqual(
          c.messages("fast:a").map((m) => [m.offset, m.data]),
          [
            [1, 1],
            [2, "two"],
            [3, big],
            [4, { n: 4 }],
          ],
        );
      } finally {
        c.close();
      }
    });
  });

  describe("without it", () => {
    let s: TestServer;
    const lines: string[] = [];
    const original = WebSocketTransport.prototype.rawSocket;
    before(async () => {
      // What a ws version that no longer keeps its socket where expected looks like.
      WebSocketTransport.prototype.rawSocket = () => null;
      const logger = pino(
        { level: "warn" },
        new Writable({
          write(chunk, _enc, done) {
            lines.push(String(chunk));
            done();
          },
        }),
      );
      s = await startServer({ maxMessageBytes: 100_000 }, { logger });
    });
    after(async () => {
      WebSocketTransport.prototype.rawSocket = original;
      await s.close();
    });

    it("delivers the same messages through ws.send, in order, beside replies and resets, and says so once", async () => {
      await publishHttp(s, "slow:b", 0);
      const clients = await Promise.all([1, 2].map(() => WsClient.connect(`${s.wsUrl}/ws`)));
      try {
        for (const c of clients) {
          c.send({ type: "subscribe", channel: "slow:b", since: { epoch: "gone", offset: 0 } });
          await c.next((f) => f.type === "subscribed");
          await c.next((f) => f.type === "reset");
        }
        const big = "y".repeat(70_000);
        const sent: unknown[] = [];
        for (let i = 0; i < 50; i++) {
          const data = i === 25 ? big : { i };
          sent.push(data);
          assert.equal((await publishHttp(s, "slow:b", data)).status, 200);
        }
        for (const c of clients) {
          await waitFor(() => c.messages("slow:b").length === 50 || undefined);
          const got = c.messages("slow:b");
          assert.deepEqual(
            got.map((m) => m.offset),
            sent.map((_, i) => i + 2),
          );
          assert.deepEqual(
            got.map((m) => m.data),
            sent,
          );
        }
        const warnings = lines.filter((l) => l.includes("fast path"));
        assert.equal(warnings.length, 1, "the fallback is logged once, not per connection");
      } finally {
        for (const c of clients) c.close();
      }
    });
  });
});
