import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { assertChannelName, ChannelPatterns, isChannelName, namespaceOf, wildcardMatch } from "../../src/hub/channel-name.js";

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

describe("wildcard matching", () => {
  /** The meaning of a pattern, spelled as a regular expression (fine for the short inputs below). */
  const reference = (pattern: string, text: string) =>
    new RegExp("^" + pattern.split("*").map((x) => x.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join(".*") + "$").test(text);

  it("gives the same answers as the pattern's meaning on every short pattern and name over a small alphabet", () => {
    const alphabet = ["a", "b", ":"];
    const words = (n: number, chars: string[]): string[] => (n === 0 ? [""] : words(n - 1, chars).flatMap((w) => chars.map((c) => w + c)));
    const texts = [0, 1, 2, 3, 4].flatMap((n) => words(n, alphabet));
    const patterns = [1, 2, 3, 4].flatMap((n) => words(n, [...alphabet, "*"]));
    let checked = 0;
    for (const p of patterns) {
      const compiled = new ChannelPatterns([p]);
      for (const t of texts) {
        const want = reference(p, t);
        assert.equal(wildcardMatch(p, t), want, `${p} against ${JSON.stringify(t)}`);
        if (t !== "") assert.equal(compiled.matches(t), want, `ChannelPatterns([${p}]) against ${t}`);
        checked++;
      }
    }
    assert.ok(checked > 40_000);
  });

  it("matches the empty run, runs across separators, and nothing past the end", () => {
    assert.equal(wildcardMatch("user:*:inbox", "user::inbox"), true);
    assert.equal(wildcardMatch("user:*:inbox", "user:a:b:inbox"), true);
    assert.equal(wildcardMatch("*:inbox", "x:inbox:y"), false);
    assert.equal(wildcardMatch("a*b*c", "abc"), true);
    assert.equal(wildcardMatch("a*b*c", "acb"), false);
    assert.equal(wildcardMatch("**", ""), true);
    assert.equal(wildcardMatch("", "a"), false);
  });

  it("answers a hostile pattern against a 255-character name at once", () => {
    const name = "a".repeat(255);
    const hostile = ["*a*a*a*b", "*a*a*a*a*a*a*b", "*" + "a*".repeat(100) + "b", "*" + "a".repeat(120) + "b", "*a" + "*a".repeat(126) + "*b"];
    const p = new ChannelPatterns(hostile);
    const start = performance.now();
    for (let i = 0; i < 20; i++) assert.equal(p.matches(name), false);
    const ms = performance.now() - start;
    assert.ok(ms < 200, `20 × ${hostile.length} matches took ${ms.toFixed(1)} ms`);
    assert.equal(new ChannelPatterns(["*a*a*a*a*a*a*a"]).matches(name), true);
  });
});
