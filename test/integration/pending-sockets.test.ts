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

/** The cursor of a first poll on `channel` (answered at once), over a connection of its own. */
function firstCursor(port: number, channel: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: `/poll?channel=${channel}`, agent: false }, (res) => {
      let b = "";
      res.on("data", (d) => (b += d));
      res.on("end", () => resolve(JSON.parse(b).cursor as string));
    });
    req.on("error", reject);
    req.end();
  });
}

/** One kept-alive HTTP/1.1 connection from `localAddress`, asking one GET at a time. */
class RawClient {
  private text = "";
  private waiting: ((body: string) => void) | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding("latin1");
    socket.on("error", () => {});
    socket.on("data", (d: string) => {
      this.text += d;
      this.take();
    });
  }

  static open(port: number, localAddress: string): Promise<RawClient> {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress });
    return new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(new RawClient(socket)));
      socket.once("error", reject);
    });
  }

  /** Sends a GET; resolves with the body of its answer (which must have a Content-Length). */
  get(path: string): Promise<string> {
    assert.equal(this.waiting, undefined, "one request at a time");
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  private take(): void {
    const end = this.text.indexOf("\r\n\r\n");
    if (end < 0 || this.waiting === undefined) return;
    const length = /\r\ncontent-length: *(\d+)/i.exec(this.text.slice(0, end));
    assert.ok(length, "the answer has a Content-Length");
    const size = Number(length[1]);
    if (this.text.length < end + 4 + size) return;
    const body = this.text.slice(end + 4, end + 4 + size);
    this.text = this.text.slice(end + 4 + size);
    const done = this.waiting;
    this.waiting = undefined;
    done(body);
  }

  destroy(): void {
    this.socket.destroy();
  }
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
    assert.deepEqual(s.hl.socketCounts, { open: 20, pending: 20, resting: 0, addresses: 1 });
    assert.equal(await healthz(s.port, "127.0.0.2"), 200, "another address is served");
    assert.equal(await healthz(s.port, "127.0.0.1"), 0, "this one is at its limit");
    await closeAll(idle);
    await waitFor(() => s.hl.socketCounts.open === 0, 5000, "the counts to return to 0");
    assert.deepEqual(s.hl.socketCounts, { open: 0, pending: 0, resting: 0, addresses: 0 });
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
    assert.deepEqual(s.hl.socketCounts, { open: 45, pending: 20, resting: 0, addresses: 1 });
    await closeAll(idle);
    // Subscribers that vanish at once never count as pending on their way out.
    for (const st of streams) st.close();
    assert.equal(await healthz(s.port, "127.0.0.1"), 200);
    await waitFor(() => s.hl.socketCounts.open === 0 && s.hl.connections === 0, 5000, "everything to close");
    assert.deepEqual(s.hl.socketCounts, { open: 0, pending: 0, resting: 0, addresses: 0 });
  });

  it("counts a kept-alive socket whose held poll was answered as resting, not pending, until its next poll is held", async () => {
    const cursor = await firstCursor(s.port, "pending:p");
    await waitFor(() => s.hl.socketCounts.open === 0, 5000, "the first poll's socket to close");
    const c = await RawClient.open(s.port, "127.0.0.1");
    const answer = c.get(`/poll?channel=pending:p&cursor=${cursor}`);
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    assert.deepEqual(s.hl.socketCounts, { open: 1, pending: 0, resting: 0, addresses: 0 }, "a held poll is a subscriber connection");
    await s.hl.publish("pending:p", 1);
    const next = JSON.parse(await answer).cursor as string;
    assert.deepEqual(s.hl.socketCounts, { open: 1, pending: 0, resting: 1, addresses: 0 }, "between two polls");
    // The next poll on the same socket is held: a subscriber connection again.
    const again = c.get(`/poll?channel=pending:p&cursor=${next}`);
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the next poll to be held");
    assert.deepEqual(s.hl.socketCounts, { open: 1, pending: 0, resting: 0, addresses: 0 });
    await s.hl.publish("pending:p", 2);
    await again;
    assert.equal(s.hl.socketCounts.resting, 1);
    c.destroy();
    await waitFor(() => s.hl.socketCounts.open === 0, 5000, "the socket to close");
    assert.deepEqual(s.hl.socketCounts, { open: 0, pending: 0, resting: 0, addresses: 0 });
  });

  it("keeps accepting new sockets after a message answers more held polls than --max-pending-connections", async () => {
    const cursor = await firstCursor(s.port, "pending:many");
    // 60 pollers over three addresses (20 each, the per-address pending limit), more than the 45 pending in total.
    // Each address's sockets are pending until their polls are held.
    const clients: RawClient[] = [];
    const held: Array<Promise<string>> = [];
    for (const a of ["127.0.0.7", "127.0.0.8", "127.0.0.9"]) {
      for (let i = 0; i < 20; i++) {
        const c = await RawClient.open(s.port, a);
        clients.push(c);
        held.push(c.get(`/poll?channel=pending:many&cursor=${cursor}`));
      }
      await waitFor(() => s.hl.connectionsByTransport.poll === clients.length, 5000, "the polls to be held");
    }
    assert.deepEqual(s.hl.socketCounts, { open: 60, pending: 0, resting: 0, addresses: 0 });
    await s.hl.publish("pending:many", "all");
    for (const body of await Promise.all(held)) assert.deepEqual(JSON.parse(body).messages.map((m: { data: unknown }) => m.data), ["all"]);
    assert.deepEqual(s.hl.socketCounts, { open: 60, pending: 0, resting: 60, addresses: 0 });
    assert.equal(await healthz(s.port, "127.0.0.7"), 200, "a new socket from a poller's address is served");
    assert.equal(await healthz(s.port, "127.0.0.10"), 200, "and one from another address");
    for (const c of clients) c.destroy();
    await waitFor(() => s.hl.socketCounts.open === 0, 5000, "the sockets to close");
  });
});

describe("resting sockets past the connection limits", () => {
  const s = withServer({ maxConnectionsPerIp: 3, maxConnections: 5, maxPendingConnectionsPerIp: 20, maxPendingConnections: 45 });

  it("rest only as many as the subscriber connections they stand for, per address and in total; the rest count as pending", async () => {
    const a: RawClient[] = [];
    for (let i = 0; i < 4; i++) a.push(await RawClient.open(s.port, "127.0.0.11"));
    // Polls without a cursor are answered at once; each socket then waits for its next poll.
    for (const c of a) await c.get("/poll?channel=pending:r");
    assert.deepEqual(s.hl.socketCounts, { open: 4, pending: 1, resting: 3, addresses: 1 }, "3 per address");
    const b: RawClient[] = [];
    for (let i = 0; i < 3; i++) b.push(await RawClient.open(s.port, "127.0.0.12"));
    for (const c of b) await c.get("/poll?channel=pending:r");
    assert.deepEqual(s.hl.socketCounts, { open: 7, pending: 2, resting: 5, addresses: 2 }, "5 in total");
    // One resting socket closes: a pending one may take its place at its next answer.
    a[0]!.destroy();
    await waitFor(() => s.hl.socketCounts.open === 6, 5000, "the socket to close");
    assert.equal(s.hl.socketCounts.resting, 4);
    await b[2]!.get("/poll?channel=pending:r");
    assert.deepEqual(s.hl.socketCounts, { open: 6, pending: 1, resting: 5, addresses: 1 });
    for (const c of a.concat(b)) c.destroy();
    await waitFor(() => s.hl.socketCounts.open === 0, 5000, "the sockets to close");
    assert.deepEqual(s.hl.socketCounts, { open: 0, pending: 0, resting: 0, addresses: 0 });
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
