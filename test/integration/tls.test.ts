/**
 * TLS and HTTP/2 (SPEC §12), on real sockets: many SSE streams on one
 * HTTP/2 session, polls and publishes over HTTP/2, HTTP/1.1 and `wss://` on
 * the same port, certificate reloads (the method and SIGHUP to the CLI), bad
 * PEM files, and hostile HTTP/2 clients (resets, a session gone with open
 * streams, an oversized header block) leaving no connection behind.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { get as httpsGet, request as httpsRequest } from "node:https";
import { constants } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { startChildServer } from "../helpers/child.js";
import { startServer, waitFor, withServer, WsClient } from "../helpers/server.js";
import { h2Request, h2Session, h2Sse, makeCert } from "../helpers/tls.js";

const dir = mkdtempSync(join(tmpdir(), "heartline-tls-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const A = makeCert(dir, "a");
const B = makeCert(dir, "b");
const CLI = join(fileURLToPath(new URL("../../", import.meta.url)), "dist", "cli.js");

/** The SHA-256 fingerprint of the certificate a new TLS connection to `port` is shown. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: "127.0.0.1", port, ca: [A.cert, B.cert], ALPNProtocols: ["h2"] }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve(fp);
    });
    s.once("error", reject);
  });
}

/** `GET path` over HTTPS with HTTP/1.1: status, HTTP version and body. */
function https11(port: number, path: string, ca: Buffer): Promise<{ status: number; version: string; body: string }> {
  return new Promise((resolve, reject) => {
    httpsGet({ host: "127.0.0.1", port, path, ca, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (d: string) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode!, version: res.httpVersion, body }));
    }).once("error", reject);
  });
}

const publishH2 = (session: Parameters<typeof h2Request>[0], channel: string, data: unknown) =>
  h2Request(session, { ":method": "POST", ":path": "/api/publish", "content-type": "application/json" }, JSON.stringify({ channel, data }));

