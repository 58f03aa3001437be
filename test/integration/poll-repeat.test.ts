/**
 * A long poll repeated on its kept-alive connection with a new cursor (the
 * same request otherwise, byte for byte) is served with the admission of the
 * first; anything that differs, and every odd or hostile repeat, is answered
 * as on a fresh connection; a token that has expired or been revoked since
 * the first is refused on the repeat.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sign } from "../helpers/auth.js";
import { answerTo, pollRequest, RawConnection } from "../helpers/raw-connection.js";
import { waitFor, withServer } from "../helpers/server.js";

const ORIGIN = "Origin: http://allowed.test\r\n";

/** Polls served as repeats so far (`heartline_poll_repeats_total`). */
async function repeats(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^heartline_poll_repeats_total (\d+)$/m.exec(text)?.[1] ?? NaN);
}

/** A connection that has polled `channel` twice (the second time with a cursor): its next poll may be a repeat. Resolves with the cursor to go on from. */
async function twice(port: number, channel: string, extra = ORIGIN): Promise<{ c: RawConnection; cursor: string }> {
  const c = new RawConnection(port);
  c.send(pollRequest(`channel=${channel}&timeout=0`, extra));
  const first = await c.next();
  assert.equal(first.status, 200);
  const cursor = (JSON.parse(first.body) as { cursor: string }).cursor;
  c.send(pollRequest(`channel=${channel}&cursor=${cursor}&timeout=0`, extra));
  const second = await c.next();
  assert.equal(second.status, 200, second.body);
  return { c, cursor: (JSON.parse(second.body) as { cursor: string }).cursor };
}

describe("a long poll repeated on its connection", () => {
  const s = withServer({ pollTimeout: 30, allowedOrigins: ["http://allowed.test"] });

  it("gets every message after each new cursor, in order, held or at once", async () => {
    const { c, cursor: start } = await twice(s.port, "public:rep");
    const before = await repeats(s.url);
    let cursor = start;
    const seen: unknown[] = [];
    for (let i = 0; i < 30; i++) {
      if (i % 3 === 0) {
        // Something is there before the poll: answered at once.
        await s.hl.publish("public:rep", `a${i}`);
        await s.hl.publish("public:rep", `b${i}`);
      }
      c.send(pollRequest(`channel=public:rep&cursor=${cursor}`, ORIGIN));
      if (i % 3 !== 0) {
        await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
        await s.hl.publish("public:rep", `h${i}`);
      }
      const a = await c.next();
      assert.equal(a.status, 200);
      assert.equal(a.headers.get("access-control-allow-origin"), "http://allowed.test");
      const body = JSON.parse(a.body) as { cursor: string; messages: Array<{ data: unknown }> };
      seen.push(...body.messages.map((m) => m.data));
      cursor = body.cursor;
    }
    const expected: unknown[] = [];
    for (let i = 0; i < 30; i++) expected.push(...(i % 3 === 0 ? [`a${i}`, `b${i}`] : [`h${i}`]));
    assert.deepEqual(seen, expected);
    // The first poll of the loop drops `timeout=0`: admitted anew, then repeated 29 times.
    assert.equal((await repeats(s.url)) - before, 29, "each poll after the first of the loop was served as a repeat");
    c.socket.destroy();
  });

  it("is admitted anew when anything but the cursor differs: an Origin not allowed, another channel, another header", async () => {
    const { c, cursor } = await twice(s.port, "public:diff");
    const before = await repeats(s.url);
    assert.equal(await answerTo(c, pollRequest(`channel=public:diff&cursor=${cursor}&timeout=0`, "Origin: http://evil.test\r\n")), "403 origin_not_allowed");
    const d = await twice(s.port, "public:diff");
    await s.hl.publish("public:other", "other");
    d.c.send(pollRequest(`channel=public:other&cursor=${d.cursor}&timeout=0`, ORIGIN));
    const other = JSON.parse((await d.c.next()).body) as { messages: unknown[] };
    assert.deepEqual(other.messages, [], "a channel the cursor does not name starts live");
    // One more header field: admitted anew, answered.
    d.c.send(pollRequest(`channel=public:other&cursor=${d.cursor}&timeout=0`, ORIGIN + "X-Extra: 1\r\n"));
    assert.equal((await d.c.next()).status, 200);
    assert.equal(await repeats(s.url), before, "none of them was a repeat");
    d.c.socket.destroy();
  });

  it("answers an odd or hostile repeat as a fresh connection does, and the server goes on", async () => {
    const odd: Array<[string, string]> = [
      ["a malformed cursor of cursor characters", "1~zz"],
      ["a cursor of an unknown version", "9~abc.e.1"],
      ["an offset past the safe integers", "1~abc.e.99999999999999999"],
      ["a cursor past its length limit", "1" + "~abc.e.1".repeat(5000)],
      ["a percent-encoded cursor", "1%7Eabc.e.1"],
      ["a cursor with a space", "1+~abc.e.1"],
      ["an empty cursor", ""],
    ];
    for (const [what, bad] of odd) {
      const request = (cursor: string) => pollRequest(`channel=public:odd&cursor=${cursor}&timeout=0`, ORIGIN);
      const fresh = await answerTo(new RawConnection(s.port), request(bad));
      const { c } = await twice(s.port, "public:odd");
      assert.equal(await answerTo(c, request(bad)), fresh, what);
      c.socket.destroy();
    }
    // Two cursor parameters, or a lastEventId, are read by the whole admission as on a fresh connection.
    for (const extra of ["&cursor=1~zz", "&lastEventId=1~zz"]) {
      const { c, cursor } = await twice(s.port, "public:odd");
      const request = pollRequest(`channel=public:odd&cursor=${cursor}&timeout=0${extra}`, ORIGIN);
      assert.equal(await answerTo(c, request), await answerTo(new RawConnection(s.port), request), extra);
      c.socket.destroy();
    }
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
    await waitFor(() => s.hl.connectionsByTransport.poll === 0, 5000, "no poll left held");
  });

  it("answers repeats sent back to back in one write, in order", async () => {
    const { c, cursor } = await twice(s.port, "public:pipe");
    await s.hl.publish("public:pipe", "one");
    c.send(pollRequest(`channel=public:pipe&cursor=${cursor}&timeout=0`, ORIGIN).repeat(3));
    for (let i = 0; i < 3; i++) {
      const a = await c.next();
      assert.equal(a.status, 200);
      assert.deepEqual((JSON.parse(a.body) as { messages: Array<{ data: unknown }> }).messages.map((m) => m.data), ["one"]);
    }
    c.socket.destroy();
  });
});

