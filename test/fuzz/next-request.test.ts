/**
 * Random requests after a long poll's answer on a kept-alive connection,
 * where Heartline reads a plain next poll itself and leaves the rest to
 * node:http: mutated poll requests (bytes inserted, removed or replaced,
 * tricky header lines added) get the answer they get on a fresh connection,
 * and the server stays up with nothing left open.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { afterAPoll, answerTo, RawConnection } from "../helpers/raw-connection.js";
import { waitFor, withServer } from "../helpers/server.js";
import { params } from "./fuzz-params.js";

const BASE = "GET /poll?channel=public:f&timeout=0 HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n";

/** Header lines that sit on the edge of what a plain GET may hold (none announces a body: node:http would wait for it). */
const TRICKY = [
  "Content-Length: 0\r\n",
  "Expect: 100-continue\r\n",
  "Upgrade: websocket\r\n",
  "Host: y\r\n",
  "X-Folded: a\r\n b\r\n",
  " leading-space: v\r\n",
  "X-Ctl: \x01\r\n",
  "X-Latin: caf\xe9\r\n",
  "X-Empty:\r\n",
  "Connection: close\r\n",
  "Origin: http://elsewhere.test\r\n",
  "Authorization: Bearer x.y.z\r\n",
  "No-Colon\r\n",
  "X-Bare-LF: v\n",
  "X-Bare-CR: a\rb\r\n",
];

type Edit = { kind: "insert"; at: number; text: string } | { kind: "remove"; at: number; length: number } | { kind: "replace"; at: number; char: string } | { kind: "line"; line: string };

const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), text: fc.oneof(fc.string({ maxLength: 4 }), fc.constantFrom("\r", "\n", "\r\n", " ", "\t", "\0", ":", "?", "#", "%", "\xff")) }),
  fc.record({ kind: fc.constant("remove" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 6 }) }),
  fc.record({ kind: fc.constant("replace" as const), at: fc.nat(), char: fc.constantFrom("\r", "\n", " ", "\0", "G", "g", "1", "2", "/", "\x7f", "\x80") }),
  fc.record({ kind: fc.constant("line" as const), line: fc.constantFrom(...TRICKY) }),
);

function apply(text: string, e: Edit): string {
  // Edits stay inside the head (before its blank line, which stays whole), where the reader works.
  const headEnd = Math.max(1, text.indexOf("\r\n\r\n"));
  const at = e.kind === "line" ? 0 : e.at % headEnd;
  switch (e.kind) {
    case "insert":
      return text.slice(0, at) + e.text + text.slice(at);
    case "remove":
      return text.slice(0, at) + text.slice(Math.min(at + e.length, headEnd));
    case "replace":
      return text.slice(0, at) + e.char + text.slice(at + 1);
    case "line": {
      const firstLine = text.indexOf("\r\n") + 2;
      return firstLine > 1 ? text.slice(0, firstLine) + e.line + text.slice(firstLine) : text;
    }
  }
}

describe("fuzz: the request after a long poll's answer", () => {
  const s = withServer({ pollTimeout: 1, allowedOrigins: ["http://allowed.test"] });

  it("is answered as on a fresh connection, whatever its bytes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(edit, { minLength: 1, maxLength: 3 }), async (edits) => {
        const request = edits.reduce(apply, BASE);
        const fresh = new RawConnection(s.port);
        const expected = await answerTo(fresh, request);
        fresh.socket.destroy();
        const c = await afterAPoll(s.port);
        const got = await answerTo(c, request);
        c.socket.destroy();
        assert.equal(got, expected, JSON.stringify(request));
      }),
      params(60),
    );
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
    await waitFor(() => s.hl.connections === 0, 5000, "no connection left open");
  });
});