describe("HTTPS with HTTP/2 and HTTP/1.1 on one port", { concurrency: false }, () => {
  const live = { cert: join(dir, "live.crt"), key: join(dir, "live.key") };
  copyFileSync(A.certPath, live.cert);
  copyFileSync(A.keyPath, live.key);
  const s = withServer({ tlsCert: live.cert, tlsKey: live.key, heartbeatInterval: 0.5 }, { tickMs: 50 });
  const idle = () => waitFor(() => s.hl.connections === 0 && s.hl.socketCounts.open === 0, 5000, "no connection and no socket left");

  it("carries 20 SSE streams to 20 channels on one session, each receiving its messages, published by the library and over HTTP/2", async () => {
    const session = await h2Session(s.port, A.cert);
    assert.equal(session.alpnProtocol, "h2");
    const streams = Array.from({ length: 20 }, (_, i) => h2Sse(session, `/sse?channel=tls:${i}`));
    await Promise.all(streams.map((st) => st.ready()));
    for (const st of streams) {
      assert.equal(st.status, 200);
      assert.match(String(st.headers["content-type"]), /^text\/event-stream/);
      assert.equal(st.headers["connection"], undefined);
    }
    assert.equal(s.hl.connectionsByTransport.sse, 20);
    // One TCP connection, counted as a subscriber's while its streams are open.
    assert.deepEqual(s.hl.socketCounts, { open: 1, pending: 0, resting: 0, addresses: 0 });
    await Promise.all(streams.map((_, i) => s.hl.publish(`tls:${i}`, { n: i })));
    for (let i = 0; i < 20; i++) assert.deepEqual((await streams[i]!.message(`tls:${i}`)).data, { n: i });
    for (let i = 0; i < 20; i++) {
      const r = await publishH2(session, `tls:${i}`, { again: i });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.offset, 2);
    }
    for (let i = 0; i < 20; i++) assert.deepEqual((await streams[i]!.message(`tls:${i}`)).data, { again: i });
    // Heartbeats flow on every stream.
    await Promise.all(streams.map((st) => st.next((e) => e.event === "ping", 3000)));
    for (const st of streams) st.stream.close();
    await waitFor(() => s.hl.connections === 0, 5000, "the streams' connections released");
    // The session stays, idle: pending again.
    assert.deepEqual(s.hl.socketCounts, { open: 1, pending: 1, resting: 0, addresses: 1 });
    session.close();
    await idle();
  });

  it("answers a poll over HTTP/2, at once and held until a publish", async () => {
    const session = await h2Session(s.port, A.cert);
    const first = await h2Request(session, { ":path": "/poll?channel=tls:poll" });
    assert.equal(first.status, 200);
    assert.equal(first.headers["connection"], undefined);
    const held = h2Request(session, { ":path": `/poll?channel=tls:poll&cursor=${encodeURIComponent(first.body.cursor)}&timeout=10` });
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll held");
    assert.equal(s.hl.socketCounts.pending, 0);
    const pub = await publishH2(session, "tls:poll", "hello");
    assert.equal(pub.status, 200);
    const answer = await held;
    assert.equal(answer.status, 200);
    assert.deepEqual(
      answer.body.messages.map((m: { data: unknown }) => m.data),
      ["hello"],
    );
    assert.equal(s.hl.connections, 0);
    assert.equal(s.hl.socketCounts.pending, 1);
    session.close();
    await idle();
  });

  it("answers errors over HTTP/2 as SPEC errors: 404, 405, a bad SSE request, /ws without an upgrade", async () => {
    const session = await h2Session(s.port, A.cert);
    assert.equal((await h2Request(session, { ":path": "/nope" })).body.error.code, "not_found");
    const m = await h2Request(session, { ":method": "POST", ":path": "/healthz" }, "");
    assert.equal(m.status, 405);
    assert.equal(m.headers["allow"], "GET");
    assert.equal((await h2Request(session, { ":path": "/sse" })).body.error.code, "bad_request");
    assert.equal((await h2Request(session, { ":path": "/ws?channel=x" })).status, 400);
    // A publish refused before its body arrives ends its stream alone; the session goes on.
    const big = await h2Request(session, { ":method": "POST", ":path": "/api/publish", "content-type": "text/plain" }, "x");
    assert.equal(big.status, 415);
    assert.equal((await h2Request(session, { ":path": "/healthz" })).status, 200);
    session.close();
    await idle();
  });

  it("serves HTTP/1.1 over TLS on the same port: a request and an SSE stream", async () => {
    const r = await https11(s.port, "/healthz", A.cert);
    assert.equal(r.status, 200);
    assert.equal(r.version, "1.1");
    const events = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest({ host: "127.0.0.1", port: s.port, path: "/sse?channel=tls:h1", ca: A.cert, agent: false }, (res) => {
        assert.equal(res.httpVersion, "1.1");
        let text = "";
        let published = false;
        res.setEncoding("utf8").on("data", (d: string) => {
          text += d;
          if (!published && text.includes("event: position")) {
            published = true;
            void s.hl.publish("tls:h1", "over-h1");
          }
          if (text.includes('"over-h1"')) {
            req.destroy();
            resolve(text);
          }
        });
      });
      req.once("error", reject);
      req.end();
    });
    assert.match(events, /"data":"over-h1"/);
    await idle();
  });

  it("upgrades wss:// WebSockets over HTTP/1.1 on the same port", async () => {
    const c = await WsClient.connect(`wss://127.0.0.1:${s.port}/ws?channel=tls:ws`, { ca: A.cert });
    await c.next((f) => f.type === "subscribed");
    await s.hl.publish("tls:ws", { over: "wss" });
    const m = await c.next((f) => f.type === "message");
    assert.deepEqual(m.data, { over: "wss" });
    c.close();
    await c.closed;
    await idle();
  });

  it("is HTTP/2 to curl --http2", async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile("curl", ["--http2", "-sI", "--cacert", A.certPath, `https://127.0.0.1:${s.port}/healthz`], (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    assert.match(out, /^HTTP\/2 200/);
    await idle();
  });

  it("reloads the certificate: new connections get the new one, an open stream goes on; a bad file keeps the one in use", async () => {
    const session = await h2Session(s.port, [A.cert, B.cert]);
    const st = h2Sse(session, "/sse?channel=tls:reload");
    await st.ready();
    assert.equal(await servedFingerprint(s.port), A.fingerprint);
    copyFileSync(B.certPath, live.cert);
    copyFileSync(B.keyPath, live.key);
    assert.equal(s.hl.reloadTls(), true);
    assert.equal(await servedFingerprint(s.port), B.fingerprint);
    await s.hl.publish("tls:reload", "after reload");
    assert.equal((await st.message("tls:reload")).data, "after reload");
    // A key that does not match, then a file that is not PEM: refused, B stays.
    copyFileSync(A.keyPath, live.key);
    assert.equal(s.hl.reloadTls(), false);
    writeFileSync(live.key, "not a key\n");
    assert.equal(s.hl.reloadTls(), false);
    assert.equal(await servedFingerprint(s.port), B.fingerprint);
    assert.equal(s.hl.connectionsByTransport.sse, 1);
    st.stream.close();
    session.close();
    await idle();
  });
});

