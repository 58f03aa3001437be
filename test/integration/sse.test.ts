import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { EventSource, type FetchLike } from "eventsource";
import type { Heartline } from "../../src/index.js";
import { channelKey, decodeCursor } from "../../src/hub/cursor.js";
import { getJson, waitFor, withServer } from "../helpers/server.js";
import { isMessage, isPosition, SseStream, type SseEvent } from "../helpers/sse.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


async function assertIdle(hl: Heartline): Promise<void> {
  await waitFor(() => hl.connections === 0 && hl.hub.totalSubscriptions === 0, 5000, "connections to close");
  assert.deepEqual({ ...hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
  assert.equal(hl.hub.totalWaiters, 0);
}

describe("SSE transport", () => {
  const s = withServer();

  describe("stream format", () => {
    it("answers text/event-stream, opens with a retry: line of 1000–5000 ms, then the position as a named event with an id", async () => {
      const stream = await SseStream.open(`${s.url}/sse?channel=fmt:open`);
      try {
        assert.match(stream.res.headers.get("content-type") ?? "", /^text\/event-stream/);
        assert.match(stream.res.headers.get("cache-control") ?? "", /no-cache/);
        const pos = await stream.next(isPosition);
        const m = /^retry: (\d+)\n\n/.exec(stream.text);
        assert.ok(m, `the stream starts with a retry: line, got ${JSON.stringify(stream.text.slice(0, 40))}`);
        const retry = Number(m[1]);
        assert.ok(retry >= 1000 && retry <= 5000, `retry ${retry} within 1000–5000`);
        assert.equal(stream.text, `retry: ${retry}\n\nevent: position\nid: ${pos.id}\ndata: {}\n\n`);
        const decoded = decodeCursor(pos.id);
        assert.equal(decoded.get(channelKey("fmt:open"))?.offset, 0);
        assert.equal(s.hl.connectionsByTransport.sse, 1);
      } finally {
        stream.close();
      }
      await assertIdle(s.hl);
    });

    it("sends each message as id: <cursor> plus an unnamed event whose data is exactly the message object", async () => {
      const stream = await SseStream.open(`${s.url}/sse?channel=fmt:msg`);
      try {
        await stream.next(isPosition);
        const payloads: unknown[] = [{ x: [1, "two", null] }, "text", 42, null, [true, { deep: { er: 1 } }]];
        for (const data of payloads) await s.hl.publish("fmt:msg", data);
        for (let i = 0; i < payloads.length; i++) {
          const ev = await stream.next(isMessage);
          const expected = JSON.stringify({ channel: "fmt:msg", offset: i + 1, data: payloads[i] });
          assert.equal(ev.data, expected);
          assert.equal(ev.raw, `id: ${ev.id}\ndata: ${expected}\n\n`);
          assert.equal(decodeCursor(ev.id).get(channelKey("fmt:msg"))?.offset, i + 1);
        }
        assert.ok(!stream.events.some((e) => e.event !== undefined && e.event !== "position"), "no named events but the position on a plain stream");
      } finally {
        stream.close();
      }
      await assertIdle(s.hl);
    });

    it("works with the eventsource package: onmessage gets the message object and a reconnect resumes through Last-Event-ID", async () => {
      const lastEventIds: Array<string | null> = [];
      let cut: (() => Promise<void>) | undefined;
      // A fetch that records each request's Last-Event-ID and lets the test end the stream, as a proxy would.
      const cuttableFetch: FetchLike = async (url, init) => {
        lastEventIds.push(new Headers(init.headers as Record<string, string>).get("last-event-id"));
        const res = await fetch(url, init as RequestInit);
        const reader = res.body!.getReader();
        cut = () => reader.cancel();
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            try {
              const { done, value } = await reader.read();
              if (done) controller.close();
              else controller.enqueue(value);
            } catch (err) {
              controller.error(err);
            }
          },
          cancel: (reason) => reader.cancel(reason),
        });
        return new Response(body, { status: res.status, headers: res.headers });
      };
      const received: Array<{ data: unknown; lastEventId: string }> = [];
      const es = new EventSource(`${s.url}/sse?channel=es:1`, { fetch: cuttableFetch });
      es.onmessage = (e) => received.push({ data: JSON.parse(e.data as string), lastEventId: e.lastEventId });
      try {
        await waitFor(() => es.readyState === es.OPEN && s.hl.connectionsByTransport.sse === 1, 5000, "EventSource open");
        await waitFor(() => s.hl.hub.subscriberCount("es:1") === 1 && s.hl.hub.totalSubscriptions === 1);
        for (let i = 1; i <= 3; i++) await s.hl.publish("es:1", { i });
        await waitFor(() => received.length === 3, 5000, "3 messages");
        assert.deepEqual(
          received.map((r) => r.data),
          [1, 2, 3].map((i) => ({ channel: "es:1", offset: i, data: { i } })),
        );
        for (const r of received) assert.match(r.lastEventId, /^1~/);
        const resumeFrom = received[2]!.lastEventId;

        await cut!();
        await waitFor(() => s.hl.connectionsByTransport.sse === 0, 5000, "the cut stream to be released");
        for (let i = 4; i <= 5; i++) await s.hl.publish("es:1", { i });
        await waitFor(() => received.length === 5, 8000, "messages after the reconnect");
        assert.deepEqual(
          received.map((r) => (r.data as { offset: number }).offset),
          [1, 2, 3, 4, 5],
        );
        assert.deepEqual(lastEventIds, [null, resumeFrom]);
        assert.equal(s.hl.connectionsByTransport.sse, 1);
      } finally {
        es.close();
      }
      await assertIdle(s.hl);
    });
  });

  describe("resume", () => {
    /** Publishes five messages on `channel` and returns the SSE id given with offset 2. */
    async function cursorAtTwo(channel: string): Promise<string> {
      const stream = await SseStream.open(`${s.url}/sse?channel=${channel}`);
      try {
        await stream.next(isPosition);
        for (let i = 1; i <= 5; i++) await s.hl.publish(channel, { i });
        await stream.next(isMessage);
        return (await stream.next(isMessage)).id!;
      } finally {
        stream.close();
      }
    }

    it("replays after the Last-Event-ID header, then goes live, without gap or duplicate", async () => {
      const id = await cursorAtTwo("res:hdr");
      const stream = await SseStream.open(`${s.url}/sse?channel=res:hdr`, { "Last-Event-ID": id });
      try {
        await stream.next(isPosition);
        assert.deepEqual(stream.messages().map((m) => m.offset), [3, 4, 5]);
        await s.hl.publish("res:hdr", { i: 6 });
        await stream.next((e) => isMessage(e) && JSON.parse(e.data!).offset === 6);
        assert.deepEqual(stream.messages().map((m) => m.offset), [3, 4, 5, 6]);
        assert.ok(!stream.events.some((e) => e.event === "reset"));
      } finally {
        stream.close();
      }
      await assertIdle(s.hl);
    });

    it("replays after the lastEventId query parameter", async () => {
      const id = await cursorAtTwo("res:query");
      const stream = await SseStream.open(`${s.url}/sse?channel=res:query&lastEventId=${id}`);
      try {
        await stream.next(isPosition);
        assert.deepEqual(stream.messages().map((m) => m.offset), [3, 4, 5]);
        assert.deepEqual(stream.messages()[0], { channel: "res:query", offset: 3, data: { i: 3 } });
      } finally {
        stream.close();
      }
      await assertIdle(s.hl);
    });

    it("prefers the Last-Event-ID header when the query parameter is given too", async () => {
      const id = await cursorAtTwo("res:both");
      const older = `1~${channelKey("res:both")}.${decodeCursor(id).get(channelKey("res:both"))!.epoch}.0`;
      const stream = await SseStream.open(`${s.url}/sse?channel=res:both&lastEventId=${older}`, { "Last-Event-ID": id });
      try {
        await stream.next(isPosition);
        assert.deepEqual(stream.messages().map((m) => m.offset), [3, 4, 5]);
      } finally {
        stream.close();
      }
      // And the query alone does replay from 0: the difference above came from the header.
      const q = await SseStream.open(`${s.url}/sse?channel=res:both&lastEventId=${older}`);
      try {
        await q.next(isPosition);
        assert.deepEqual(q.messages().map((m) => m.offset), [1, 2, 3, 4, 5]);
      } finally {
        q.close();
      }
      await assertIdle(s.hl);
    });

    it("carries the position of every channel in one cursor and resumes each of them", async () => {
      const stream = await SseStream.open(`${s.url}/sse?channel=multi:a&channel=multi:b`);
      let id: string;
      try {
        const pos = await stream.next(isPosition);
        const start = decodeCursor(pos.id);
        assert.equal(start.size, 2);
        assert.equal(start.get(channelKey("multi:a"))?.offset, 0);
        assert.equal(start.get(channelKey("multi:b"))?.offset, 0);
        await s.hl.publish("multi:a", "a1");
        await s.hl.publish("multi:b", "b1");
        await s.hl.publish("multi:a", "a2");
        await stream.next(isMessage);
        await stream.next(isMessage);
        const last = await stream.next(isMessage);
        assert.deepEqual(JSON.parse(last.data!), { channel: "multi:a", offset: 2, data: "a2" });
        const decoded = decodeCursor(last.id);
        assert.equal(decoded.get(channelKey("multi:a"))?.offset, 2);
        assert.equal(decoded.get(channelKey("multi:b"))?.offset, 1);
        id = last.id!;
      } finally {
        stream.close();
      }
      await s.hl.publish("multi:b", "b2");
      await s.hl.publish("multi:a", "a3");
      await s.hl.publish("multi:b", "b3");
      const resumed = await SseStream.open(`${s.url}/sse?channel=multi:a&channel=multi:b`, { "Last-Event-ID": id });
      try {
        await resumed.next(isPosition);
        const got = resumed.messages();
        assert.deepEqual(got.filter((m) => m.channel === "multi:a").map((m) => m.data), ["a3"]);
        assert.deepEqual(got.filter((m) => m.channel === "multi:b").map((m) => m.data), ["b2", "b3"]);
      } finally {
        resumed.close();
      }
      await assertIdle(s.hl);
    });

    it("announces an unknown epoch with event: reset carrying the channel's epoch and latest offset, then goes live", async () => {
      for (let i = 1; i <= 4; i++) await s.hl.publish("reset:epoch", { i });
      const info = await getJson(`${s.url}/api/channels/reset:epoch`);
      const stale = `1~${channelKey("reset:epoch")}.gone${"x".repeat(4)}.2`;
      const stream = await SseStream.open(`${s.url}/sse?channel=reset:epoch`, { "Last-Event-ID": stale });
      try {
        const reset = await stream.next((e) => e.event === "reset");
        assert.equal(reset.data, JSON.stringify({ channel: "reset:epoch", epoch: info.body.epoch, offset: 4 }));
        assert.equal(decodeCursor(reset.id).get(channelKey("reset:epoch"))?.epoch, info.body.epoch);
        assert.equal(stream.messages().length, 0);
        await s.hl.publish("reset:epoch", { i: 5 });
        const m = await stream.next(isMessage);
        assert.deepEqual(JSON.parse(m.data!), { channel: "reset:epoch", offset: 5, data: { i: 5 } });
      } finally {
        stream.close();
      }
      await assertIdle(s.hl);
    });
  });

  describe("exactly once", () => {
    it("delivers 1,000 messages per channel exactly once and in order while the stream is cut and resumed many times", async () => {
      const total = 1000;
      const channels = ["once:a", "once:b"];
      const got = new Map<string, number[]>(channels.map((c) => [c, []]));
      const resets: SseEvent[] = [];
      // The first stream only learns the starting position; everything after it must arrive.
      const initial = await SseStream.open(`${s.url}/sse?${channels.map((c) => `channel=${c}`).join("&")}`);
      let lastId: string | undefined = (await initial.next(isPosition)).id;
      initial.close();
      let publishedAll = false;
      const publishing = (async () => {
        for (let i = 1; i <= total; i++) {
          for (const c of channels) await s.hl.publish(c, { i });
          if (i % 10 === 0) await sleep(1);
        }
        publishedAll = true;
      })();
      const complete = () => channels.every((c) => got.get(c)!.length >= total);
      let connections = 0;
      try {
        while (!complete()) {
          connections++;
          assert.ok(connections < 200, "too many reconnections");
          // Budgets: cut once right after the setup, then after a few dozen messages, then stay.
          const budget = connections === 1 ? 0 : connections <= 9 ? 20 + Math.floor(Math.random() * 120) : Infinity;
          const viaHeader = connections % 2 === 0;
          const q = !viaHeader ? `&lastEventId=${lastId}` : "";
          let n = 0;
          const stream = await SseStream.open(
            `${s.url}/sse?${channels.map((c) => `channel=${c}`).join("&")}${q}`,
            viaHeader ? { "Last-Event-ID": lastId! } : {},
            (ev, st) => {
              if (ev.id !== undefined) lastId = ev.id;
              if (ev.event === "reset") resets.push(ev);
              if (isMessage(ev)) {
                const m = JSON.parse(ev.data!) as { channel: string; offset: number };
                got.get(m.channel)!.push(m.offset);
                n++;
              }
              if (n >= budget || complete()) st.close();
            },
          );
          let timer: NodeJS.Timeout | undefined;
          const deadline = new Promise<string>((r) => (timer = setTimeout(() => r("timeout"), 10_000)));
          const r = await Promise.race([stream.ended.then(() => "ended"), deadline]);
          clearTimeout(timer);
          stream.close();
          if (r === "timeout") {
            const counts = channels.map((c) => `${c}: ${got.get(c)!.length}`).join(", ");
            assert.fail(`stalled after ${connections} streams (published all: ${publishedAll}; received ${counts}; last id ${lastId})`);
          }
        }
      } finally {
        await publishing;
      }
      assert.ok(connections >= 8, `the stream was cut ${connections} times`);
      assert.deepEqual(resets, []);
      const expected = Array.from({ length: total }, (_, i) => i + 1);
      for (const c of channels) assert.deepEqual(got.get(c), expected, `offsets of ${c}`);
      await assertIdle(s.hl);
    });
  });

  describe("bad requests", () => {
    it("refuses a malformed lastEventId (query or header) with 400 bad_cursor as JSON", async () => {
      for (const [path, headers] of [
        ["/sse?channel=bad:c&lastEventId=nonsense", {}],
        ["/sse?channel=bad:c&lastEventId=1~x.y", {}],
        ["/sse?channel=bad:c", { "Last-Event-ID": "2~abc.def.1" }],
        ["/sse?channel=bad:c", { "Last-Event-ID": "1~abc.def.-1" }],
      ] as const) {
        const r = await getJson(`${s.url}${path}`, { headers });
        assert.equal(r.status, 400, path);
        assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
        assert.equal(r.body.error.code, "bad_cursor");
        assert.equal(typeof r.body.error.message, "string");
      }
      await assertIdle(s.hl);
    });

    it("refuses a stream without a channel with 400 bad_request", async () => {
      const r = await getJson(`${s.url}/sse`);
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, "bad_request");
      await assertIdle(s.hl);
    });

    it("refuses an invalid channel name with 400 bad_channel", async () => {
      for (const name of ["has space", "x".repeat(256), "caf%C3%A9", ""]) {
        const r = await getJson(`${s.url}/sse?channel=ok:1&channel=${name.replace(/ /g, "%20")}`);
        assert.equal(r.status, 400, JSON.stringify(name));
        assert.equal(r.body.error.code, "bad_channel");
      }
      await assertIdle(s.hl);
    });
  });
});

