/**
 * Channel names and patterns: the name check agrees with the rules of SPEC §2
 * on any input, `ChannelPatterns` agrees with a plain glob matcher, and the
 * channel permissions of subscriber tokens follow the same patterns.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isPublicChannel, publishDenied, subscribeDenied } from "../../src/auth/permissions.js";
import type { TokenClaims } from "../../src/auth/tokens.js";
import { HeartlineError } from "../../src/errors.js";
import { assertChannelName, ChannelPatterns, isChannelName, namespaceOf } from "../../src/hub/channel-name.js";
import { anyText, params } from "./fuzz-params.js";

const ALLOWED = "ABCabcxyz0189_-:.@/";
/** Names built from a few allowed characters, so patterns and names overlap often. */
const name = fc.string({ unit: fc.constantFrom(..."ab:.-/@_1"), minLength: 1, maxLength: 12 });
const pattern = fc.string({ unit: fc.constantFrom(..."ab:.-/@_1*"), minLength: 1, maxLength: 10 });

/** Reference glob: `*` matches any run of characters, every other character itself. */
function globMatches(p: string, s: string): boolean {
  // dp[j] = p[0..i) matches s[0..j)
  let dp = new Array<boolean>(s.length + 1).fill(false);
  dp[0] = true;
  for (let i = 0; i < p.length; i++) {
    const next = new Array<boolean>(s.length + 1).fill(false);
    for (let j = 0; j <= s.length; j++) {
      if (p[i] === "*") next[j] = dp[j]! || (j > 0 && next[j - 1]!);
      else next[j] = j > 0 && dp[j - 1]! && p[i] === s[j - 1];
    }
    dp = next;
  }
  return dp[s.length]!;
}

function claims(channels: string[], publish: string[], expMs = Infinity): TokenClaims {
  return { sub: "fuzz", expMs, channels: new ChannelPatterns(channels), publish: new ChannelPatterns(publish) };
}

describe("fuzz: channel names", () => {
  it("isChannelName and assertChannelName agree on anything; refusals are bad_channel", () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), anyText({ maxLength: 300 }), fc.string({ unit: fc.constantFrom(...ALLOWED), maxLength: 300 })), (input) => {
        const ok = isChannelName(input);
        const expected = typeof input === "string" && input.length >= 1 && input.length <= 255 && [...input].every((c) => ALLOWED.includes(c) || /[A-Za-z0-9]/.test(c));
        if (ok !== expected) assert.fail(`isChannelName(${JSON.stringify(input)}) is ${ok}`);
        try {
          assert.equal(assertChannelName(input), input);
          assert.ok(ok);
        } catch (err) {
          assert.ok(!ok);
          assert.ok(err instanceof HeartlineError && err.code === "bad_channel" && err.status === 400);
          assert.ok(err.message.length < 200, "the message stays short whatever the input");
        }
      }),
      params(500),
    );
  });

  it("namespaceOf is the part before the first colon", () => {
    fc.assert(
      fc.property(name, (n) => {
        const ns = namespaceOf(n);
        if (n.includes(":")) assert.equal(n.startsWith(ns + ":"), true);
        else assert.equal(ns, "");
        assert.equal(isPublicChannel(n), ns === "public");
      }),
      params(500),
    );
  });
});

describe("fuzz: channel patterns", () => {
  it("ChannelPatterns matches exactly what a glob matcher matches", () => {
    fc.assert(
      fc.property(fc.array(pattern, { maxLength: 4 }), name, (patterns, channel) => {
        const expected = patterns.some((p) => globMatches(p, channel));
        assert.equal(new ChannelPatterns(patterns).matches(channel), expected, `${JSON.stringify(patterns)} vs ${channel}`);
      }),
      params(1000),
    );
  });

  it("a pattern always matches itself with every * replaced by any text", () => {
    fc.assert(
      fc.property(pattern, fc.array(fc.string({ unit: fc.constantFrom(..."ab:.1"), maxLength: 4 }), { maxLength: 10 }), (p, fills) => {
        let i = 0;
        const channel = p.replace(/\*/g, () => fills[i++ % Math.max(fills.length, 1)] ?? "");
        assert.ok(new ChannelPatterns([p]).matches(channel), `${p} should match ${channel}`);
      }),
      params(1000),
    );
  });
});

describe("fuzz: channel permissions", () => {
  it("subscribing: public needs no token; otherwise no token → unauthorized, expired → token_expired, outside the claim → forbidden", () => {
    fc.assert(
      fc.property(fc.option(fc.array(pattern, { maxLength: 3 }), { nil: undefined }), fc.oneof(name, name.map((n) => "public:" + n)), fc.boolean(), (channels, channel, expired) => {
        const c = channels === undefined ? undefined : claims(channels, [], expired ? 1000 : Infinity);
        const denied = subscribeDenied(c, channel, 5000);
        if (isPublicChannel(channel)) assert.equal(denied, undefined);
        else if (!c) assert.equal(denied?.code, "unauthorized");
        else if (expired) assert.equal(denied?.code, "token_expired");
        else assert.equal(denied?.code, channels!.some((p) => globMatches(p, channel)) ? undefined : "forbidden");
      }),
      params(1000),
    );
  });

  it("publishing follows the publish claim, never the channels claim", () => {
    fc.assert(
      fc.property(fc.array(pattern, { maxLength: 3 }), fc.array(pattern, { maxLength: 3 }), name, (channels, publish, channel) => {
        const denied = publishDenied(claims(channels, publish), channel, 0);
        const allowed = isPublicChannel(channel) || publish.some((p) => globMatches(p, channel));
        assert.equal(denied?.code, allowed ? undefined : "forbidden");
      }),
      params(1000),
    );
  });
});