describe("hostile HTTP/2 clients leave no connection behind", { concurrency: false }, () => {
  const s = withServer({ tlsCert: A.certPath, tlsKey: A.keyPath }, { tickMs: 50 });
  const idle = () => waitFor(() => s.hl.connections === 0 && s.hl.socketCounts.open === 0, 5000, "no connection and no socket left");

  it("a stream reset in the middle of an SSE stream and of a held poll frees their connections, the session goes on", async () => {
    const session = await h2Session(s.port, A.cert);
    const st = h2Sse(session, "/sse?channel=h:reset");
    await st.ready();
    const first = await h2Request(session, { ":path": "/poll?channel=h:reset" });
    const poll = session.request({ ":path": `/poll?channel=h:reset&cursor=${encodeURIComponent(first.body.cursor)}&timeout=20` });
    poll.on("error", () => {});
    await waitFor(() => s.hl.connections === 2, 5000, "a stream and a held poll");
    st.stream.close(constants.NGHTTP2_CANCEL);
    poll.close(constants.NGHTTP2_CANCEL);
    await waitFor(() => s.hl.connections === 0, 5000, "both released");
    assert.equal(s.hl.socketCounts.pending, 1);
    await s.hl.publish("h:reset", "nobody");
    assert.equal((await h2Request(session, { ":path": "/healthz" })).status, 200);
    session.close();
    await idle();
  });

  it("a session destroyed with open streams frees every connection", async () => {
    const session = await h2Session(s.port, A.cert);
    const streams = Array.from({ length: 10 }, (_, i) => h2Sse(session, `/sse?channel=h:gone:${i}`));
    await Promise.all(streams.map((st) => st.ready()));
    assert.equal(s.hl.connections, 10);
    session.destroy();
    await idle();
    await s.hl.publish("h:gone:0", "nobody");
  });

  it("a session that sends GOAWAY with open streams frees every connection", async () => {
    const session = await h2Session(s.port, A.cert);
    const streams = Array.from({ length: 5 }, (_, i) => h2Sse(session, `/sse?channel=h:goaway:${i}`));
    await Promise.all(streams.map((st) => st.ready()));
    session.goaway(constants.NGHTTP2_PROTOCOL_ERROR);
    await idle();
    session.destroy();
  });

  it("a request with an oversized header block is refused; the server serves on", async () => {
    const session = await h2Session(s.port, A.cert);
    const req = session.request({ ":path": "/sse?channel=h:big", "x-big": "a".repeat(300_000) });
    const outcome = await new Promise<string>((resolve) => {
      req.on("response", (h) => resolve(`status ${h[":status"]}`));
      req.on("error", (e) => resolve(`error ${(e as NodeJS.ErrnoException).code}`));
      req.on("close", () => resolve(`closed ${req.rstCode}`));
    });
    assert.doesNotMatch(outcome, /status 200/);
    session.destroy();
    await idle();
    const again = await h2Session(s.port, A.cert);
    assert.equal((await h2Request(again, { ":path": "/healthz" })).status, 200);
    again.close();
    await idle();
  });
});

