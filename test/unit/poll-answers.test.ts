import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryBroker } from "../../src/broker/memory.js";
import { ManualClock } from "../../src/clock.js";
import { CursorCache, encodeCursor } from "../../src/hub/cursor.js";
import { Hub } from "../../src/hub/hub.js";
import { AnswerTable } from "../../src/transports/poll-answers.js";

/** A hub on the memory broker that counts its reads. */
function counted(): { hub: Hub; reads: () => number } {
  const hub = new Hub(new MemoryBroker({ historySize: 100, historyTtl: 60, clock: new ManualClock() }));
  let reads = 0;
  const read = hub.readAfterNow.bind(hub);
  hub.readAfterNow = (...args) => {
    reads++;
    return read(...args);
  };
  return { hub, reads: () => reads };
}

/** A shared cursor at `offset` of channel a in `epoch`. */
function cursorAt(epoch: string, offset: number) {
  return new CursorCache().decode(encodeCursor([["a", { epoch, offset }]]));
}

describe("AnswerTable: the answers of one pass, shared by polls at the same cursor on the same channels", () => {
  it("reads once for every poll at one cursor object on the same channel names, whatever array holds them", async () => {
    const { hub, reads } = counted();
    const first = await hub.publish("a", '"one"');
    await hub.publish("a", '"two"');
    const cursor = cursorAt(first.epoch, first.offset);
    const table = new AnswerTable();
    const x = table.read(hub, cursor, ["a"]);
    const y = table.read(hub, cursor, ["a"]);
    assert.ok(x);
    assert.equal(y, x);
    assert.equal(x.messages, 1);
    assert.match(x.body, /"two"/);
    assert.equal(reads(), 1);
  });

  it("keeps the answers of other channel lists at the same cursor apart", async () => {
    const { hub, reads } = counted();
    const m = await hub.publish("a", '"one"');
    await hub.publish("b", '"bee"');
    const cursor = cursorAt(m.epoch, m.offset);
    const table = new AnswerTable();
    // Nothing follows the cursor on a: no answer.
    assert.equal(table.read(hub, cursor, ["a"]), null);
    // b is not in the cursor: answered at once with b's position (and in this order of channels too).
    const ab = table.read(hub, cursor, ["a", "b"]);
    const ba = table.read(hub, cursor, ["b", "a"]);
    assert.ok(ab && ba);
    assert.notEqual(ab, ba);
    assert.equal(table.read(hub, cursor, ["a"]), null);
    assert.equal(table.read(hub, cursor, ["a", "b"]), ab);
    assert.equal(reads(), 3);
  });

  it("does not share between cursor objects, even with the same text", async () => {
    const { hub, reads } = counted();
    const m = await hub.publish("a", '"one"');
    const table = new AnswerTable();
    const x = table.read(hub, cursorAt(m.epoch, 0), ["a"]);
    const y = table.read(hub, cursorAt(m.epoch, 0), ["a"]);
    assert.ok(x && y);
    assert.notEqual(x, y);
    assert.equal(x.body, y.body);
    assert.equal(reads(), 2);
  });
});
