/**
 * Log lines that clients cause are classified and bounded: deeply nested
 * frames, aborted uploads and WebSocket protocol errors cannot flood the log.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { describe, it } from "node:test";
import { pino } from "pino";
import { ManualClock } from "../../src/index.js";
import { startServer, waitFor, WsClient } from "../helpers/server.js";

interface Line {
  level: number;
  msg: string;
  kind?: string;
  suppressed?: number;
  err?: { stack?: string };
}

describe("client-caused log lines", () => {
  it("400 deeply nested frames, 200 aborted uploads and 100 protocol errors log at most 20 lines, with a suppressed count", async () => {
    const lines: Line[] = [];
    const logger = pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
    const clock = new ManualClock();
    // No publish rate limit: every frame must reach the check whose log line is counted.
    const s = await startServer({ clientPublish: ["game:*"], clientPublishRate: 0 }, { logger, clock });
    const before = lines.length;
    try {
      // 400 frames nested 30,000 deep (60 KB each, under the frame limit).
      const deep = "[".repeat(30_000) + "]".repeat(30_000);
      const c = await WsClient.connect(`${s.wsUrl}/ws`);
      for (let i = 0; i < 400; i++) c.send(i % 2 ? `{"type":${deep}}` : `{"type":"publish","channel":"game:x","data":${deep}}`);
      await waitFor(() => c.frames.filter((f) => f.type === "error").length === 400, 25_000, "400 error frames");
      assert.ok(c.frames.every((f) => f.code === "bad_request"), JSON.stringify(c.frames.find((f) => f.code !== "bad_request")));
      c.close();

      // 200 uploads cut in the middle of their body.
      const uploads: Socket[] = [];
      for (let i = 0; i < 200; i++) {
        const u = connect(s.port, "127.0.0.1");
        u.on("error", () => {});
        uploads.push(u);
      }
      await Promise.all(uploads.map((u) => once(u, "connect")));
      for (const u of uploads) u.write('POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"channel":"news","da');
      // The answer to a healthz after them on another connection: the server has read those bytes by then.
      await fetch(`${s.url}/healthz`);
      for (const u of uploads) u.destroy();

      // 100 WebSocket connections that send a frame with a reserved opcode.
      const bad = await Promise.all(Array.from({ length: 100 }, () => WsClient.connect(`${s.wsUrl}/ws`)));
      for (const b of bad) (b.ws as unknown as { _socket: Socket })._socket.write(Buffer.from([0x83, 0x80, 0, 0, 0, 0]));
      await Promise.all(bad.map((b) => b.closed));
      await waitFor(() => s.hl.connections === 0, 5000, "every connection to close");
      await waitFor(() => lines.some((l) => l.kind === "ws_protocol_error"), 2000, "a protocol error line");
      // The interval ends: each kind reports what it suppressed.
      clock.advance(10_000);

      const caused = lines.slice(before);
      const text = caused.map((l) => `${l.level} ${l.kind ?? ""} ${l.msg}`).join("\n");
      assert.ok(caused.length <= 20, `${caused.length} log lines:\n${text.slice(0, 2000)}`);
      assert.ok(!caused.some((l) => l.err?.stack?.includes("Maximum call stack")), "a stack trace of a nested frame was logged");
      assert.ok(!caused.some((l) => l.level >= 50), `client-caused lines at error level:\n${text}`);
      const summary = caused.find((l) => l.kind === "ws_protocol_error" && typeof l.suppressed === "number");
      assert.ok(summary, `no suppressed count:\n${text}`);
      assert.equal(summary.suppressed! + caused.filter((l) => l.kind === "ws_protocol_error" && l.suppressed === undefined).length, 100);
    } finally {
      await s.close();
    }
  });
});