describe("SSE transport with trimmed history", () => {
  const s = withServer({ historySize: 3 });

  it("announces a trimmed position with event: reset, then delivers what follows", async () => {
    const first = await SseStream.open(`${s.url}/sse?channel=trim:1`);
    let id: string;
    try {
      await first.next(isPosition);
      await s.hl.publish("trim:1", { i: 1 });
      id = (await first.next(isMessage)).id!;
    } finally {
      first.close();
    }
    for (let i = 2; i <= 10; i++) await s.hl.publish("trim:1", { i });
    const epoch = decodeCursor(id).get(channelKey("trim:1"))!.epoch;
    const stream = await SseStream.open(`${s.url}/sse?channel=trim:1`, { "Last-Event-ID": id });
    try {
      const reset = await stream.next((e) => e.event === "reset");
      assert.deepEqual(JSON.parse(reset.data!), { channel: "trim:1", epoch, offset: 10 });
      assert.deepEqual(Object.keys(JSON.parse(reset.data!)), ["channel", "epoch", "offset"]);
      assert.match(reset.raw, /^event: reset\n/);
      assert.equal(decodeCursor(reset.id).get(channelKey("trim:1"))?.offset, 10);
      await stream.next(isPosition);
      assert.equal(stream.messages().length, 0, "nothing older than the reset is replayed");
      await s.hl.publish("trim:1", { i: 11 });
      const m = await stream.next(isMessage);
      assert.deepEqual(JSON.parse(m.data!), { channel: "trim:1", offset: 11, data: { i: 11 } });
    } finally {
      stream.close();
    }
    await assertIdle(s.hl);
  });
});

