import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { channelKey, CursorCache, decodeCursor, encodeCursor, parseSince, positionIn } from "../../src/hub/cursor.js";
import { HeartlineError } from "../../src/errors.js";

const UNRESERVED = /^[A-Za-z0-9\-._~]+$/;

function badCursor(fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => e instanceof HeartlineError && e.code === "bad_cursor" && e.status === 400);
}

describe("cursor", () => {
  it("round-trips positions of several channels and uses only URL-unreserved characters", () => {
    const c = encodeCursor([
      ["chat:lobby", { epoch: "Ab_-9z", offset: 7 }],
      ["user@host/x.y", { epoch: "e2", offset: 0 }],
    ]);
    assert.match(c, UNRESERVED);
    const d = decodeCursor(c);
    assert.deepEqual(positionIn(d, "chat:lobby"), { epoch: "Ab_-9z", offset: 7 });
    assert.deepEqual(positionIn(d, "user@host/x.y"), { epoch: "e2", offset: 0 });
    assert.equal(positionIn(d, "other"), undefined);
  });

  it("encodes an empty subscription as a valid cursor", () => {
    assert.equal(decodeCursor(encodeCursor([])).size, 0);
  });

  it("gives different channels different keys", () => {
    const keys = new Set(Array.from({ length: 2000 }, (_, i) => channelKey(`room:${i}`)));
    assert.equal(keys.size, 2000);
  });

  it("rejects malformed cursors with bad_cursor", () => {
    for (const bad of ["", "2", "x~a.b.1", "1~", "1~a.b", "1~A.b.1", "1~a.b.-1", "1~a.b.01", "1~a.b.1.2", "1~a.b!.1", "1~a.b.99999999999999999", "1~a..1", "1 ~a.b.1", "1~a.b.1~", "1~" + "a".repeat(8) + ".b.1"]) {
      badCursor(() => decodeCursor(bad));
    }
    badCursor(() => decodeCursor("1" + "~a.b.1".repeat(10000)));
    badCursor(() => decodeCursor(undefined));
    badCursor(() => decodeCursor(42));
  });

  it("validates since objects of subscribe frames", () => {
    assert.equal(parseSince(undefined), undefined);
    assert.deepEqual(parseSince({ epoch: "e", offset: 3 }), { epoch: "e", offset: 3 });
    for (const bad of [1, "x", [], { epoch: "e" }, { epoch: "e", offset: -1 }, { epoch: "e", offset: 1.5 }, { epoch: "", offset: 1 }, { epoch: "a b", offset: 1 }, { epoch: "e", offset: 2 ** 60 }, { epoch: 5, offset: 1 }]) {
      badCursor(() => parseSince(bad));
    }
  });

  it("shares one decoded cursor among requests with the same text, and still rejects bad ones", () => {
    const text = encodeCursor([["shared:a", { epoch: "E1", offset: 4 }], ["shared:b", { epoch: "E2", offset: 0 }]]);
    const cache = new CursorCache();
    const a = cache.decode(text);
    const b = cache.decode(String(text));
    assert.equal(a, b, "the same object for the same text");
    assert.equal(a.text, text);
    assert.deepEqual(positionIn(a.positions, "shared:a"), { epoch: "E1", offset: 4 });
    assert.deepEqual(positionIn(a.positions, "shared:b"), { epoch: "E2", offset: 0 });
    const other = cache.decode(encodeCursor([["shared:a", { epoch: "E1", offset: 5 }]]));
    assert.notEqual(other, a);
    assert.equal(positionIn(other.positions, "shared:a")?.offset, 5);
    badCursor(() => cache.decode("1~nope"));
    badCursor(() => cache.decode("1~nope"));
  });
});
