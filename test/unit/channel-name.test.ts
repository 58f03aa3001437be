import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assertChannelName, ChannelPatterns, isChannelName, namespaceOf } from "../../src/hub/channel-name.js";

describe("channel names", () => {
  it("accepts 1–255 characters of A-Z a-z 0-9 _ - : . @ /", () => {
    for (const ok of ["a", "chat:lobby", "user@example.com/inbox", "A-Z_0.9", "x".repeat(255), "game:room:1"]) assert.equal(isChannelName(ok), true, ok);
  });

  it("refuses everything else with bad_channel", () => {
    for (const bad of ["", "x".repeat(256), "a b", "é", "a\nb", "a?b", "a#b", "a%20b", "a*", null, 5, {}, ["a"]]) {
      assert.equal(isChannelName(bad), false, String(bad));
      assert.throws(() => assertChannelName(bad), { code: "bad_channel", status: 400 });
    }
  });

  it("finds the namespace before the first colon", () => {
    assert.equal(namespaceOf("game:room:1"), "game");
    assert.equal(namespaceOf("plain"), "");
  });
});

describe("channel patterns", () => {
  it("matches exact names, trailing wildcards and inner wildcards", () => {
    const p = new ChannelPatterns(["news", "game:*", "user:*:inbox"]);
    assert.equal(p.matches("news"), true);
    assert.equal(p.matches("newsroom"), false);
    assert.equal(p.matches("game:1"), true);
    assert.equal(p.matches("game"), false);
    assert.equal(p.matches("user:42:inbox"), true);
    assert.equal(p.matches("user:42:outbox"), false);
  });

  it("treats regex characters in patterns literally", () => {
    const p = new ChannelPatterns(["a.b:*"]);
    assert.equal(p.matches("a.b:1"), true);
    assert.equal(p.matches("axb:1"), false);
  });

  it("matches nothing when empty and everything with *", () => {
    assert.equal(new ChannelPatterns([]).matches("x"), false);
    assert.equal(new ChannelPatterns(["*"]).matches("anything:at/all"), true);
  });
});
