import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CLOSE_CODES, FINAL_CLOSE_CODES, shouldReconnect } from "../../src/close-codes.js";

describe("close codes", () => {
  it("names exactly the final codes of the table, so the client's short list cannot drift from the server's", () => {
    // A code two reasons share is named by the first of them (4403: forbidden, then disconnected).
    const final: Record<number, string> = {};
    for (const [name, e] of Object.entries(CLOSE_CODES)) if (!e.reconnect) final[e.code] ??= name;
    assert.deepEqual({ ...FINAL_CLOSE_CODES }, final);
  });

  it("never lets two reasons share a code unless they agree on reconnecting", () => {
    const byCode = new Map<number, boolean>();
    for (const [name, e] of Object.entries(CLOSE_CODES)) {
      assert.equal(byCode.get(e.code) ?? e.reconnect, e.reconnect, name);
      byCode.set(e.code, e.reconnect);
    }
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
