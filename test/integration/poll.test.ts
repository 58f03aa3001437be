import assert from "node:assert/strict";
import diagnostics from "node:diagnostics_channel";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { ManualClock, type Heartline } from "../../src/index.js";
import { channelKey, decodeCursor } from "../../src/hub/cursor.js";
import { pollRequest, RawConnection } from "../helpers/raw-connection.js";
import { getJson, startServer, waitFor, withServer } from "../helpers/server.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface PollAnswer {
  messages: Array<{ channel: string; offset: number; data: unknown }>;
  cursor: string;
  resets: Array<{ channel: string; epoch: string; offset: number }>;
}

/** GET /poll and check the SPEC §3 answer shape. */
async function poll(url: string, init?: RequestInit): Promise<PollAnswer> {
  const r = await getJson(url, init);
  assert.equal(r.status, 200, `${url} answered ${r.status} ${JSON.stringify(r.body)}`);
  assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
  assert.deepEqual(Object.keys(r.body).sort(), ["cursor", "messages", "presence", "resets"]);
  assert.ok(Array.isArray(r.body.messages));
  assert.ok(Array.isArray(r.body.resets), "resets is always present");
  assert.match(r.body.cursor, /^[A-Za-z0-9\-._~]+$/);
  return r.body as PollAnswer;
}

/** `promise`'s value, or undefined when it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Checks `pred` on every turn of the event loop (finer than waitFor) for up to `ms`. */
async function spinUntil(pred: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error("spinUntil timed out");
    await new Promise((r) => setImmediate(r));
  }
}

/** A poll that has not answered yet, and whether it has. */
function pending(url: string, init?: RequestInit): { answer: Promise<PollAnswer>; settled: () => boolean } {
  let done = false;
  const answer = poll(url, init).finally(() => {
    done = true;
  });
  answer.catch(() => {});
  return { answer, settled: () => done };
}

