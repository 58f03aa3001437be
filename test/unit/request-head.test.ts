import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { readPlainGet } from "../../src/http/request-head.js";

const MAX = 16 * 1024;
const read = (text: string, max = MAX) => readPlainGet(Buffer.from(text, "latin1"), max);

describe("readPlainGet", () => {
  it("reads a plain GET: target, version, fields as node:http's rawHeaders, and where the next request starts", () => {
    const head = "GET /poll?channel=a&cursor=x HTTP/1.1\r\nHost: example.test\r\nAuthorization:  Bearer abc \t\r\nX-Empty:\r\nAccept: */*\r\n\r\n";
    const r = read(head + "GET /healthz HTTP/1.1\r\n");
    assert.deepEqual(r, {
      target: "/poll?channel=a&cursor=x",
      minor: 1,
      raw: ["Host", "example.test", "Authorization", "Bearer abc", "X-Empty", "", "Accept", "*/*"],
      length: Buffer.byteLength(head),
    });
    assert.deepEqual(read("GET /poll HTTP/1.0\r\n\r\n"), { target: "/poll", minor: 0, raw: [], length: 22 });
  });

  it("reads bytes 0x80–0xFF in a value as Latin-1, as node:http does", () => {
    assert.deepEqual(read("GET /poll HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9\r\n\r\n")?.raw, ["Host", "x", "X-Name", "café"]);
  });

  it("leaves to node:http whatever is not a whole, plain GET without a body", () => {
    const odd: Array<[string, string]> = [
      ["an incomplete head", "GET /poll HTTP/1.1\r\nHost: x\r\n"],
      ["another method", "POST /poll HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["a lower-case method", "get /poll HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["an absolute-form target", "GET http://x/poll HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["a target with a space", "GET /poll?a=b c HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["a target with a tab", "GET /poll?a=\tb HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["a target with a byte past ASCII", "GET /poll?a=\xe9 HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["HTTP/1.2", "GET /poll HTTP/1.2\r\nHost: x\r\n\r\n"],
      ["HTTP/2.0", "GET /poll HTTP/2.0\r\nHost: x\r\n\r\n"],
      ["two spaces in the request line", "GET  /poll HTTP/1.1\r\nHost: x\r\n\r\n"],
      ["a folded line", "GET /poll HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"],
      ["a bare LF", "GET /poll HTTP/1.1\nHost: x\r\n\r\n"],
      ["a bare LF in a value", "GET /poll HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n\r\n"],
      ["a bare CR in a value", "GET /poll HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"],
      ["a NUL in a value", "GET /poll HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n"],
      ["DEL in a value", "GET /poll HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n"],
      ["a space before the colon", "GET /poll HTTP/1.1\r\nHost : x\r\n\r\n"],
      ["an empty field name", "GET /poll HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n"],
      ["a field name with a separator", "GET /poll HTTP/1.1\r\nHost: x\r\nX(A): v\r\n\r\n"],
      ["a line without a colon", "GET /poll HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n"],
      ["Content-Length", "GET /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"],
      ["Transfer-Encoding", "GET /poll HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"],
      ["Expect", "GET /poll HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"],
      ["Upgrade", "GET /poll HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"],
      ["HTTP/1.1 without Host", "GET /poll HTTP/1.1\r\nAccept: */*\r\n\r\n"],
      ["two Hosts", "GET /poll HTTP/1.1\r\nHost: x\r\nHOST: y\r\n\r\n"],
      ["HTTP/1.0 with two Hosts", "GET /poll HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n"],
      ["101 fields", "GET /poll HTTP/1.1\r\nHost: x\r\n" + "X-A: 1\r\n".repeat(100) + "\r\n"],
      ["an empty head", "\r\n\r\n"],
    ];
    for (const [what, text] of odd) assert.equal(read(text), undefined, what);
    // Longer than node:http's limit: node:http answers 431.
    const long = "GET /poll HTTP/1.1\r\nHost: x\r\nX-A: " + "a".repeat(100) + "\r\n\r\n";
    assert.ok(read(long, long.length));
    assert.equal(read(long, long.length - 1), undefined, "a head longer than the limit");
  });
});
