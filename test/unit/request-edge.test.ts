/** Pure rules of the HTTP edge: the route path, the query, client addresses, loopback. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isLoopbackAddress, normalizeAddress } from "../../src/http/client-address.js";
import { queryOf, routePath } from "../../src/http/request-path.js";

describe("routePath", () => {
  it("gives the raw path of a plain origin-form target, without the query", () => {
    assert.equal(routePath("/"), "/");
    assert.equal(routePath("/healthz"), "/healthz");
    assert.equal(routePath("/poll?channel=a&cursor=1~x.y.2"), "/poll");
    assert.equal(routePath("/sse?x=//../%2e%2e"), "/sse", "the query is not part of the path");
    assert.equal(routePath("/api/channels/chat:lobby"), "/api/channels/chat:lobby");
    assert.equal(routePath("/api/channels/a%2fb"), "/api/channels/a%2fb", "an encoded slash that makes no dot segment is data");
    assert.equal(routePath("/api/channels/a.b/c..d/.e"), "/api/channels/a.b/c..d/.e");
    assert.equal(routePath("/api/"), "/api/", "a trailing slash is kept as is");
    assert.equal(routePath("/api/channels/%3A"), "/api/channels/%3A");
  });

  it("refuses what another reader could take for another path", () => {
    for (const target of [
      "",
      "*",
      "http://x/metrics",
      "metrics",
      "//x/metrics",
      "//metrics",
      "/x//metrics",
      "/healthz/../metrics",
      "/healthz/..",
      "/./metrics",
      "/.",
      "/healthz/%2e%2e/metrics",
      "/healthz/%2E%2E/metrics",
      "/healthz/.%2e/metrics",
      "/healthz/%2e./metrics",
      "/%2e/metrics",
      "/healthz%2f..%2fmetrics",
      "/healthz%2F%2E%2E%2Fmetrics",
      "/x%2f%2fmetrics",
      "/healthz\\..\\metrics",
      "/healthz%5c..%5cmetrics",
      "/x%5cmetrics",
      "/metrics#x",
    ]) {
      assert.equal(routePath(target), undefined, target);
    }
    assert.equal(routePath(undefined), undefined);
  });
});

describe("queryOf", () => {
  it("reads a target's query as new URL(target).searchParams does", () => {
    const targets = [
      "/poll?channel=a&channel=b",
      "/poll??channel=a",
      "/poll?channel=a#b&c=d",
      "/poll?#x",
      "/poll?",
      "/poll",
      "/poll?channel=%zz&c=%41&d=%E0%A4%A",
      "/poll?a=1&&b=+2&=v&flag",
      "/poll?channel=\xe9\xff&q=\"<>`'",
      "/poll?a=b=c;d=e",
      "/poll?a=%00&b=%0d%0a",
    ];
    // And random ones from the characters a target can hold.
    const alphabet = "ab=&?#%+;/.~-_09AFaf\xe9 \t\n\x7f";
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
    for (let i = 0; i < 2000; i++) {
      let t = "/poll?";
      for (let j = rand(24); j > 0; j--) t += alphabet[rand(alphabet.length)];
      targets.push(t);
    }
    for (const t of targets) {
      assert.deepEqual([...queryOf(t).searchParams], [...new URL(t, "http://heartline.invalid").searchParams], JSON.stringify(t));
    }
  });
});

describe("client addresses", () => {
  it("normalises addresses: ports and brackets dropped, IPv4-mapped IPv6 as IPv4", () => {
    assert.equal(normalizeAddress("203.0.113.7"), "203.0.113.7");
    assert.equal(normalizeAddress(" 203.0.113.7:5555 "), "203.0.113.7");
    assert.equal(normalizeAddress("[2001:db8::1]:443"), "2001:db8::1");
    assert.equal(normalizeAddress("[2001:DB8::1]"), "2001:db8::1");
    assert.equal(normalizeAddress("2001:db8::1"), "2001:db8::1");
    assert.equal(normalizeAddress("::ffff:1.2.3.4"), "1.2.3.4");
    assert.equal(normalizeAddress("::FFFF:127.0.0.1"), "127.0.0.1");
    assert.equal(normalizeAddress("::ffff:7f00:1"), "127.0.0.1");
    assert.equal(normalizeAddress("0:0:0:0:0:ffff:7f00:0001"), "127.0.0.1");
    assert.equal(normalizeAddress("[::ffff:127.0.0.1]:80"), "127.0.0.1");
    assert.equal(normalizeAddress("::1"), "::1");
  });

  it("refuses what is not an IP address", () => {
    for (const v of ["unknown", "127.1", "127.0.0.1.", "0x7f.1", "localhost", "", "_hidden", "[::1", "[::1]x", "[127.0.0.1]", "1.2.3.4:", "1.2.3.4:99999x", "::1:80x"]) {
      assert.equal(normalizeAddress(v), undefined, v);
    }
  });

  it("knows loopback: 127.0.0.0/8 and ::1 only", () => {
    for (const a of ["127.0.0.1", "127.255.0.9", "::1"]) assert.equal(isLoopbackAddress(a), true, a);
    for (const a of ["128.0.0.1", "10.0.0.1", "::2", "2001:db8::1", "::", "0.0.0.0", "unknown"]) assert.equal(isLoopbackAddress(a), false, a);
    assert.equal(isLoopbackAddress(normalizeAddress("0:0:0:0:0:0:0:1")!), true);
    assert.equal(isLoopbackAddress(normalizeAddress("::ffff:127.0.0.1")!), true);
    assert.equal(isLoopbackAddress(normalizeAddress("0::1")!), true);
    for (const a of ["1::1", "::1:1", "0:0:0:0:0:0:1:1", "127", "::ffff:128.0.0.1"]) assert.equal(isLoopbackAddress(normalizeAddress(a) ?? a), false, a);
  });
});