async function assertIdle(hl: Heartline): Promise<void> {
  await waitFor(() => hl.connections === 0 && hl.hub.totalWaiters === 0, 5000, "polls to be released");
  assert.deepEqual({ ...hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
  assert.equal(hl.hub.totalSubscriptions, 0);
}

describe("long polling", () => {
  const clock = new ManualClock();
  const s = withServer({ pollTimeout: 5, historySize: 3000 }, { clock });

  describe("answers", () => {
    it("answers at once without a cursor: no messages, the current position, empty resets", async () => {
      await s.hl.publish("now:1", "old-1");
      await s.hl.publish("now:1", "old-2");
      const r = await getJson(`${s.url}/poll?channel=now:1`);
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, { messages: [], cursor: r.body.cursor, resets: [], presence: [] });
      assert.equal(decodeCursor(r.body.cursor).get(channelKey("now:1"))?.offset, 2);
      // The position is "now": nothing older follows it, the next message does.
      assert.deepEqual((await poll(`${s.url}/poll?channel=now:1&cursor=${r.body.cursor}&timeout=0`)).messages, []);
      await s.hl.publish("now:1", "new-3");
      const next = await poll(`${s.url}/poll?channel=now:1&cursor=${r.body.cursor}`);
      assert.deepEqual(next.messages, [{ channel: "now:1", offset: 3, data: "new-3" }]);
      assert.deepEqual(next.resets, []);
      assert.equal(decodeCursor(next.cursor).get(channelKey("now:1"))?.offset, 3);
      await assertIdle(s.hl);
    });

    it("answers at once with what follows the cursor", async () => {
      const { cursor } = await poll(`${s.url}/poll?channel=ready:1`);
      for (let i = 1; i <= 3; i++) await s.hl.publish("ready:1", { i });
      const r = await poll(`${s.url}/poll?channel=ready:1&cursor=${cursor}`);
      assert.deepEqual(
        r.messages,
        [1, 2, 3].map((i) => ({ channel: "ready:1", offset: i, data: { i } })),
      );
      await assertIdle(s.hl);
    });

    it("answers timeout=0 at once even when nothing is new", async () => {
      const { cursor } = await poll(`${s.url}/poll?channel=zero:1`);
      const p = pending(`${s.url}/poll?channel=zero:1&cursor=${cursor}&timeout=0`);
      const r = await within(p.answer, 2000);
      assert.ok(r, "timeout=0 answered without time passing");
      assert.deepEqual(r, { messages: [], cursor, resets: [], presence: [] });
      await assertIdle(s.hl);
    });

    it("refuses an invalid timeout with 400 bad_request", async () => {
      const { cursor } = await poll(`${s.url}/poll?channel=badt:1`);
      for (const t of ["abc", "-1", "Infinity", "", "1e400"]) {
        const r = await getJson(`${s.url}/poll?channel=badt:1&cursor=${cursor}&timeout=${t}`);
        assert.equal(r.status, 400, `timeout=${t}`);
        assert.equal(r.body.error.code, "bad_request");
      }
      await assertIdle(s.hl);
    });

    it("refuses a poll without a channel (400 bad_request) or with a bad one (400 bad_channel)", async () => {
      const none = await getJson(`${s.url}/poll`);
      assert.equal(none.status, 400);
      assert.equal(none.body.error.code, "bad_request");
      const bad = await getJson(`${s.url}/poll?channel=no%20spaces`);
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, "bad_channel");
    });

    it("caps an answer at 1000 messages with the cursor at the last one given (2,500 → three polls)", async () => {
      const start = await poll(`${s.url}/poll?channel=cap:1`);
      for (let i = 1; i <= 2500; i++) await s.hl.publish("cap:1", i);
      let cursor = start.cursor;
      const sizes: number[] = [];
      const offsets: number[] = [];
      for (let round = 0; round < 3; round++) {
        const r = await poll(`${s.url}/poll?channel=cap:1&cursor=${cursor}`);
        sizes.push(r.messages.length);
        for (const m of r.messages) offsets.push(m.offset);
        assert.equal(decodeCursor(r.cursor).get(channelKey("cap:1"))?.offset, r.messages.at(-1)!.offset);
        cursor = r.cursor;
      }
      assert.deepEqual(sizes, [1000, 1000, 500]);
      assert.deepEqual(offsets, Array.from({ length: 2500 }, (_, i) => i + 1));
      const rest = await poll(`${s.url}/poll?channel=cap:1&cursor=${cursor}&timeout=0`);
      assert.deepEqual(rest.messages, []);
      await assertIdle(s.hl);
    });
  });

  describe("holding", () => {
    it("holds a poll with nothing new, counts it as a poll connection, and answers with the message published meanwhile", async () => {
      const { cursor } = await poll(`${s.url}/poll?channel=hold:1`);
      const p = pending(`${s.url}/poll?channel=hold:1&cursor=${cursor}`);
      await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to wait");
      assert.equal(s.hl.connections, 1);
      assert.equal(s.hl.hub.totalWaiters, 1);
      await sleep(50);
      assert.equal(p.settled(), false, "nothing new: the poll is held");
      await s.hl.publish("hold:1", { hello: "held" });
      const r = await p.answer;
      assert.deepEqual(r.messages, [{ channel: "hold:1", offset: 1, data: { hello: "held" } }]);
      assert.deepEqual(r.resets, []);
      await assertIdle(s.hl);
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      assert.match(metrics, /^heartline_poll_waits_total [1-9]\d*$/m);
    });

    it("ends a held poll after min(timeout, --poll-timeout) with no messages and the same position", async () => {
      const { cursor } = await poll(`${s.url}/poll?channel=late:1`);
      // [timeout parameter, expected hold in ms]: --poll-timeout is 5 s here.
      for (const [param, holdMs] of [
        ["&timeout=2", 2000],
        ["&timeout=60", 5000],
        ["", 5000],
        ["&timeout=0.5", 500],
      ] as const) {
        const p = pending(`${s.url}/poll?channel=late:1&cursor=${cursor}${param}`);
        await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to wait");
        clock.advance(holdMs - 250);
        await sleep(40);
        assert.equal(p.settled(), false, `still held 250 ms before the end of ${holdMs} ms (${param})`);
        assert.equal(s.hl.connectionsByTransport.poll, 1);
        clock.advance(250);
        const r = await p.answer;
        assert.deepEqual(r, { messages: [], cursor, resets: [], presence: [] });
        await assertIdle(s.hl);
      }
    });

    it("frees the slot of a held poll whose client goes away", async () => {
      const { cursor } = await poll(`${s.url}/poll?channel=gone:1`);
      const ac = new AbortController();
      const p = pending(`${s.url}/poll?channel=gone:1&cursor=${cursor}`, { signal: ac.signal });
      await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to wait");
      ac.abort();
      await assert.rejects(p.answer);
      await assertIdle(s.hl);
      // The next message is not lost: the same cursor still finds it.
      await s.hl.publish("gone:1", "after");
      const r = await poll(`${s.url}/poll?channel=gone:1&cursor=${cursor}`);
      assert.deepEqual(r.messages, [{ channel: "gone:1", offset: 1, data: "after" }]);
    });
  });

  describe("several channels", () => {
    it("holds on every channel of the request and keeps each channel's position in one cursor", async () => {
      const start = await poll(`${s.url}/poll?channel=mc:a&channel=mc:b`);
      const decoded = decodeCursor(start.cursor);
      assert.equal(decoded.size, 2);
      const p = pending(`${s.url}/poll?channel=mc:a&channel=mc:b&cursor=${start.cursor}`);
      await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to wait");
      await s.hl.publish("mc:b", "b1");
      const r1 = await p.answer;
      assert.deepEqual(r1.messages, [{ channel: "mc:b", offset: 1, data: "b1" }]);
      const c1 = decodeCursor(r1.cursor);
      assert.equal(c1.get(channelKey("mc:a"))?.offset, 0);
      assert.equal(c1.get(channelKey("mc:b"))?.offset, 1);
      await s.hl.publish("mc:a", "a1");
      await s.hl.publish("mc:b", "b2");
      await s.hl.publish("mc:a", "a2");
      const r2 = await poll(`${s.url}/poll?channel=mc:a&channel=mc:b&cursor=${r1.cursor}`);
      assert.deepEqual(r2.messages.filter((m) => m.channel === "mc:a").map((m) => m.data), ["a1", "a2"]);
      assert.deepEqual(r2.messages.filter((m) => m.channel === "mc:b").map((m) => m.data), ["b2"]);
      const c2 = decodeCursor(r2.cursor);
      assert.equal(c2.get(channelKey("mc:a"))?.offset, 2);
      assert.equal(c2.get(channelKey("mc:b"))?.offset, 2);
      await assertIdle(s.hl);
    });

    it("gives the position of a channel missing from the cursor at once, so it is followed from then on", async () => {
      const onlyA = await poll(`${s.url}/poll?channel=add:a`);
      await s.hl.publish("add:b", "before");
      const ac = new AbortController();
      const p = pending(`${s.url}/poll?channel=add:a&channel=add:b&cursor=${onlyA.cursor}`, { signal: ac.signal });
      const r = await within(p.answer, 2000);
      if (!r) ac.abort();
      assert.ok(r, "a poll with a channel missing from its cursor answers at once");
      assert.deepEqual(r.messages, []);
      assert.equal(decodeCursor(r.cursor).get(channelKey("add:b"))?.offset, 1);
      await s.hl.publish("add:b", "after");
      const next = await poll(`${s.url}/poll?channel=add:a&channel=add:b&cursor=${r.cursor}`);
      assert.deepEqual(next.messages, [{ channel: "add:b", offset: 2, data: "after" }]);
      await assertIdle(s.hl);
    });
  });

  describe("exactly once", () => {
    it("delivers 1,000 messages per channel exactly once and in order while polls are aborted mid-hold", async () => {
      const total = 1000;
      const channels = ["pe:a", "pe:b"];
      const q = channels.map((c) => `channel=${c}`).join("&");
      let cursor = (await poll(`${s.url}/poll?${q}`)).cursor;
      const got = new Map<string, number[]>(channels.map((c) => [c, []]));
      const publishing = (async () => {
        let i = 0;
        let bursts = 0;
        while (i < total) {
          const n = Math.min(total - i, 1 + Math.floor(Math.random() * 40));
          for (let k = 0; k < n; k++) {
            i++;
            for (const c of channels) await s.hl.publish(c, { i });
          }
          // Now and then let the poller catch up until its poll is held, so aborts land mid-hold.
          if (++bursts % 3 === 0 && i < total) await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "a held poll");
          await sleep(1);
        }
      })();
      let requests = 0;
      let abortedWhileHeld = 0;
      let abortedAnywhere = 0;
      const complete = () => channels.every((c) => got.get(c)!.length >= total);
      try {
        while (!complete()) {
          requests++;
          assert.ok(requests < 5000, "too many polls");
          const ac = new AbortController();
          const p = pending(`${s.url}/poll?${q}&cursor=${cursor}`, { signal: ac.signal });
          if (requests % 2 === 0 || abortedWhileHeld < 3) {
            await spinUntil(() => p.settled() || s.hl.connectionsByTransport.poll === 1);
            if (!p.settled()) {
              ac.abort();
              abortedWhileHeld++;
            }
          } else if (requests % 7 === 0) {
            // Cut at a random moment: before, during or after the server answers.
            setTimeout(() => ac.abort(), Math.random() * 3);
          }
          let r: PollAnswer;
          try {
            r = await p.answer;
          } catch {
            abortedAnywhere++;
            // The slot of an abandoned poll is given back; the cursor is unchanged.
            await waitFor(() => s.hl.connectionsByTransport.poll === 0, 5000, "the aborted poll to be released");
            continue;
          }
          assert.deepEqual(r.resets, []);
          for (const m of r.messages) got.get(m.channel)!.push(m.offset);
          cursor = r.cursor;
        }
      } finally {
        await publishing;
      }
      assert.ok(abortedWhileHeld >= 3, `aborted while held ${abortedWhileHeld} times (${abortedAnywhere} aborts, ${requests} polls)`);
      const expected = Array.from({ length: total }, (_, i) => i + 1);
      for (const c of channels) assert.deepEqual(got.get(c), expected, `offsets of ${c}`);
      await assertIdle(s.hl);
    });
  });
});

