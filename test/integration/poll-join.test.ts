import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getJson, withServer } from "../helpers/server.js";

describe("long polling: adding a channel to a cursor", () => {
  const s = withServer();

  it("answers at once with the new channel's position, so nothing published there later is lost", async () => {
    await s.hl.publish("join:news", { n: 0 });
    const first = await getJson(`${s.url}/poll?channel=join:a`);
    const started = Date.now();
    const joined = await getJson(`${s.url}/poll?channel=join:a&channel=join:news&cursor=${first.body.cursor}&timeout=20`);
    assert.ok(Date.now() - started < 5000, "the poll was not held");
    assert.deepEqual(joined.body.messages, []);
    assert.notEqual(joined.body.cursor, first.body.cursor);
    const held = getJson(`${s.url}/poll?channel=join:a&channel=join:news&cursor=${joined.body.cursor}&timeout=20`);
    await new Promise((r) => setTimeout(r, 100));
    await s.hl.publish("join:news", { n: 1 });
    const got = await held;
    assert.deepEqual(got.body.messages, [{ channel: "join:news", offset: 2, data: { n: 1 } }]);
    assert.equal(s.hl.connections, 0);
  });
});
