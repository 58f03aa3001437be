import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LastAnswer } from "../../src/http/respond.js";

const FIXED = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
const DATE = "Date: Mon, 07 Dec 2026 22:00:00 GMT\r\n";
const KEEP = "Connection: keep-alive\r\n";
const NONE: Record<string, string> = {};

describe("LastAnswer: the bytes of a bare-socket answer, kept for the next with the same parts", () => {
  it("writes the head and the body as node:http would read them", () => {
    const body = '{"messages":[],"cursor":"c1"}';
    const text = new LastAnswer().bytesOf(FIXED, DATE, KEEP, Buffer.byteLength(body), { "Access-Control-Allow-Origin": "*" }, body).toString();
    assert.equal(text, FIXED + DATE + KEEP + `Content-Length: ${body.length}\r\nAccess-Control-Allow-Origin: *\r\n\r\n` + body);
  });

  it("gives the same bytes back for the same parts, without encoding them again", () => {
    const last = new LastAnswer();
    const body = '{"messages":["é"],"cursor":"c1"}';
    const a = last.bytesOf(FIXED, DATE, KEEP, Buffer.byteLength(body), NONE, body);
    assert.equal(last.bytesOf(FIXED, DATE, KEEP, Buffer.byteLength(body), NONE, body), a);
  });

  it("makes new bytes when any part differs: body, headers, date or connection line", () => {
    const last = new LastAnswer();
    const body = '{"messages":[],"cursor":"c1"}';
    const first = last.bytesOf(FIXED, DATE, KEEP, body.length, NONE, body).toString();
    const other = '{"messages":[],"cursor":"c2"}';
    assert.match(last.bytesOf(FIXED, DATE, KEEP, other.length, NONE, other).toString(), /"c2"/);
    assert.match(last.bytesOf(FIXED, DATE, KEEP, other.length, { Vary: "Origin" }, other).toString(), /Vary: Origin/);
    assert.match(last.bytesOf(FIXED, "Date: Mon, 07 Dec 2026 22:00:01 GMT\r\n", KEEP, other.length, NONE, other).toString(), /22:00:01/);
    assert.match(last.bytesOf(FIXED, DATE, "Connection: close\r\n", body.length, NONE, body).toString(), /Connection: close[\s\S]*"c1"/);
    assert.equal(last.bytesOf(FIXED, DATE, KEEP, body.length, NONE, body).toString(), first);
  });
});