describe("long polling: answers shared by polls at the same cursor", () => {
  const s = withServer({ pollTimeout: 30 });

  it("gives polls woken by one message each the answer for its own cursor and channels", async () => {
    const now = await poll(`${s.url}/poll?channel=sh:x&channel=sh:y`);
    const onlyX = await poll(`${s.url}/poll?channel=sh:x`);
    const yx = await poll(`${s.url}/poll?channel=sh:y&channel=sh:x`);
    // Held: two at the same cursor on x alone, one on x and y, one on y and x (the other order).
    const a1 = pending(`${s.url}/poll?channel=sh:x&cursor=${onlyX.cursor}`);
    const a2 = pending(`${s.url}/poll?channel=sh:x&cursor=${onlyX.cursor}`);
    const b = pending(`${s.url}/poll?channel=sh:x&channel=sh:y&cursor=${now.cursor}`);
    const c = pending(`${s.url}/poll?channel=sh:y&channel=sh:x&cursor=${yx.cursor}`);
    await waitFor(() => s.hl.connectionsByTransport.poll === 4, 5000, "four polls to wait");
    const pub = await s.hl.publish("sh:x", { n: 1 });
    const [ra1, ra2, rb, rc] = await Promise.all([a1.answer, a2.answer, b.answer, c.answer]);
    for (const r of [ra1, ra2, rb, rc]) {
      assert.deepEqual(r.messages, [{ channel: "sh:x", offset: pub.offset, data: { n: 1 } }]);
      assert.deepEqual(r.resets, []);
    }
    assert.deepEqual(ra1, ra2, "the same cursor, the same answer");
    assert.equal(decodeCursor(ra1.cursor).size, 1);
    assert.equal(decodeCursor(ra1.cursor).get(channelKey("sh:x"))?.offset, pub.offset);
    for (const r of [rb, rc]) {
      const d = decodeCursor(r.cursor);
      assert.equal(d.size, 2);
      assert.equal(d.get(channelKey("sh:x"))?.offset, pub.offset);
      assert.equal(d.get(channelKey("sh:y"))?.offset, 0);
    }
    // Same positions, channels in the order each request named them.
    assert.notEqual(rb.cursor, rc.cursor);
    assert.ok(rb.cursor.indexOf(channelKey("sh:x")) < rb.cursor.indexOf(channelKey("sh:y")));
    assert.ok(rc.cursor.indexOf(channelKey("sh:y")) < rc.cursor.indexOf(channelKey("sh:x")));
    await assertIdle(s.hl);
  });

  it("answers a cursor again with what was stored since the last answer to it", async () => {
    const start = await poll(`${s.url}/poll?channel=sh:again`);
    await s.hl.publish("sh:again", 1);
    const first = await Promise.all([1, 2, 3].map(() => poll(`${s.url}/poll?channel=sh:again&cursor=${start.cursor}`)));
    for (const r of first) assert.deepEqual(r.messages.map((m) => m.data), [1]);
    await s.hl.publish("sh:again", 2);
    const second = await poll(`${s.url}/poll?channel=sh:again&cursor=${start.cursor}`);
    assert.deepEqual(second.messages.map((m) => m.data), [1, 2]);
    assert.equal(decodeCursor(second.cursor).get(channelKey("sh:again"))?.offset, 2);
  });

  it("holds woken polls through a burst so that it leaves in one answer", async () => {
    const start = await poll(`${s.url}/poll?channel=sh:burst`);
    const held = pending(`${s.url}/poll?channel=sh:burst&cursor=${start.cursor}`);
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to wait");
    // Published on successive turns, as a burst of requests arrives.
    for (let i = 1; i <= 3; i++) {
      await s.hl.publish("sh:burst", i);
      await new Promise((r) => setImmediate(r));
    }
    const r = await held.answer;
    assert.deepEqual(r.messages.map((m) => m.data), [1, 2, 3]);
  });
});

