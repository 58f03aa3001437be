/** Pure rules of the HTTP edge: the route path, client addresses, loopback. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isLoopbackAddress, normalizeAddress } from "../../src/http/client-address.js";
import { routePath } from "../../src/http/request-path.js";

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
