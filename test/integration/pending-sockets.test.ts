/**
 * Sockets that are not subscriber connections (idle, sending headers,
 * kept alive) are bounded per peer address and in total: past the limit a
 * new socket is closed at once, other addresses are still served, and the
 * counts go back to zero when the sockets close.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import net from "node:net";
import { describe, it } from "node:test";
import { SseStream } from "../helpers/sse.js";
import { waitFor, withServer } from "../helpers/server.js";

interface Idle {
  socket: net.Socket;
  closed: () => boolean;
}

/** Opens `n` TCP connections from `localAddress` that send nothing. */
async function openIdle(port: number, n: number, localAddress = "127.0.0.1"): Promise<Idle[]> {
  return Promise.all(
    Array.from({ length: n }, () => {
      const socket = net.connect({ port, host: "127.0.0.1", localAddress });
      let closed = false;
      socket.on("error", () => {});
      socket.on("close", () => (closed = true));
      return new Promise<Idle>((resolve) => socket.once("connect", () => resolve({ socket, closed: () => closed })));
    }),
  );
}

/** GET /healthz from `localAddress` on a fresh connection: the status, or 0 when the connection was closed. */
function healthz(port: number, localAddress: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/healthz", localAddress, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", () => resolve(0));
    req.end();
  });
}

async function closeAll(sockets: Idle[]): Promise<void> {
  for (const s of sockets) s.socket.destroy();
  await waitFor(() => sockets.every((s) => s.closed()), 5000, "the sockets to close");
}

describe("not-yet-admitted sockets", () => {
  const s = withServer({ maxPendingConnectionsPerIp: 20, maxPendingConnections: 45 });

  it("closes the sockets of one address past --max-pending-connections-per-ip at once; other addresses are served", async () => {
    const idle = await openIdle(s.port, 30);
    const started = Date.now();
    await waitFor(() => idle.filter((x) => x.closed()).length === 10, 2000, "10 sockets to be closed");
    assert.ok(Date.now() - started < 2000);
    assert.equal(idle.filter((x) => !x.closed()).length, 20, "20 stay open");
    assert.deepEqual(s.hl.socketCounts, { open: 20, pending: 20, addresses: 1 });
    assert.equal(await healthz(s.port, "127.0.0.2"), 200, "another address is served");
    assert.equal(await healthz(s.port, "127.0.0.1"), 0, "this one is at its limit");
    await closeAll(idle);
    await waitFor(() => s.hl.socketCounts.open === 0, 5000, "the counts to return to 0");
    assert.deepEqual(s.hl.socketCounts, { open: 0, pending: 0, addresses: 0 });
    assert.equal(await healthz(s.port, "127.0.0.1"), 200, "accepted again once the idle sockets are gone");
  });

  it("closes any new socket past --max-pending-connections in total", async () => {
    const a = await openIdle(s.port, 20, "127.0.0.3");
    const b = await openIdle(s.port, 20, "127.0.0.4");
    const c = await openIdle(s.port, 10, "127.0.0.5");
    await waitFor(() => c.filter((x) => x.closed()).length === 5, 2000, "5 sockets past the total to be closed");
    assert.equal(a.concat(b).some((x) => x.closed()), false);
    assert.equal(await healthz(s.port, "127.0.0.6"), 0, "the total is reached");
    await closeAll(a.concat(b, c));
    await waitFor(() => s.hl.socketCounts.open === 0, 5000, "the counts to return to 0");
    assert.equal(await healthz(s.port, "127.0.0.6"), 200);
  });

  it("does not count subscriber connections, and counts a kept-alive socket again once its stream or poll is over", async () => {
    const streams: SseStream[] = [];
    for (let i = 0; i < 5; i++) streams.push(...(await Promise.all(Array.from({ length: 5 }, () => SseStream.open(`${s.url}/sse?channel=pending:1`)))));
    await waitFor(() => s.hl.connections === 25, 5000, "25 streams");
    // 25 subscribers and 20 idle sockets from one address: the idle ones are what the limit counts.
    const idle = await openIdle(s.port, 21);
    await waitFor(() => idle.filter((x) => x.closed()).length === 1, 2000, "the 21st idle socket to be closed");
    assert.deepEqual(s.hl.socketCounts, { open: 45, pending: 20, addresses: 1 });
    await closeAll(idle);
    // Subscribers that vanish at once never count as pending on their way out.
    for (const st of streams) st.close();
    assert.equal(await healthz(s.port, "127.0.0.1"), 200);
    await waitFor(() => s.hl.socketCounts.open === 0 && s.hl.connections === 0, 5000, "everything to close");
    assert.deepEqual(s.hl.socketCounts, { open: 0, pending: 0, addresses: 0 });
  });

  it("counts a kept-alive socket as pending again once its held poll is answered", async () => {
    const cursor = JSON.parse(await new Promise<string>((resolve) => {
      const req = request({ host: "127.0.0.1", port: s.port, path: "/poll?channel=pending:p", agent: false }, (res) => {
        let b = "";
        res.on("data", (d) => (b += d));
        res.on("end", () => resolve(b));
      });
      req.end();
    })).cursor as string;
    await waitFor(() => s.hl.socketCounts.open === 0, 5000, "the first poll's socket to close");
    const c = net.connect(s.port, "127.0.0.1");
    let text = "";
    c.setEncoding("latin1");
    c.on("data", (d: string) => (text += d));
    c.write(`GET /poll?channel=pending:p&cursor=${cursor} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    assert.deepEqual(s.hl.socketCounts, { open: 1, pending: 0, addresses: 0 }, "a held poll is a subscriber connection");
    await s.hl.publish("pending:p", 1);
    await waitFor(() => text.includes('"offset":1'), 5000, "the answer");
    assert.deepEqual(s.hl.socketCounts, { open: 1, pending: 1, addresses: 1 }, "idle kept-alive again");
    c.destroy();
    await waitFor(() => s.hl.socketCounts.open === 0, 5000, "the socket to close");
    assert.deepEqual(s.hl.socketCounts, { open: 0, pending: 0, addresses: 0 });
  });
});

describe("not-yet-admitted sockets behind --trust-proxy", () => {
  const s = withServer({ trustProxy: true, maxPendingConnectionsPerIp: 5, maxPendingConnections: 12 });

  it("applies only the total to the proxy's address", async () => {
    const idle = await openIdle(s.port, 15);
    await waitFor(() => idle.filter((x) => x.closed()).length === 3, 2000, "3 sockets past the total to be closed");
    assert.equal(idle.filter((x) => !x.closed()).length, 12, "the per-address limit does not apply to the proxy");
    await closeAll(idle);
    await waitFor(() => s.hl.socketCounts.open === 0, 5000, "the counts to return to 0");
  });
});
