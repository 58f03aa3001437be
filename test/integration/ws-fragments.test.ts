/**
 * A WebSocket message split into many tiny fragments: each fragment costs
 * the server a Buffer until the message ends, so their number is capped
 * (WS_MAX_FRAGMENTS) and a client past it is disconnected.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { WS_MAX_FRAGMENTS } from "../../src/transports/websocket.js";
import { mb, startChildServer, type ChildServer } from "../helpers/child.js";
import { getJson, waitFor } from "../helpers/server.js";

/** A raw WebSocket client: the handshake by hand, then whatever frames the test writes. */
interface RawWs {
  socket: Socket;
  /** Bytes the server sent after the handshake. */
  received(): Buffer;
  closed: Promise<void>;
}

async function rawWs(port: number): Promise<RawWs> {
  const socket = connect(port, "127.0.0.1");
  socket.on("error", () => {});
  let buf = Buffer.alloc(0);
  let upgraded = false;
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  const ready = new Promise<void>((resolve, reject) => {
    socket.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      if (upgraded) return;
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString();
      if (!head.startsWith("HTTP/1.1 101")) reject(new Error(`no upgrade: ${head}`));
      upgraded = true;
      buf = buf.subarray(end + 4);
      resolve();
    });
    socket.once("close", () => reject(new Error("closed before the upgrade")));
  });
  socket.write(
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await ready;
  return { socket, received: () => buf, closed };
}

/** A text frame that does not end its message (FIN 0) with one byte, then `n - 1` one-byte continuations (FIN 0), masked with a zero key. */
function oneByteFragments(n: number): Buffer {
  const out = Buffer.alloc(n * 7);
  for (let i = 0; i < n; i++) {
    out[i * 7] = i === 0 ? 0x01 : 0x00;
    out[i * 7 + 1] = 0x80 | 1;
    // mask key 0,0,0,0 (already zero), payload "x"
    out[i * 7 + 6] = 0x78;
  }
  return out;
}

/** The close code of a server close frame at the start of `b`, if there is one. */
function closeCode(b: Buffer): number | undefined {
  for (let i = 0; i + 1 < b.length; ) {
    const op = b[i]! & 0x0f;
    const len = b[i + 1]! & 0x7f;
    if (len > 125) return undefined;
    if (op === 0x8) return len >= 2 ? b.readUInt16BE(i + 2) : 1005;
    i += 2 + len;
  }
  return undefined;
}

describe("fragmented WebSocket messages", () => {
  let s: ChildServer;
  before(async () => {
    s = await startChildServer([]);
  });
  after(() => s?.stop());

  it(`closes a connection with 1008 once a message passes ${WS_MAX_FRAGMENTS} fragments`, async () => {
    const ok = await rawWs(s.port);
    const over = await rawWs(s.port);
    try {
      ok.socket.write(oneByteFragments(WS_MAX_FRAGMENTS));
      over.socket.write(oneByteFragments(WS_MAX_FRAGMENTS + 1));
      await Promise.race([over.closed, new Promise((_, reject) => setTimeout(() => reject(new Error("the connection was not closed")), 3000))]);
      assert.equal(closeCode(over.received()), 1008);
      assert.equal(ok.socket.destroyed, false, "a message within the limit is left alone");
    } finally {
      ok.socket.destroy();
      over.socket.destroy();
    }
  });

  it("keeps memory flat while 50 connections send 16,000 one-byte fragments each", async () => {
    // Warm up with the same traffic from connections this side then ends, so the baseline holds what
    // handling it costs whatever the limit; the server has read everything once it answers a later request.
    const warm = await Promise.all(Array.from({ length: 50 }, () => rawWs(s.port)));
    for (const c of warm) c.socket.write(oneByteFragments(16_000));
    assert.equal((await getJson(`${s.url}/healthz`)).status, 200);
    for (const c of warm) c.socket.destroy();
    await Promise.all(warm.map((c) => c.closed));
    await waitFor(async () => (await getJson(`${s.url}/metrics`)).body.includes('heartline_connections{transport="ws"} 0'), 5000, "the warm-up connections to go");
    const base = s.rss();
    const clients = await Promise.all(Array.from({ length: 50 }, () => rawWs(s.port)));
    for (const c of clients) c.socket.write(oneByteFragments(16_000));
    // Until every connection is closed, or a while after the server has read everything sent.
    const closedAll = Promise.all(clients.map((c) => c.closed));
    await Promise.race([closedAll, new Promise((r) => setTimeout(r, 5000))]);
    assert.equal((await getJson(`${s.url}/healthz`)).status, 200);
    const grown = s.rss() - base;
    console.log(`# RSS ${mb(base)} → +${mb(grown)} after 50 × 16,000 fragments`);
    assert.ok(grown < 32 * 1024 * 1024, `RSS grew by ${mb(grown)}`);
    for (const c of clients) assert.equal(closeCode(c.received()), 1008, "closed for too many fragments");
    await waitFor(async () => (await getJson(`${s.url}/metrics`)).body.includes('heartline_connections{transport="ws"} 0'), 5000, "no WebSocket connection left");
  });
});
