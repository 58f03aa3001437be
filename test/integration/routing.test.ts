/**
 * Routing on the path exactly as received: targets that a proxy in front
 * could read as another path (`//x/metrics`, dot segments, their percent
 * encodings, backslashes, absolute-form) are refused with 400, on servers made
 * by listen() and on servers Heartline is attached to, for every way in
 * (request, WebSocket upgrade, the bare-socket /sse and /poll).
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createHeartline, type Heartline } from "../../src/index.js";
import { errorCode, rawExchange, type RawAnswer } from "../fuzz/raw-http.js";
import { getJson, quietLogger, withServer } from "../helpers/server.js";

const WS_HEADERS = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

function get(port: number, target: string, extra = ""): Promise<RawAnswer> {
  return rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`);
}

function post(port: number, target: string, body: string): Promise<RawAnswer> {
  return rawExchange(
    port,
    `POST ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** Paths that normalise (by WHATWG URL, or a decoding proxy) to a Heartline route. */
const HOSTILE_GETS = [
  "//x/metrics",
  "//metrics",
  "/x//metrics",
  "//x/api/channels/secret:x",
  "/healthz/%2e%2e/metrics",
  "/healthz/%2E%2E/metrics",
  "/healthz/.%2e/metrics",
  "/healthz/../metrics",
  "/./metrics",
  "/healthz%2f..%2fmetrics",
  "/api/channels/%2e%2e/%2e%2e/metrics",
  "/healthz%5c..%5cmetrics",
  "http://x/metrics",
];

function assertRefused(a: RawAnswer, what: string): void {
  assert.equal(a.status, 400, `${what}: ${a.head.split("\r\n")[0]} ${a.body.slice(0, 200)}`);
  assert.equal(errorCode(a), "bad_request", what);
  assert.doesNotMatch(a.body, /heartline_|"epoch"/, `${what} reached a route`);
}

describe("routing on the raw path (listen)", () => {
  const s = withServer({});

  it("refuses //, dot segments, their percent encodings, backslashes and absolute-form with 400 bad_request", async () => {
    for (const target of HOSTILE_GETS) assertRefused(await get(s.port, target), `GET ${target}`);
    // A raw backslash may already be refused by the HTTP parser: never served either way.
    const slash = await get(s.port, "/healthz\\..\\metrics");
    assert.equal(slash.status, 400, slash.head);
    assert.doesNotMatch(slash.body, /heartline_/);
  });

  it("publishes nothing through POST //x/api/publish or /x/%2e%2e/api/publish (loopback, no key)", async () => {
    const body = JSON.stringify({ channel: "route:pub", data: 1 });
    assertRefused(await post(s.port, "//x/api/publish", body), "POST //x/api/publish");
    assertRefused(await post(s.port, "/x/%2e%2e/api/publish", body), "POST /x/%2e%2e/api/publish");
    assertRefused(await post(s.port, "/api/./publish", body), "POST /api/./publish");
    assert.equal((await getJson(`${s.url}/api/channels/route:pub`)).body.offset, 0, "nothing was published");
    assert.equal((await post(s.port, "/api/publish", body)).status, 200, "the plain path still publishes");
  });

  it("refuses the same forms of /sse, /poll and the WebSocket upgrade", async () => {
    for (const target of ["//sse?channel=r", "/x/../sse?channel=r", "/x/%2e%2e/sse?channel=r", "//poll?channel=r", "/./poll?channel=r", "/x%2f..%2fpoll?channel=r"]) {
      assertRefused(await get(s.port, target), `GET ${target}`);
    }
    for (const target of ["//ws?channel=r", "/x/../ws", "/x/%2E%2E/ws", "/./ws"]) {
      assertRefused(await get(s.port, target, WS_HEADERS), `upgrade ${target}`);
    }
    assert.equal(s.hl.connections, 0);
  });

  it("still serves the plain paths, and channel names with an encoded slash", async () => {
    assert.equal((await get(s.port, "/healthz")).status, 200);
    assert.equal((await get(s.port, "/metrics")).status, 200);
    await s.hl.publish("a/b", 1);
    const info = await get(s.port, "/api/channels/a%2fb");
    assert.equal(info.status, 200, info.body);
    assert.equal(JSON.parse(info.body).channel, "a/b");
    assert.equal(JSON.parse(info.body).offset, 1);
    assert.equal((await get(s.port, "/poll?channel=r")).status, 200);
    assert.equal((await get(s.port, "/ws?channel=r", WS_HEADERS)).status, 101);
  });
});

describe("routing on the raw path (attach)", () => {
  let server: Server;
  let bare: Server;
  let hl: Heartline;
  let port: number;
  let barePort: number;

  before(async () => {
    hl = createHeartline({}, { logger: quietLogger() });
    // An app with its own routes: whatever is not Heartline's answers 418 from the app.
    server = createServer((_req, res) => {
      res.writeHead(418, { "Content-Type": "text/plain" });
      res.end("app");
    });
    server.on("upgrade", (_req, socket) => socket.end("HTTP/1.1 418 App\r\nContent-Length: 3\r\nConnection: close\r\n\r\napp"));
    hl.attach(server);
    // An app without routes of its own: Heartline answers everything.
    bare = createServer();
    hl.attach(bare);
    await Promise.all([server, bare].map((x) => new Promise<void>((r) => x.listen(0, "127.0.0.1", () => r()))));
    port = (server.address() as AddressInfo).port;
    barePort = (bare.address() as AddressInfo).port;
  });
  after(async () => {
    await hl.close();
    await Promise.all([server, bare].map((x) => new Promise((r) => x.close(r))));
  });

  it("leaves a hostile target to the app's routes, never to a Heartline route", async () => {
    for (const target of HOSTILE_GETS) {
      const a = await get(port, target);
      assert.equal(a.status, 418, `GET ${target}: ${a.head.split("\r\n")[0]} ${a.body.slice(0, 100)}`);
    }
    const up = await get(port, "//ws?channel=r", WS_HEADERS);
    assert.equal(up.status, 418, "an upgrade on //ws goes to the app's upgrade listener");
    assert.equal((await get(port, "/healthz")).status, 200, "Heartline's own paths are served");
  });

  it("refuses a hostile target with 400 when the app has no routes of its own", async () => {
    for (const target of HOSTILE_GETS) assertRefused(await get(barePort, target), `GET ${target}`);
    for (const target of ["//ws", "/x/%2e%2e/ws"]) assertRefused(await get(barePort, target, WS_HEADERS), `upgrade ${target}`);
    const body = JSON.stringify({ channel: "route:att", data: 1 });
    assertRefused(await post(barePort, "//x/api/publish", body), "POST //x/api/publish");
    assert.equal((await hl.hub.position("route:att")).offset, 0, "nothing was published");
  });
});
