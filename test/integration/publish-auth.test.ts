/**
 * A publish is refused on its headers: without a credential that could allow
 * it, the answer (401/403/415) comes before the body is sent, and the
 * connection closes instead of reading the rest.
 */
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { describe, it } from "node:test";
import { sign, nowSec } from "../helpers/auth.js";
import { getJson, publishHttp, waitFor, withServer } from "../helpers/server.js";

const SECRET = "publish-auth-secret-of-at-least-32-bytes!";

interface Exchange {
  socket: Socket;
  /** Everything received so far. */
  text(): string;
  closed: Promise<void>;
  isClosed(): boolean;
}

/**
 * Sends the head of a publish that announces a body of `length` bytes and
 * only the first bytes of it; the rest never comes.
 */
function startPublish(port: number, headers: Record<string, string>, length: number, allowHalfOpen = false): Exchange {
  const socket = connect({ port, host: "127.0.0.1", allowHalfOpen });
  let received = "";
  let closed = false;
  socket.setEncoding("latin1");
  socket.on("data", (d: string) => (received += d));
  socket.on("error", () => {});
  const done = new Promise<void>((r) => socket.once("close", () => ((closed = true), r())));
  let head = `POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  socket.write(head + "\r\n" + BODY_START);
  return { socket, text: () => received, closed: done, isClosed: () => closed };
}

const BODY_START = '{"channel":"early:1","data":"';
const BIG = 65536 + 4096; // --max-message-bytes + the envelope: the largest body accepted

async function assertRefusedEarly(port: number, headers: Record<string, string>, status: number, code: string): Promise<void> {
  const x = startPublish(port, headers, BIG);
  try {
    await waitFor(() => x.text().includes("\r\n\r\n") && x.text().includes("}}"), 2000, `the ${status} answer before the body`);
    assert.match(x.text(), new RegExp(`^HTTP/1\\.1 ${status} `), x.text());
    assert.match(x.text(), new RegExp(`"code":"${code}"`));
    assert.match(x.text(), /\r\nconnection: close\r\n/i);
    await waitFor(() => x.isClosed(), 2000, "the connection to close");
  } finally {
    x.socket.destroy();
  }
}

describe("publish credentials are checked before the body", () => {
  const keyed = withServer({ apiKey: "the-key" });
  const open = withServer({ trustProxy: true });
  const tokens = withServer({ jwtSecret: SECRET, apiKey: "the-key", clientPublish: ["chat:*"] });

  it("answers 401 at once to a publish without the API key, or with a wrong one, and closes", async () => {
    await assertRefusedEarly(keyed.port, {}, 401, "unauthorized");
    await assertRefusedEarly(keyed.port, { Authorization: "Bearer wrong" }, 401, "unauthorized");
  });

  it("answers 403 at once to a publish from a non-loopback client without --api-key, and closes", async () => {
    await assertRefusedEarly(open.port, { "X-Forwarded-For": "203.0.113.5" }, 403, "forbidden");
  });

  it("answers 401 at once to an invalid or expired token, before the channel is known", async () => {
    await assertRefusedEarly(tokens.port, { Authorization: "Bearer not.a.token" }, 401, "unauthorized");
    const expired = await sign({ sub: "u", exp: nowSec() - 10, publish: ["chat:*"] }, SECRET);
    await assertRefusedEarly(tokens.port, { Authorization: `Bearer ${expired}` }, 401, "token_expired");
  });

  it("lets a client that goes on sending its body read the refusal: no reset, the connection ends cleanly", async () => {
    // Like an HTTP client uploading a body, it keeps its side open after the server's FIN.
    const x = startPublish(keyed.port, {}, 1024 * 1024, true);
    let failed: Error | undefined;
    x.socket.on("error", (err) => (failed = err));
    try {
      await waitFor(() => x.text().includes("}}"), 2000, "the 401 answer before the body");
      assert.match(x.text(), /^HTTP\/1\.1 401 /);
      // The client has not read the answer's FIN yet and goes on sending: a closed socket would answer with a reset.
      for (let i = 0; i < 8; i++) {
        x.socket.write(Buffer.alloc(16 * 1024, "a"));
        await new Promise((r) => setTimeout(r, 10));
      }
      x.socket.end();
      await waitFor(() => x.isClosed(), 2000, "the connection to close");
      assert.equal(failed, undefined, `the client saw ${failed?.message}`);
    } finally {
      x.socket.destroy();
    }
  });

  it("still reads the body of an allowed publish, and of one whose channel decides", async () => {
    const x = startPublish(keyed.port, { Authorization: "Bearer the-key" }, BODY_START.length + 4);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(x.text(), "", "nothing is answered before the body");
    x.socket.write('hi"}');
    await waitFor(() => x.text().includes('"offset":1'), 2000, "the publish's answer");
    x.socket.destroy();
    // A token whose claims are checked against the channel: the body decides.
    const tok = await sign({ sub: "u", exp: nowSec() + 60, publish: ["chat:a"] }, SECRET);
    assert.equal((await publishHttp(tokens, "chat:a", 1, { Authorization: `Bearer ${tok}` })).status, 200);
    const denied = await publishHttp(tokens, "chat:b", 1, { Authorization: `Bearer ${tok}` });
    assert.equal(denied.status, 403);
    assert.equal((await getJson(`${tokens.url}/api/channels/chat:b`, { headers: { Authorization: "Bearer the-key" } })).body.offset, 0);
  });
});
