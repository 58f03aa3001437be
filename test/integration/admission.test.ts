/**
 * Admission and the route table: a subscriber is refused the same way, in the
 * same order, whichever way its request came in — on the bare socket of a
 * server made by listen(), or through node:http's response on a server
 * Heartline is attached to — and every route's wrong method gets 405 with the
 * Allow the route declares.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createHeartline, type Heartline } from "../../src/index.js";
import { ROUTES } from "../../src/server/routes.js";
import { errorCode, rawExchange } from "../fuzz/raw-http.js";
import { quietLogger, withServer } from "../helpers/server.js";

const OPTIONS = { allowedOrigins: ["https://ok.example"], transports: ["sse", "poll"] as ("sse" | "poll")[], maxChannelsPerConnection: 2 };
const BAD_ORIGIN = "Origin: https://evil.example\r\n";
const WS_HEADERS = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/** [method, target, extra headers, expected status, expected code] */
const CASES: Array<[string, string, string, number, string]> = [];
for (const path of ["/sse", "/poll"]) {
  CASES.push(
    ["GET", path, BAD_ORIGIN, 403, "origin_not_allowed"], // the Origin before the parameters
    ["POST", path, BAD_ORIGIN, 403, "origin_not_allowed"], // ... and before the method
    ["POST", path, "", 405, "method_not_allowed"],
    ["GET", path, "", 400, "bad_request"], // no channel=
    ["GET", `${path}?channel=a&channel=b&channel=c`, "", 400, "too_many_channels"],
    ["GET", `${path}?channel=a&channel=a&channel=b&timeout=0`, "", 200, ""], // repeats count once
    ["GET", `${path}?channel=bad%20name`, "", 400, "bad_channel"],
    ["GET", `${path}?channel=bad%20name&channel=a&channel=b`, "", 400, "too_many_channels"], // the count before the names
    ["GET", `${path}?channel=a&cursor=%25%25`, "", 400, "bad_cursor"],
  );
}
CASES.push(
  ["GET", "/poll?channel=a&timeout=-1", "", 400, "bad_request"],
  ["GET", "/poll?channel=bad%20name&timeout=-1", "", 400, "bad_channel"], // the parameters before the hold
  ["GET", "/ws?channel=a", WS_HEADERS + BAD_ORIGIN, 404, "transport_disabled"], // a WebSocket: the transport before the Origin
  ["GET", "/ws?channel=a", BAD_ORIGIN, 403, "origin_not_allowed"], // /ws as a plain request: the Origin first
  ["POST", "/ws", "", 404, "transport_disabled"],
  ["GET", "/nowhere", "", 404, "not_found"],
  ["GET", "/nowhere", BAD_ORIGIN, 403, "origin_not_allowed"],
);

async function answer(port: number, method: string, target: string, extra: string): Promise<{ status: number; code: string }> {
  const body = method === "POST" ? "Content-Length: 0\r\n" : "";
  const a = await rawExchange(port, `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${body}${extra}\r\n`, undefined, 5000);
  // A stream admitted through the response is cut by Connection: close after its head; its status is what counts.
  return { status: a.status, code: a.status >= 400 ? (errorCode(a) ?? "") : "" };
}

describe("admission: the same refusal in the same order on both ways in", () => {
  const listened = withServer({ ...OPTIONS, pollTimeout: 1 });
  let hl: Heartline;
  let server: Server;
  let attachedPort: number;

  before(async () => {
    hl = createHeartline({ ...OPTIONS, pollTimeout: 1 }, { logger: quietLogger() });
    server = hl.attach(createServer());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    attachedPort = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await hl.close(0.5);
    await new Promise((r) => server.close(r));
  });

  for (const [method, target, extra, status, code] of CASES) {
    const what = `${method} ${target}${extra.includes("Upgrade") ? " (upgrade)" : ""}${extra.includes("evil") ? " from another origin" : ""}`;
    it(what, async () => {
      const bare = await answer(listened.port, method, target, extra);
      const attached = await answer(attachedPort, method, target, extra);
      assert.deepEqual(bare, { status, code }, `listen(): ${what}`);
      assert.deepEqual(attached, { status, code }, `attach(): ${what}`);
    });
  }
});

describe("route table", () => {
  const s = withServer();

  it("answers a method a route does not serve with 405 and the Allow it declares", async () => {
    for (const route of ROUTES) {
      if (route.method === undefined) continue;
      const path = route.prefix ? `${route.path}x` : route.path;
      const wrong = route.method === "GET" ? "DELETE" : "GET";
      const a = await rawExchange(s.port, `${wrong} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      assert.equal(a.status, 405, `${wrong} ${path}`);
      assert.equal(errorCode(a), "method_not_allowed", `${wrong} ${path}`);
      assert.match(a.head, new RegExp(`\\r\\nallow: ${route.method}\\r\\n`, "i"), `${wrong} ${path}: Allow`);
    }
  });
});