describe("long polling across servers", () => {
  const a = withServer();
  const b = withServer();

  it("answers a cursor from another Heartline (another epoch) with resets, then continues live there", async () => {
    const start = await poll(`${a.url}/poll?channel=x:1&channel=x:2`);
    for (let i = 1; i <= 3; i++) await a.hl.publish("x:1", i);
    const onA = await poll(`${a.url}/poll?channel=x:1&channel=x:2&cursor=${start.cursor}`);
    assert.equal(onA.messages.length, 3);
    await b.hl.publish("x:2", "b-only");
    await b.hl.publish("x:2", "b-only");
    const epochs = {
      a1: (await getJson(`${a.url}/api/channels/x:1`)).body.epoch,
      b1: (await getJson(`${b.url}/api/channels/x:1`)).body.epoch,
      b2: (await getJson(`${b.url}/api/channels/x:2`)).body.epoch,
    };
    assert.notEqual(epochs.a1, epochs.b1);
    const onB = await poll(`${b.url}/poll?channel=x:1&channel=x:2&cursor=${onA.cursor}`);
    assert.deepEqual(onB.messages, []);
    assert.deepEqual(onB.resets, [
      { channel: "x:1", epoch: epochs.b1, offset: 0 },
      { channel: "x:2", epoch: epochs.b2, offset: 2 },
    ]);
    await b.hl.publish("x:1", "first on b");
    const next = await poll(`${b.url}/poll?channel=x:1&channel=x:2&cursor=${onB.cursor}`);
    assert.deepEqual(next.messages, [{ channel: "x:1", offset: 1, data: "first on b" }]);
    assert.deepEqual(next.resets, []);
    await assertIdle(a.hl);
    await assertIdle(b.hl);
  });
});