describe("a long poll repeated on its connection, on a server with tokens", () => {
  const SECRET = "poll-repeat-secret-of-at-least-32-bytes!";
  /** The wall clock tokens are checked against (moved by the tests). */
  let wall = Date.now();
  const s = withServer({ pollTimeout: 30, jwtSecret: SECRET }, { wallClock: () => wall });
  const sec = () => Math.floor(wall / 1000);

  it("is served while its token holds, and refused once it has expired", async () => {
    const token = await sign({ sub: "tess", iat: sec() - 10, exp: sec() + 60, channels: ["room:*"] }, SECRET);
    const { c, cursor } = await twice(s.port, `room:e&token=${token}`, "");
    const poll = (cur: string) => pollRequest(`channel=room:e&token=${token}&cursor=${cur}&timeout=0`);
    await s.hl.publish("room:e", "one");
    const before = await repeats(s.url);
    c.send(poll(cursor));
    const a = await c.next();
    assert.equal(a.status, 200);
    const body = JSON.parse(a.body) as { cursor: string; messages: Array<{ data: unknown }> };
    assert.deepEqual(body.messages.map((m) => m.data), ["one"]);
    assert.equal((await repeats(s.url)) - before, 1, "a poll with a token is repeated while the token holds");
    wall += 61_000;
    assert.equal(await answerTo(c, poll(body.cursor)), "401 token_expired");
  });

  it("is admitted anew: a token revoked between two polls is refused on the next", async () => {
    const token = await sign({ sub: "rita", iat: sec() - 120, exp: sec() + 600, channels: ["room:*"] }, SECRET);
    const { c, cursor } = await twice(s.port, `room:a&token=${token}`, "");
    await s.hl.revoke("rita", sec() - 60);
    assert.equal(await answerTo(c, pollRequest(`channel=room:a&token=${token}&cursor=${cursor}&timeout=0`)), "401 token_revoked");
  });

  it("keeps the channels its token allows: a repeat that asks for another is admitted anew and refused", async () => {
    const token = await sign({ sub: "uma", iat: sec() - 10, exp: sec() + 600, channels: ["room:a"] }, SECRET);
    const { c, cursor } = await twice(s.port, `room:a&token=${token}`, "");
    assert.equal(await answerTo(c, pollRequest(`channel=room:b&token=${token}&cursor=${cursor}&timeout=0`)), "403 forbidden");
  });
});