describe("idle HTTP/2 sessions, pending TLS sockets and drain", { concurrency: false }, () => {
  it("closes a session once it has had no stream open for the keep-alive timeout, not while a stream is open", async () => {
    const s = await startServer({ tlsCert: A.certPath, tlsKey: A.keyPath, keepAliveTimeout: 0.5 }, { tickMs: 50 });
    try {
      const session = await h2Session(s.port, A.cert);
      let closed = false;
      session.once("close", () => (closed = true));
      const st = h2Sse(session, "/sse?channel=idle:a");
      await st.ready();
      // Past the timeout (1.5 s with its margin) with a stream open: the session stays.
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(closed, false);
      await s.hl.publish("idle:a", "still open");
      assert.equal((await st.message("idle:a")).data, "still open");
      st.stream.close();
      await waitFor(() => closed, 10_000, "the idle session closed by the server");
      await waitFor(() => s.hl.socketCounts.open === 0);
    } finally {
      await s.close();
    }
  });

  it("refuses a TLS connection past --max-pending-connections before its handshake, and serves on", async () => {
    const s = await startServer({ tlsCert: A.certPath, tlsKey: A.keyPath, maxPendingConnections: 1 }, { tickMs: 50 });
    try {
      const first = await h2Session(s.port, A.cert);
      await assert.rejects(h2Session(s.port, A.cert));
      assert.equal(s.hl.socketCounts.open, 1);
      // A session holding a stream is a subscriber's, no longer pending: room for another.
      const st = h2Sse(first, "/sse?channel=pending:a");
      await st.ready();
      const second = await h2Session(s.port, A.cert);
      assert.equal((await h2Request(second, { ":path": "/healthz" })).status, 200);
      second.destroy();
      first.destroy();
      await waitFor(() => s.hl.connections === 0 && s.hl.socketCounts.open === 0);
    } finally {
      await s.close();
    }
  });

  it("cuts an HTTP/1.1 client whose headers, or body, do not arrive in time, not an open stream", async () => {
    const s = await startServer({ tlsCert: A.certPath, tlsKey: A.keyPath }, { tickMs: 50, headersTimeoutMs: 300, requestTimeoutMs: 600 });
    try {
      const partial = (text: string) =>
        new Promise<string>((resolve, reject) => {
          const c = tlsConnect({ host: "127.0.0.1", port: s.port, ca: A.cert, ALPNProtocols: ["http/1.1"] }, () => c.write(text));
          let got = "";
          c.setEncoding("utf8").on("data", (d: string) => (got += d));
          c.once("close", () => resolve(got));
          c.once("error", reject);
        });
      // Headers never finished: closed (nothing to answer).
      assert.equal(await partial("GET /healthz HTTP/1.1\r\nHost: x\r\n"), "");
      // A body that never comes: cut.
      assert.doesNotMatch(
        await partial('POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"channel"'),
        /HTTP\/1.1 200/,
      );
      // An event stream outlives both limits.
      const text = await new Promise<string>((resolve, reject) => {
        const req = httpsRequest({ host: "127.0.0.1", port: s.port, path: "/sse?channel=slow:a", ca: A.cert, agent: false }, (res) => {
          let t = "";
          let asked = false;
          res.setEncoding("utf8").on("data", (d: string) => {
            t += d;
            if (!asked && t.includes("event: position")) {
              asked = true;
              setTimeout(() => void s.hl.publish("slow:a", "later"), 1000);
            }
            if (t.includes('"later"')) {
              req.destroy();
              resolve(t);
            }
          });
          res.once("close", () => reject(new Error(`stream closed: ${t}`)));
        });
        req.once("error", reject);
        req.end();
      });
      assert.match(text, /"data":"later"/);
      await waitFor(() => s.hl.connections === 0 && s.hl.socketCounts.open === 0);
    } finally {
      await s.close();
    }
  });

  it("drains: HTTP/2 streams are ended and close resolves", async () => {
    const s = await startServer({ tlsCert: A.certPath, tlsKey: A.keyPath }, { tickMs: 50 });
    const session = await h2Session(s.port, A.cert);
    const streams = [h2Sse(session, "/sse?channel=drain:a"), h2Sse(session, "/sse?channel=drain:b")];
    await Promise.all(streams.map((st) => st.ready()));
    await s.hl.close(5);
    await waitFor(() => streams.every((st) => st.ended), 5000, "both streams ended");
    assert.equal(s.hl.connections, 0);
    session.destroy();
  });
});

describe("a slow consumer on an HTTP/2 stream", () => {
  const s = withServer({ tlsCert: A.certPath, tlsKey: A.keyPath, sendBufferBytes: 65536 }, { tickMs: 50 });

  it("is dropped alone: the session's other stream goes on", async () => {
    const session = await h2Session(s.port, A.cert);
    const slow = h2Sse(session, "/sse?channel=slow:c");
    const other = h2Sse(session, "/sse?channel=slow:d");
    await Promise.all([slow.ready(), other.ready()]);
    // The slow stream is never read again: its flow-control window fills, then the server's queue.
    slow.stream.pause();
    slow.stream.removeAllListeners("data");
    const big = "x".repeat(16 * 1024);
    for (let i = 0; i < 40 && s.hl.connections === 2; i++) {
      await s.hl.publish("slow:c", big);
      await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => s.hl.connections === 1, 5000, "the slow stream dropped");
    await s.hl.publish("slow:d", "fine");
    assert.equal((await other.message("slow:d")).data, "fine");
    session.destroy();
    await waitFor(() => s.hl.connections === 0 && s.hl.socketCounts.open === 0);
  });
});