describe("long polling with trimmed history", () => {
  const s = withServer({ historySize: 3 });

  it("lists a reset for a trimmed channel, applying before the messages of the same answer", async () => {
    const start = await poll(`${s.url}/poll?channel=tr:a&channel=tr:b`);
    for (let i = 1; i <= 5; i++) await s.hl.publish("tr:a", `a${i}`);
    await s.hl.publish("tr:b", "b1");
    await s.hl.publish("tr:b", "b2");
    const epochA = (await getJson(`${s.url}/api/channels/tr:a`)).body.epoch;
    const r = await poll(`${s.url}/poll?channel=tr:a&channel=tr:b&cursor=${start.cursor}`);
    assert.deepEqual(r.resets, [{ channel: "tr:a", epoch: epochA, offset: 5 }]);
    assert.deepEqual(r.messages, [
      { channel: "tr:b", offset: 1, data: "b1" },
      { channel: "tr:b", offset: 2, data: "b2" },
    ]);
    for (const reset of r.resets) {
      for (const m of r.messages) if (m.channel === reset.channel) assert.ok(m.offset > reset.offset);
    }
    assert.equal(decodeCursor(r.cursor).get(channelKey("tr:a"))?.offset, 5);
    await s.hl.publish("tr:a", "a6");
    const next = await poll(`${s.url}/poll?channel=tr:a&channel=tr:b&cursor=${r.cursor}`);
    assert.deepEqual(next.messages, [{ channel: "tr:a", offset: 6, data: "a6" }]);
    assert.deepEqual(next.resets, []);
    await assertIdle(s.hl);
  });
});

