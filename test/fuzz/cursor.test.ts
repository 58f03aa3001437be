/**
 * Cursors are input from the network: decoding anything either returns
 * positions or throws HeartlineError bad_cursor, never anything else, and
 * every cursor the server makes decodes back to the positions it holds.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { HeartlineError } from "../../src/errors.js";
import { channelKey, decodeCursor, encodeCursor, parseSince, type Position } from "../../src/hub/cursor.js";
import { anyText, params } from "./fuzz-params.js";

const channel = fc.stringMatching(/^[A-Za-z0-9_\-:.@/]{1,40}$/);
const epoch = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const offset = fc.oneof(fc.nat(1000), fc.maxSafeNat());
const position: fc.Arbitrary<Position> = fc.record({ epoch, offset }).map(({ epoch, offset }) => ({ epoch, offset }));

/** Calls `fn`; a throw must be HeartlineError `code`. */
function onlyThrows(code: string, fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof HeartlineError, `threw ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.status, 400);
  }
}

/** Strings that look a lot like cursors: version, segments, separators and junk mixed. */
const cursorish = fc
  .array(
    fc.oneof(
      fc.constantFrom("1", "~", ".", "0", "-", "_", "~~", "..", "2", "9007199254740993", "99999999999999999999"),
      fc.stringMatching(/^[0-9a-z]{0,8}$/),
      epoch,
      fc.string({ maxLength: 4 }),
      anyText({ maxLength: 3 }),
    ),
    { maxLength: 12 },
  )
  .map((parts) => parts.join(""));

describe("fuzz: cursors", () => {
  it("decodeCursor on anything throws nothing but bad_cursor", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), anyText(), cursorish, cursorish.map((c) => "1~" + c)), (input) => {
        onlyThrows("bad_cursor", () => decodeCursor(input));
      }),
      params(1000),
    );
  });

  it("a decoded cursor holds only valid keys, epochs and safe offsets", () => {
    fc.assert(
      fc.property(cursorish.map((c) => "1" + c), (input) => {
        let decoded: Map<string, Position>;
        try {
          decoded = decodeCursor(input);
        } catch {
          return;
        }
        for (const [key, pos] of decoded) {
          assert.match(key, /^[0-9a-z]{1,7}$/);
          assert.match(pos.epoch, /^[A-Za-z0-9_-]{1,64}$/);
          assert.ok(Number.isSafeInteger(pos.offset) && pos.offset >= 0);
        }
      }),
      params(1000),
    );
  });

  it("encodeCursor round-trips through decodeCursor and uses only URL-unreserved characters", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(channel, position), { maxLength: 20 }), (entries) => {
        const text = encodeCursor(entries);
        assert.match(text, /^[A-Za-z0-9\-._~]+$/);
        const expected = new Map<string, Position>();
        for (const [c, p] of entries) expected.set(channelKey(c), p);
        assert.deepEqual(decodeCursor(text), expected);
      }),
      params(500),
    );
  });

  it("a valid cursor with one character changed still decodes or throws bad_cursor", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(channel, position), { minLength: 1, maxLength: 5 }),
        fc.nat(),
        anyText({ minLength: 1, maxLength: 2 }),
        (entries, at, replacement) => {
          const text = encodeCursor(entries);
          const i = at % text.length;
          onlyThrows("bad_cursor", () => decodeCursor(text.slice(0, i) + replacement + text.slice(i + 1)));
        },
      ),
      params(500),
    );
  });

  it("parseSince on anything returns a position or undefined, or throws bad_cursor", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.record({ epoch: fc.oneof(epoch, fc.anything()), offset: fc.oneof(offset, fc.anything()) }, { requiredKeys: [] })), (since) => {
        let r: Position | undefined;
        try {
          r = parseSince(since);
        } catch (err) {
          assert.ok(err instanceof HeartlineError && err.code === "bad_cursor", String(err));
          return;
        }
        if (r !== undefined) {
          assert.match(r.epoch, /^[A-Za-z0-9_-]{1,64}$/);
          assert.ok(Number.isSafeInteger(r.offset) && r.offset >= 0);
        }
      }),
      params(1000),
    );
  });
});
