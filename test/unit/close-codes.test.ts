import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CLOSE_CODES, FINAL_CLOSE_CODES, shouldReconnect } from "../../src/close-codes.js";

describe("close codes", () => {
  it("names exactly the final codes of the table, so the client's short list cannot drift from the server's", () => {
    const final = Object.fromEntries(
      Object.entries(CLOSE_CODES)
        .filter(([, e]) => !e.reconnect)
        .map(([name, e]) => [e.code, name]),
    );
    assert.deepEqual({ ...FINAL_CLOSE_CODES }, final);
  });

  it("tells a client to come back after every code the table marks as reconnectable", () => {
    for (const [name, e] of Object.entries(CLOSE_CODES)) assert.equal(shouldReconnect(e.code), e.reconnect, name);
  });

  it("reconnects after abnormal and unknown transport codes, and leaves 4500–4999 to the application", () => {
    assert.equal(shouldReconnect(1006), true);
    assert.equal(shouldReconnect(4100), true);
    assert.equal(shouldReconnect(4500), false);
    assert.equal(shouldReconnect(4999), false);
    assert.equal(shouldReconnect(5000), true);
  });
});
