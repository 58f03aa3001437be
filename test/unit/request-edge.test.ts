/** Pure rules of the HTTP edge: the route path. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
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
