import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getJson, publishHttp, withServer, WsClient } from "../helpers/server.js";

describe("server smoke", () => {
  const s = withServer();

  it("publishes over HTTP and delivers over WebSocket, SSE and polling alike", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=room:1`);
    const sub = await ws.next((f) => f.type === "subscribed");
    assert.equal(sub.offset, 0);
    const first = await getJson(`${s.url}/poll?channel=room:1`);
    const res = await publishHttp(s, "room:1", { n: 1 });
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.body).sort(), ["channel", "epoch", "offset"]);
    assert.equal(res.body.offset, 1);
    const m = await ws.next((f) => f.type === "message");
    assert.deepEqual(m, { type: "message", channel: "room:1", offset: 1, data: { n: 1 } });
    const polled = await getJson(`${s.url}/poll?channel=room:1&cursor=${first.body.cursor}`);
    assert.deepEqual(polled.body.messages, [{ channel: "room:1", offset: 1, data: { n: 1 } }]);
    assert.deepEqual(polled.body.resets, []);
    ws.close();
    await ws.closed;
  });
});
