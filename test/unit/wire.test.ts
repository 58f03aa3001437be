/**
 * Wire formats (src/wire.ts): SSE fields that cannot break an event, the
 * poll answer, the raw response head, and cursors safe as SSE ids.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { channelKey, cursorSegment } from "../../src/cursor-layout.js";
import { decodeCursor, encodeCursor, EPOCH_RE } from "../../src/hub/cursor.js";
import { headerLine, headerLines, pollAnswerJson, sseDataLines, sseEvent, sseIdLine, sseMessageEvent, sseRetry, statusLine } from "../../src/wire.js";

/** The WHATWG event-stream interpretation (HTML §9.2.6), for whole events. */
function parseStream(text: string): Array<{ event: string; data: string; id: string | undefined }> {
  const out: Array<{ event: string; data: string; id: string | undefined }> = [];
  let event = "";
  let data = "";
  let lastId: string | undefined;
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === "") {
      if (data !== "") out.push({ event: event || "message", data: data.endsWith("\n") ? data.slice(0, -1) : data, id: lastId });
      event = "";
      data = "";
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") event = value;
    else if (name === "data") data += value + "\n";
    else if (name === "id" && !value.includes("\0")) lastId = value;
  }
  return out;
}

describe("SSE events", () => {
  it("keep today's bytes for single-line data", () => {
    assert.equal(sseEvent("ping", undefined, "{}"), "event: ping\ndata: {}\n\n");
    assert.equal(sseEvent("reset", "1~a.e.3", '{"x":1}'), 'event: reset\nid: 1~a.e.3\ndata: {"x":1}\n\n');
    assert.equal(sseEvent(undefined, undefined, "x"), "data: x\n\n");
    assert.equal(sseRetry(2000), "retry: 2000\n\n");
    assert.equal(sseIdLine("1~a.e.3"), "id: 1~a.e.3\n");
    assert.equal(sseMessageEvent('{"channel":"c","offset":1,"data":2}').toString(), 'data: {"channel":"c","offset":1,"data":2}\n\n');
  });

  it("split data holding CR, LF or CRLF over data: lines, so the event stays one event with the same JSON", () => {
    const value = { a: "line1\nline2", b: [1, 2], c: { d: "\r\n" } };
    for (const json of [JSON.stringify(value, null, 2), JSON.stringify(value).replace(/,/g, ",\r\n"), JSON.stringify(value).replace(/:/g, ":\r")]) {
      for (const text of [sseEvent("reset", "1~k.e.1", json), sseDataLines(json) + "\n", sseMessageEvent(json).toString()]) {
        const events = parseStream(text + sseEvent("ping", undefined, "{}"));
        assert.equal(events.length, 2, JSON.stringify(text));
        assert.deepEqual(JSON.parse(events[0]!.data), value);
        assert.equal(events[1]!.event, "ping");
      }
    }
  });

  it("refuse an event name or id that would end its line, and an id with NUL", () => {
    for (const bad of ["a\nb", "a\rb", "a\r\nb", "\n"]) {
      assert.throws(() => sseEvent(bad, undefined, "{}"), /may not contain CR, LF/);
      assert.throws(() => sseEvent("x", bad, "{}"), /may not contain CR, LF/);
    }
    assert.throws(() => sseEvent("x", "a\0b", "{}"), /NUL/);
    assert.throws(() => sseRetry(-1));
  });

  it("cursors, the ids of delivered messages, hold only URL-unreserved characters", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 40 }), fc.stringMatching(EPOCH_RE), fc.nat()), { maxLength: 8 }),
        (parts) => {
          const cursor = encodeCursor(parts.map(([c, epoch, offset]) => [c, { epoch, offset }] as const));
          assert.match(cursor, /^[A-Za-z0-9._~-]+$/);
          assert.equal(parseStream(sseIdLine(cursor) + "data: {}\n\n")[0]!.id, cursor);
          for (const [c, epoch, offset] of parts) assert.match(cursorSegment(channelKey(c), { epoch, offset }), /^~[A-Za-z0-9._-]+$/);
        },
      ),
    );
    // A cursor from the network with anything else is refused before it can be an id.
    assert.throws(() => decodeCursor("1~abc.ep\noch.1"), /bad_cursor|malformed/);
  });
});

describe("poll answer", () => {
  it("is the SPEC object with the messages' JSON as stored", () => {
    const body = pollAnswerJson([{ json: '{"channel":"c","offset":1,"data":{"x":[1]}}' }], "1~k.e.1", []);
    assert.equal(body, '{"messages":[{"channel":"c","offset":1,"data":{"x":[1]}}],"cursor":"1~k.e.1","resets":[],"presence":[]}');
    const withReset = JSON.parse(pollAnswerJson([], "1", [{ channel: "c", epoch: "e", offset: 4 }]));
    assert.deepEqual(withReset, { messages: [], cursor: "1", resets: [{ channel: "c", epoch: "e", offset: 4 }], presence: [] });
  });
});

describe("response head", () => {
  it("writes status and header lines, and refuses a value that would split the response", () => {
    assert.equal(statusLine(503, "Service Unavailable"), "HTTP/1.1 503 Service Unavailable\r\n");
    assert.equal(headerLine("Content-Length", 12), "Content-Length: 12\r\n");
    assert.equal(headerLines({ A: "1", B: "two" }), "A: 1\r\nB: two\r\n");
    assert.throws(() => headerLine("X", "a\r\nSet-Cookie: x=1"), /CR or LF/);
    assert.throws(() => headerLines({ X: "a\nb" }), /CR or LF/);
  });
});
