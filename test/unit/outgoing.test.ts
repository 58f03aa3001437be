import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeCursor } from "../../src/hub/cursor.js";
import { channelKey } from "../../src/hub/cursor.js";
import { Outgoing } from "../../src/hub/subscription.js";

const message = { channel: "chat:1", epoch: "e1", offset: 7, json: '{"channel":"chat:1","offset":7,"data":{"t":"hi"}}' };

describe("Outgoing.sseSolo", () => {
  it("is the id line of a cursor naming the message's position alone, then the event body", () => {
    const out = new Outgoing(message);
    const text = out.sseSolo(channelKey("chat:1")).toString();
    assert.ok(text.endsWith(out.sse.toString()), "the body, as every stream gets it");
    const id = /^id: (\S+)\n/.exec(text);
    assert.ok(id, "starts with an id line");
    assert.equal(text, `id: ${id[1]}\n` + out.sse.toString());
    assert.deepEqual([...decodeCursor(id[1])], [[channelKey("chat:1"), { epoch: "e1", offset: 7 }]]);
  });

  it("is built once per message and shared, and rebuilt for another key", () => {
    const out = new Outgoing(message);
    const a = out.sseSolo(channelKey("chat:1"));
    assert.equal(out.sseSolo(channelKey("chat:1")), a, "the same bytes for every such stream");
    const b = out.sseSolo("zz");
    assert.notEqual(b, a);
    assert.match(b.toString(), /^id: 1~zz\.e1\.7\n/);
  });
});