/** A `Date` header (RFC 9110 §6.6.1) within a few seconds of now, as node:http sends on its own answers. */
function assertDate(value: string | undefined): void {
  assert.ok(value, "a Date header");
  assert.match(value, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  assert.ok(Math.abs(Date.parse(value) - Date.now()) < 5000, value);
}


describe("long polling on a server made by listen(): polls are served on the bare socket", () => {
  /** Requests that went through node:http's request path (polls on the bare socket do not). */
  const viaResponse: Array<{ url: string; socket: net.Socket }> = [];
  const onRequest = (message: unknown) => {
    const { request, socket } = message as { request: { url: string }; socket: net.Socket };
    viaResponse.push({ url: request.url, socket });
  };
  // Registered before the server's own hook, so it runs before the server closes.
  after(() => diagnostics.unsubscribe("http.server.request.start", onRequest));
  const s = withServer({ pollTimeout: 30 });
  before(() => diagnostics.subscribe("http.server.request.start", onRequest));

  /** The position of `channel` now, as a cursor. */
  async function cursorOf(channel: string): Promise<string> {
    return (await poll(`${s.url}/poll?channel=${channel}`)).cursor;
  }

  it("answers in one piece with Content-Length (no chunking), then serves the next requests of the connection", async () => {
    viaResponse.length = 0;
    const c = new RawConnection(s.port);
    c.send(pollRequest("channel=bare:a"));
    const first = await c.next();
    assert.equal(first.status, 200);
    assert.match(first.head, /^HTTP\/1\.1 200 OK\r\nContent-Type: application\/json\r\nCache-Control: no-store\r\n/);
    assert.equal(first.headers.get("content-length"), String(Buffer.byteLength(first.body)));
    assert.equal(first.headers.has("transfer-encoding"), false);
    assert.equal(first.headers.get("connection"), "keep-alive");
    assertDate(first.headers.get("date"));
    const cursor = JSON.parse(first.body).cursor as string;
    // Held on the same connection, answered by a publish.
    c.send(pollRequest(`channel=bare:a&cursor=${cursor}`));
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    const pub = await s.hl.publish("bare:a", { n: 1 });
    const second = await c.next();
    assert.equal(second.status, 200);
    assert.equal(second.headers.has("transfer-encoding"), false);
    assert.deepEqual(JSON.parse(second.body).messages, [{ channel: "bare:a", offset: pub.offset, data: { n: 1 } }]);
    // Then a request that is not a poll, through node:http, on the same socket.
    c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    const third = await c.next();
    assert.equal(third.status, 200);
    assert.deepEqual(JSON.parse(third.body), { status: "ok" });
    // And a poll again after it.
    c.send(pollRequest(`channel=bare:a&cursor=${JSON.parse(second.body).cursor}&timeout=0`));
    const fourth = await c.next();
    assert.equal(fourth.status, 200);
    assert.deepEqual(JSON.parse(fourth.body).messages, []);
    assert.deepEqual(
      viaResponse.map((r) => r.url),
      ["/healthz"],
      "only /healthz went through node:http's response",
    );
    assert.equal(c.socket.destroyed, false, "the connection is still open");
    c.socket.end();
    await c.closed;
    await assertIdle(s.hl);
  });

  it("leaves no listener behind on a connection that carries many polls", async () => {
    viaResponse.length = 0;
    const c = new RawConnection(s.port);
    const counts = () => {
      const socket = viaResponse.at(-1)!.socket;
      return ["data", "end", "close", "error", "timeout", "drain"].map((e) => `${e}:${socket.listenerCount(e)}`).join(" ");
    };
    let cursor = await cursorOf("bare:many");
    // The first poll of a connection puts the poll handlers on it, once.
    c.send(pollRequest(`channel=bare:many&cursor=${cursor}&timeout=0`) + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    await c.next();
    await c.next();
    const before = counts();
    for (let i = 0; i < 30; i++) {
      c.send(pollRequest(`channel=bare:many&cursor=${cursor}`));
      await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
      await s.hl.publish("bare:many", i);
      const a = await c.next();
      cursor = JSON.parse(a.body).cursor;
    }
    c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    await c.next();
    assert.equal(viaResponse.length, 2);
    assert.equal(viaResponse[0]!.socket, viaResponse[1]!.socket, "one connection throughout");
    assert.equal(counts(), before);
    c.socket.destroy();
    await assertIdle(s.hl);
  });

  it("serves a request pipelined during the hold after the poll's answer", async () => {
    const cursor = await cursorOf("bare:pipe");
    const c = new RawConnection(s.port);
    c.send(pollRequest(`channel=bare:pipe&cursor=${cursor}`) + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    c.send("GET /api/channels/bare:pipe HTTP/1.1\r\nHost: x\r\n\r\n");
    await sleep(50);
    assert.equal(c.unread, "", "nothing is answered while the poll is held");
    await s.hl.publish("bare:pipe", "m");
    const a = await c.next();
    assert.deepEqual(JSON.parse(a.body).messages, [{ channel: "bare:pipe", offset: 1, data: "m" }]);
    assert.deepEqual(JSON.parse((await c.next()).body), { status: "ok" });
    assert.equal(JSON.parse((await c.next()).body).offset, 1);
    c.socket.end();
    await c.closed;
    await assertIdle(s.hl);
  });

  it("leaves a poll that announces a body to node:http, which reads the body", async () => {
    viaResponse.length = 0;
    const c = new RawConnection(s.port);
    c.send(pollRequest("channel=bare:body", "Content-Length: 23\r\n") + "GET /healthz HTTP/1.1\r\n" + pollRequest("channel=bare:body"));
    const a = await c.next();
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.body).messages, []);
    const b = await c.next();
    assert.equal(b.status, 200);
    assert.deepEqual(JSON.parse(b.body).messages, [], "the body was not taken for a request");
    assert.deepEqual(
      viaResponse.map((r) => r.url),
      ["/poll?channel=bare:body"],
    );
    c.socket.destroy();
    await assertIdle(s.hl);
  });

  it("ends the connection after the answer on Connection: close, and for HTTP/1.0", async () => {
    const c = new RawConnection(s.port);
    c.send(pollRequest("channel=bare:close", "Connection: close\r\n"));
    const a = await c.next();
    assert.equal(a.status, 200);
    assert.equal(a.headers.get("connection"), "close");
    await c.closed;
    const old = new RawConnection(s.port);
    old.send("GET /poll?channel=bare:close HTTP/1.0\r\n\r\n");
    assert.equal((await old.next()).status, 200);
    await old.closed;
    // HTTP/1.0 asking for keep-alive keeps it.
    const kept = new RawConnection(s.port);
    kept.send("GET /poll?channel=bare:close HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert.equal((await kept.next()).headers.get("connection"), "keep-alive");
    kept.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert.equal((await kept.next()).status, 200);
    kept.socket.destroy();
    await assertIdle(s.hl);
  });

  it("frees the slot when the client ends its side, or vanishes, during the hold", async () => {
    const cursor = await cursorOf("bare:gone");
    const half = new RawConnection(s.port);
    half.send(pollRequest(`channel=bare:gone&cursor=${cursor}`));
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    half.socket.end();
    await half.closed;
    await assertIdle(s.hl);
    const gone = new RawConnection(s.port);
    gone.send(pollRequest(`channel=bare:gone&cursor=${cursor}`) + "GET /heal");
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    gone.socket.destroy();
    await assertIdle(s.hl);
    // The channel still works for others.
    await s.hl.publish("bare:gone", 1);
    assert.equal((await poll(`${s.url}/poll?channel=bare:gone&cursor=${cursor}`)).messages.length, 1);
    await assertIdle(s.hl);
  });

  it("keeps hostile bytes sent during the hold for node:http, which refuses them after the answer", async () => {
    const cursor = await cursorOf("bare:junk");
    const c = new RawConnection(s.port);
    c.send(pollRequest(`channel=bare:junk&cursor=${cursor}`));
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    c.send("\x00\x01 NOT HTTP \xff\r\n\r\n");
    // More than the socket keeps during a hold: the rest waits in TCP.
    c.send("X".repeat(100_000));
    await sleep(50);
    assert.equal(s.hl.connectionsByTransport.poll, 1, "still held");
    await s.hl.publish("bare:junk", "j");
    const a = await c.next();
    assert.deepEqual(JSON.parse(a.body).messages, [{ channel: "bare:junk", offset: 1, data: "j" }]);
    const refused = await c.next();
    assert.equal(refused.status, 400);
    await c.closed;
    await assertIdle(s.hl);
    assert.equal((await getJson(`${s.url}/healthz`)).status, 200, "the server is still up");
  });

  it("answers the checks' errors on the socket, with the CORS headers, and closes", async () => {
    for (const [query, code] of [
      ["channel=bare:e&cursor=%%%", "bad_cursor"],
      ["channel=bad%20name", "bad_channel"],
      ["cursor=1", "bad_request"],
      ["channel=bare:e&timeout=-1", "bad_request"],
    ] as const) {
      const c = new RawConnection(s.port);
      c.send(pollRequest(query, "Origin: http://elsewhere.example\r\n"));
      const a = await c.next();
      assert.equal(a.status, 400, query);
      assert.equal(a.headers.get("access-control-allow-origin"), "*");
      assertDate(a.headers.get("date"));
      assert.equal(JSON.parse(a.body).error.code, code, query);
      await c.closed;
    }
    await assertIdle(s.hl);
  });

  it("answers an expired hold through the ticker and keeps the connection", async () => {
    const cursor = await cursorOf("bare:late");
    const c = new RawConnection(s.port);
    c.send(pollRequest(`channel=bare:late&cursor=${cursor}&timeout=0.3`));
    const a = await c.next();
    assert.deepEqual(JSON.parse(a.body), { messages: [], cursor, resets: [], presence: [] });
    c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal((await c.next()).status, 200);
    c.socket.destroy();
    await assertIdle(s.hl);
  });
});

describe("long polling on the bare socket while draining", () => {
  it("answers a held poll and ends its connection", async () => {
    const s = await startServer({ pollTimeout: 30 });
    const cursor = (await poll(`${s.url}/poll?channel=drain:a`)).cursor;
    const c = new RawConnection(s.port);
    c.send(pollRequest(`channel=drain:a&cursor=${cursor}`));
    await waitFor(() => s.hl.connectionsByTransport.poll === 1, 5000, "the poll to be held");
    const closing = s.hl.close(5);
    const a = await c.next();
    assert.equal(a.status, 200);
    assert.equal(a.headers.get("connection"), "close");
    assert.deepEqual(JSON.parse(a.body).messages, []);
    await c.closed;
    await closing;
    assert.equal(s.hl.connections, 0);
  });
});

describe("a connection handed back after a poll", () => {
  it("is closed quietly when idle, before node:http's headersTimeout would answer 408", async () => {
    const s = await startServer({}, { headersTimeoutMs: 500 });
    try {
      const c = new RawConnection(s.port);
      c.send(pollRequest("channel=idle:a"));
      assert.equal((await c.next()).status, 200);
      await c.closed;
      assert.equal(c.unread, "", "nothing was written after the answer");
    } finally {
      await s.close();
    }
  });
});
