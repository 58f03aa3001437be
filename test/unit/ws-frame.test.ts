import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as wsModule from "ws";
import { wsTextFrame } from "../../src/wire.js";

describe("wsTextFrame", () => {
  it("matches the frame ws itself builds, at every length boundary", () => {
    for (const n of [0, 1, 125, 126, 127, 65535, 65536, 70000]) {
      const payload = Buffer.alloc(n, 0x61);
      const expected = Buffer.concat(
        (wsModule as unknown as { Sender: { frame(d: Buffer, o: object): Buffer[] } }).Sender.frame(payload, {
          fin: true,
          opcode: 1,
          mask: false,
          readOnly: false,
          rsv1: false,
        }),
      );
      assert.deepEqual(wsTextFrame(payload), expected, `length ${n}`);
    }
  });
});
