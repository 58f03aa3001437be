/**
 * Idle kept-alive HTTP connections: Heartline keeps them open longer than a
 * proxy in front keeps its upstream connections (nginx and AWS ALB: 60 s), so
 * the proxy never sends a request on a connection Heartline is closing.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { after, describe, it } from "node:test";
import { startServer, waitFor, type TestServer } from "../helpers/server.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw kept-alive connection that sends GET /healthz and counts complete answers. */
class KeptAlive {
  answers = 0;
  closed = false;
  private text = "";
  constructor(readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      this.text += d;
      // Each /healthz answer ends with its small JSON body.
      this.answers = this.text.split('{"status":"ok"}').length - 1;
    });
    socket.on("close", () => (this.closed = true));
    socket.on("error", () => {});
  }
  static async open(port: number): Promise<KeptAlive> {
    const s = connect(port, "127.0.0.1");
    await once(s, "connect");
    return new KeptAlive(s);
  }
  get(): void {
    this.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n");
  }
}

describe("kept-alive connections", () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  it("an idle kept-alive connection outlives node's 5 s default and serves a second request", async () => {
    const s = await startServer();
    servers.push(s);
    const c = await KeptAlive.open(s.port);
    c.get();
    await waitFor(() => c.answers === 1, 2000, "the first answer");
    // Longer than node:http's default keep-alive timeout (5 s, closed at about 6 s).
    await sleep(6500);
    assert.equal(c.closed, false, "the server closed an idle kept-alive connection after 6.5 s");
    c.get();
    await waitFor(() => c.answers === 2, 2000, "the second answer on the same connection");
    c.socket.destroy();
  });

  it("--keep-alive-timeout 1 closes an idle kept-alive connection after about a second", async () => {
    const s = await startServer({ keepAliveTimeout: 1 });
    servers.push(s);
    const c = await KeptAlive.open(s.port);
    const t0 = Date.now();
    c.get();
    await waitFor(() => c.answers === 1, 2000, "the first answer");
    await waitFor(() => c.closed, 4000, "the idle connection to be closed");
    const idle = Date.now() - t0;
    assert.ok(idle >= 900, `closed after ${idle} ms, before the 1 s timeout`);
  });
});
