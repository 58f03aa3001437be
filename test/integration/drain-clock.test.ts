/**
 * The drain waits on the injected clock: under a ManualClock that no test
 * advances, a drain held up by a publish whose body never completes still
 * ends at its timeout (the clock's sleep takes real time and moves the clock
 * by as much), and the time it waited is the clock's.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/index.js";
import { startServer, waitFor } from "../helpers/server.js";

describe("drain on the injected clock", () => {
  it("a drain held up by an unfinished publish ends at its timeout, measured on a ManualClock", async () => {
    const clock = new ManualClock();
    const s = await startServer({}, { clock });
    let socket: ReturnType<typeof connect> | undefined;
    try {
      socket = connect(s.port, "127.0.0.1");
      socket.on("error", () => {});
      await once(socket, "connect");
      const body = JSON.stringify({ channel: "news", data: { n: 1 } });
      socket.write(
        `POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n` +
          body.slice(0, 5),
      );
      // The publishes the front door is reading (internal): the drain must find this one under way.
      const pending = (s.hl as unknown as { door: { publishRequests: Set<unknown> } }).door.publishRequests;
      assert.ok(pending instanceof Set, "the server keeps its publishes under way in door.publishRequests");
      await waitFor(() => pending.size === 1 || undefined, 5000, "the publish being read");
      const started = performance.now();
      const before = clock.now();
      await s.hl.close(0.5);
      const took = performance.now() - started;
      assert.ok(clock.now() - before >= 500, `the drain waited on the clock: it moved by ${clock.now() - before} ms`);
      assert.ok(took < 5000, `close() ended in ${Math.round(took)} ms`);
      await waitFor(() => socket!.destroyed || socket!.readableEnded || undefined, 5000, "the unfinished publish cut");
    } finally {
      socket?.destroy();
      await s.hl.close(0.1);
    }
  });
});