describe("connection limits count HTTP/2 streams", () => {
  const s = withServer({ tlsCert: A.certPath, tlsKey: A.keyPath, maxConnectionsPerIp: 2 }, { tickMs: 50 });

  it("a third SSE stream of one address on one session is refused with 429", async () => {
    const session = await h2Session(s.port, A.cert);
    const a = h2Sse(session, "/sse?channel=lim:a");
    const b = h2Sse(session, "/sse?channel=lim:b");
    await Promise.all([a.ready(), b.ready()]);
    const third = await h2Request(session, { ":path": "/sse?channel=lim:c" });
    assert.equal(third.status, 429);
    assert.equal(third.body.error.code, "too_many_connections_per_ip");
    a.stream.close();
    await waitFor(() => s.hl.connections === 1);
    const c = h2Sse(session, "/sse?channel=lim:c");
    await c.ready();
    session.destroy();
    await waitFor(() => s.hl.connections === 0 && s.hl.socketCounts.open === 0);
  });
});

describe("heartline serve --tls-cert --tls-key", { concurrency: false }, () => {
  const runToExit = (args: string[]) =>
    new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, [CLI, "serve", "--port", "0", "--host", "127.0.0.1", ...args], { stdio: ["ignore", "pipe", "pipe"] });
      let stderr = "";
      let stdout = "";
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
      child.on("close", (code) => {
        clearTimeout(t);
        resolve({ code, stderr, stdout });
      });
    });
  const refused = async (args: string[], ...patterns: RegExp[]) => {
    const r = await runToExit(args);
    assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
    for (const p of patterns) assert.match(r.stderr, p);
    assert.doesNotMatch(r.stdout, /"msg":"listening"/);
  };
  const notPem = join(dir, "not-pem.txt");
  writeFileSync(notPem, "hello\n");

  it("a missing --tls-cert file exits 2 naming the option", async () => {
    await refused(["--tls-cert", join(dir, "missing.crt"), "--tls-key", A.keyPath], /--tls-cert/, /missing\.crt/, /cannot read/);
  });

  it("a --tls-key file that is not PEM exits 2 naming the option", async () => {
    await refused(["--tls-cert", A.certPath, "--tls-key", notPem], /--tls-key/, /not-pem\.txt/, /is not PEM/);
  });

  it("a --tls-cert file that is not PEM, or a key of another certificate, exits 2 naming the option", async () => {
    await refused(["--tls-cert", notPem, "--tls-key", A.keyPath], /--tls-cert/, /not-pem\.txt/);
    await refused(["--tls-cert", A.certPath, "--tls-key", B.keyPath], /--tls-key/, /is not the key of --tls-cert/);
  });

  it("--tls-cert without --tls-key exits 2 naming the missing option", async () => {
    await refused(["--tls-cert", A.certPath], /missing --tls-key/);
  });

  it("re-reads the certificate on SIGHUP without dropping a stream; a bad file on SIGHUP keeps the old one and the process", async () => {
    const cert = join(dir, "hup.crt");
    const key = join(dir, "hup.key");
    copyFileSync(A.certPath, cert);
    copyFileSync(A.keyPath, key);
    const child = await startChildServer(["--tls-cert", cert, "--tls-key", key]);
    try {
      assert.equal(await servedFingerprint(child.port), A.fingerprint);
      const session = await h2Session(child.port, [A.cert, B.cert]);
      const st = h2Sse(session, "/sse?channel=hup");
      await st.ready();
      copyFileSync(B.certPath, cert);
      copyFileSync(B.keyPath, key);
      child.child.kill("SIGHUP");
      await waitFor(async () => (await servedFingerprint(child.port)) === B.fingerprint, 5000, "the new certificate served");
      assert.equal((await publishH2(session, "hup", "still here")).status, 200);
      assert.equal((await st.message("hup")).data, "still here");
      writeFileSync(cert, "garbage\n");
      child.child.kill("SIGHUP");
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(child.child.exitCode, null, "the process keeps running");
      assert.equal(await servedFingerprint(child.port), B.fingerprint);
      assert.equal((await publishH2(session, "hup", "after a bad reload")).status, 200);
      assert.equal((await st.message("hup")).data, "after a bad reload");
      session.destroy();
    } finally {
      await child.stop();
    }
  });
});
