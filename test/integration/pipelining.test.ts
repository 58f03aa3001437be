/**
 * Pipelined HTTP/1.1 requests around polls and streams on a server made by
 * listen(): every request is answered, in the order sent, whether a poll is
 * served on the bare socket or on node:http's response path.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { sign, nowSec } from "../helpers/auth.js";
import { waitFor, withServer } from "../helpers/server.js";

/** A raw connection that splits what it receives into answers by Content-Length. */
class Pipe {
  readonly socket: net.Socket;
  private buffered = "";
  readonly answers: Array<{ status: number; body: string }> = [];

  constructor(port: number) {
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.setEncoding("latin1");
    this.socket.on("error", () => {});
    this.socket.on("data", (d: string) => {
      this.buffered += d;
      for (;;) {
        const end = this.buffered.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = this.buffered.slice(0, end);
        let bodyEnd: number;
        let next: number;
        if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
          // Kept chunked: only /metrics answers so, and only its presence and place matter.
          const last = this.buffered.indexOf("\r\n0\r\n\r\n", end + 4);
          if (last < 0) return;
          bodyEnd = last;
          next = last + 7;
        } else {
          const m = /\r\ncontent-length: *(\d+)/i.exec(head);
          bodyEnd = next = end + 4 + (m ? Number(m[1]) : 0);
          if (this.buffered.length < next) return;
        }
        this.answers.push({ status: Number(head.split(" ")[1]), body: this.buffered.slice(end + 4, bodyEnd) });
        this.buffered = this.buffered.slice(next);
      }
    });
  }

  send(...targets: string[]): void {
    this.socket.write(targets.map((t) => `GET ${t} HTTP/1.1\r\nHost: x\r\n\r\n`).join(""));
  }

  async take(n: number): Promise<Array<{ status: number; body: any }>> {
    await waitFor(() => this.answers.length >= n, 5000, `${n} answers (got ${this.answers.length}: ${JSON.stringify(this.answers)})`);
    return this.answers.splice(0, n).map((a) => ({ status: a.status, body: a.body.includes("heartline_") ? { metrics: true } : JSON.parse(a.body) }));
  }
}

/** A name for each kind of answer, to compare the order. */
function kind(a: { status: number; body: any }): string {
  if (a.status !== 200) return `status ${a.status}`;
  if ("messages" in a.body) return "poll";
  if (a.body.status === "ok") return "healthz";
  if (a.body.status === "ready") return "readyz";
  if ("subscribers" in a.body) return "channel";
  if (a.body.metrics === true) return "metrics";
  return JSON.stringify(a.body);
}

describe("pipelined requests around polls", () => {
  const s = withServer({});
  const auth = withServer({ jwtSecret: "pipelining-secret-of-at-least-32-bytes" });

  it("answers /healthz, a poll and /healthz sent in one write, in order", async () => {
    const p = new Pipe(s.port);
    p.send("/healthz", "/poll?channel=pipe:a", "/healthz");
    assert.deepEqual((await p.take(3)).map(kind), ["healthz", "poll", "healthz"]);
    p.socket.destroy();
  });

  it("answers a poll pipelined behind a request answered later (channel info, metrics), in order", async () => {
    const p = new Pipe(s.port);
    p.send("/api/channels/pipe:a", "/poll?channel=pipe:a", "/healthz", "/api/channels/pipe:b", "/poll?channel=pipe:b", "/readyz");
    assert.deepEqual((await p.take(6)).map(kind), ["channel", "poll", "healthz", "channel", "poll", "readyz"]);
    p.send("/metrics", "/poll?channel=pipe:a", "/healthz");
    assert.deepEqual((await p.take(3)).map(kind), ["metrics", "poll", "healthz"]);
    p.socket.destroy();
  });

  it("answers requests pipelined behind a poll, in order, and a held poll before what follows it", async () => {
    const p = new Pipe(s.port);
    p.send("/poll?channel=pipe:c", "/api/channels/pipe:c", "/healthz", "/poll?channel=pipe:d", "/readyz");
    const first = await p.take(5);
    assert.deepEqual(first.map(kind), ["poll", "channel", "healthz", "poll", "readyz"]);
    // A poll that is held, behind an answer that comes later, with requests behind it.
    p.send("/api/channels/pipe:c", `/poll?channel=pipe:c&cursor=${first[0]!.body.cursor}`, "/healthz");
    assert.deepEqual((await p.take(1)).map(kind), ["channel"]);
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    assert.equal(p.answers.length, 0, "nothing overtakes the held poll");
    await s.hl.publish("pipe:c", "m");
    const rest = await p.take(2);
    assert.deepEqual(rest.map(kind), ["poll", "healthz"]);
    assert.deepEqual(rest[0]!.body.messages, [{ channel: "pipe:c", offset: 1, data: "m" }]);
    p.socket.destroy();
    await waitFor(() => s.hl.connections === 0, 5000, "no connection left");
  });

  it("starts an event stream pipelined behind a request answered later only after that answer", async () => {
    const socket = net.connect(s.port, "127.0.0.1");
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (text += d));
    socket.on("error", () => {});
    socket.write("GET /api/channels/pipe:e HTTP/1.1\r\nHost: x\r\n\r\nGET /sse?channel=pipe:e HTTP/1.1\r\nHost: x\r\n\r\n");
    await waitFor(() => text.includes("retry:"), 5000, "the stream to start");
    const info = text.indexOf('"subscribers"');
    assert.ok(info > 0 && info < text.indexOf("text/event-stream"), text);
    socket.destroy();
    await waitFor(() => s.hl.connections === 0, 5000, "the stream to close");
  });

  it("answers pipelined polls whose token is checked asynchronously, in order, with nothing lost", async () => {
    const token = await sign({ sub: "u", exp: nowSec() + 60, channels: ["room:*"] }, "pipelining-secret-of-at-least-32-bytes");
    const p = new Pipe(auth.port);
    const targets: string[] = [];
    for (let i = 0; i < 10; i++) targets.push(`/poll?channel=room:${i}&token=${token}`, i % 2 ? "/healthz" : "/api/channels/room:x");
    p.send(...targets);
    const answers = await p.take(20);
    assert.deepEqual(
      answers.map(kind),
      targets.map((t) => (t.startsWith("/poll") ? "poll" : t === "/healthz" ? "healthz" : "channel")),
    );
    // And bytes that arrive while a poll's token is being checked.
    p.send(`/poll?channel=room:a&token=${token}`);
    p.send("/healthz");
    p.send(`/poll?channel=room:b&token=${token}`, "/readyz");
    assert.deepEqual((await p.take(4)).map(kind), ["poll", "healthz", "poll", "readyz"]);
    p.socket.destroy();
  });
});