describe("SSE on a server made by listen(): the stream runs on the bare socket", () => {
  const s = withServer();

  /** A raw connection that sends `request` and collects everything the server writes. */
  function rawRequest(request: string): { socket: net.Socket; text: () => string; closed: Promise<void> } {
    const socket = net.connect(s.port, "127.0.0.1");
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (text += d));
    socket.on("error", () => {});
    const closed = new Promise<void>((r) => socket.once("close", () => r()));
    socket.write(request);
    return { socket, text: () => text, closed };
  }

  it("sends no chunked framing, says Connection: close, and ends when the client ends its side", async () => {
    // Pipelined bytes after the request are not a second request: they are read and dropped.
    const c = rawRequest("GET /sse?channel=bare:a HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    await waitFor(() => c.text().includes("event: position"), 5000, "the position event");
    await waitFor(() => s.hl.connectionsByTransport.sse === 1, 2000, "the stream to be counted");
    const [head, body] = c.text().split("\r\n\r\n", 2) as [string, string];
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(head, /\r\nContent-Type: text\/event-stream; charset=utf-8(\r\n|$)/);
    assert.match(head, /\r\nConnection: close(\r\n|$)/);
    assert.doesNotMatch(head, /Transfer-Encoding|Content-Length/i);
    const date = /\r\nDate: ([^\r]+)/.exec(head)?.[1];
    assert.ok(date !== undefined && Math.abs(Date.parse(date) - Date.now()) < 5000, `a Date header: ${date}`);
    assert.ok(body.startsWith("retry: 2000\n\n"), JSON.stringify(body.slice(0, 40)));
    const pub = await s.hl.publish("bare:a", { n: 1 });
    await waitFor(() => c.text().includes('"data":{"n":1}'), 5000, "the message");
    const tail = c.text().slice(c.text().indexOf("retry:"));
    assert.match(tail, new RegExp(`\\nid: \\S+\\ndata: \\{"channel":"bare:a","offset":${pub.offset},"data":\\{"n":1\\}\\}\\n\\n$`));
    assert.ok(!c.text().includes("HTTP/1.1 200 OK\r\nContent-Type: application/json"), "the pipelined request was not answered");
    c.socket.end();
    await c.closed;
    await assertIdle(s.hl);
  });

  it("answers errors on the socket as JSON, with the CORS headers", async () => {
    const c = rawRequest("GET /sse?channel=bad%20name HTTP/1.1\r\nHost: x\r\nOrigin: http://elsewhere.example\r\n\r\n");
    await c.closed;
    const [head, body] = c.text().split("\r\n\r\n", 2) as [string, string];
    assert.match(head, /^HTTP\/1\.1 400 /);
    assert.match(head, /\r\nAccess-Control-Allow-Origin: \*(\r\n|$)/);
    assert.equal(JSON.parse(body).error.code, "bad_channel");
    await assertIdle(s.hl);
  });

  it("serves other methods on /sse through node:http, as before", async () => {
    const r = await fetch(`${s.url}/sse?channel=bare:b`, { method: "POST" });
    assert.equal(r.status, 405);
    assert.equal((await r.json()).error.code, "method_not_allowed");
  });
});
