/**
 * Who counts as loopback (may publish without --api-key), the client address
 * behind --trust-proxy, the JSON content type of publishes, and the Origin
 * rule against DNS rebinding and proxies that drop or keep the port.
 *
 * Every request here comes from 127.0.0.1: "remote" means a request carrying
 * X-Forwarded-For (read with --trust-proxy), as a proxy on this machine sends it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { errorCode, rawExchange, type RawAnswer } from "../fuzz/raw-http.js";
import { getJson, waitFor, withServer, type TestServer } from "../helpers/server.js";

const WS_HEADERS = { Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==" };

/** One raw request with exactly these headers (Host included), so Host and Origin are what a browser or proxy would send. */
function send(port: number, method: string, target: string, headers: Record<string, string>, body = ""): Promise<RawAnswer> {
  const all: Record<string, string> = { Host: `127.0.0.1:${port}`, ...headers };
  if (!("Connection" in all)) all.Connection = "close";
  if (body !== "") all["Content-Length"] = String(Buffer.byteLength(body));
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(all)) head += `${k}: ${v}\r\n`;
  return rawExchange(port, head + "\r\n" + body);
}

function publish(port: number, channel: string, headers: Record<string, string>, contentType = "application/json"): Promise<RawAnswer> {
  return send(port, "POST", "/api/publish", { "Content-Type": contentType, ...headers }, JSON.stringify({ channel, data: 1 }));
}

async function offset(s: TestServer, channel: string): Promise<number> {
  return (await getJson(`${s.url}/api/channels/${channel}`)).body.offset;
}

describe("the loopback rule of publishing without --api-key", () => {
  const proxied = withServer({ trustProxy: true });
  const direct = withServer({});

  it("with --trust-proxy, no forwarded address makes a request loopback", async () => {
    for (const xff of ["127.0.0.1", "::1", "127.1", "::ffff:127.0.0.1", "unknown", "[::1]:443", "127.0.0.1:80", "[2001:db8::1]:443", "203.0.113.9, 127.0.0.1", "garbage!"]) {
      const a = await publish(proxied.port, "lb:proxied", { "X-Forwarded-For": xff });
      assert.ok(a.status === 403 || a.status === 400, `X-Forwarded-For: ${xff} answered ${a.status} ${a.body}`);
      assert.equal(errorCode(a), a.status === 403 ? "forbidden" : "bad_request", xff);
    }
    assert.equal(await offset(proxied, "lb:proxied"), 0, "nothing was published");
  });

  it("refuses an unparseable last hop with 400, naming it", async () => {
    for (const xff of ["unknown", "127.1", "203.0.113.9, _hidden"]) {
      const a = await send(proxied.port, "GET", "/sse?channel=lb:x", { "X-Forwarded-For": xff });
      assert.equal(a.status, 400, xff);
      assert.equal(errorCode(a), "bad_request");
      assert.match(JSON.parse(a.body).error.message, /X-Forwarded-For/);
    }
  });

  it("without --trust-proxy, a loopback peer carrying X-Forwarded-For, Forwarded or X-Real-IP is not loopback", async () => {
    const forwarded: Array<Record<string, string>> = [
      { "X-Forwarded-For": "127.0.0.1" },
      { "X-Forwarded-For": "203.0.113.9" },
      { Forwarded: "for=127.0.0.1" },
      { "X-Real-IP": "127.0.0.1" },
    ];
    for (const h of forwarded) {
      const a = await publish(direct.port, "lb:direct", h);
      assert.equal(a.status, 403, `${JSON.stringify(h)}: ${a.body}`);
      assert.equal(errorCode(a), "forbidden");
    }
    assert.equal(await offset(direct, "lb:direct"), 0, "nothing was published");
    // The backend on this machine, through no proxy, still publishes without a key.
    assert.equal((await publish(direct.port, "lb:direct", {})).status, 200);
    assert.equal((await publish(proxied.port, "lb:proxied", {})).status, 200);
  });
});

describe("the content type of a publish", () => {
  const s = withServer({ clientPublish: ["open:*"] });

  it("refuses anything but JSON with 415 unsupported_media_type, even from loopback (a cross-site text/plain POST)", async () => {
    for (const type of ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx", "json", undefined]) {
      const headers: Record<string, string> = { Origin: "https://evil.example" };
      if (type !== undefined) headers["Content-Type"] = type;
      const a = await send(s.port, "POST", "/api/publish", headers, JSON.stringify({ channel: "ct:1", data: 1 }));
      assert.equal(a.status, 415, `${type}: ${a.body}`);
      assert.equal(errorCode(a), "unsupported_media_type");
    }
    assert.equal((await publish(s.port, "open:1", {}, "text/plain")).status, 415, "client-publish channels too");
    assert.equal(await offset(s, "ct:1"), 0, "nothing was published");
    for (const type of ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.example+json", "application/merge-patch+json;q=1"]) {
      assert.equal((await publish(s.port, "ct:1", {}, type)).status, 200, type);
    }
    assert.equal(await offset(s, "ct:1"), 5);
  });
});

describe("origins: DNS rebinding and the server's own origin", () => {
  const s = withServer({ allowedOrigins: ["https://app.example", "https://other.example:443"] });

  /** Whether /api/publish, the WebSocket upgrade, /sse and /poll all accept (true) or all refuse with 403 origin_not_allowed (false). */
  async function decision(headers: Record<string, string>): Promise<boolean> {
    const answers = [
      await publish(s.port, "origin:x", headers),
      await send(s.port, "GET", "/ws?channel=origin:x", { ...headers, ...WS_HEADERS }),
      await send(s.port, "GET", "/sse?channel=origin:x", headers),
      await send(s.port, "GET", "/poll?channel=origin:x", headers),
    ];
    const statuses = answers.map((a) => a.status);
    if (statuses.every((x) => x === 403)) {
      for (const a of answers) assert.equal(errorCode(a), "origin_not_allowed");
      return false;
    }
    assert.deepEqual(statuses, [200, 101, 200, 200], `${JSON.stringify(headers)}: ${answers.map((a) => a.body.slice(0, 80)).join(" | ")}`);
    return true;
  }

  it("refuses a DNS-rebinding page: Origin equal to Host under a DNS name", async () => {
    const port = s.port;
    assert.equal(await decision({ Origin: `http://evil.example:${port}`, Host: `evil.example:${port}` }), false);
    assert.equal(await decision({ Origin: "http://evil.example", Host: "evil.example" }), false);
    assert.equal(await decision({ Origin: `http://evil.example:${port}`, Host: `EVIL.example:${port}` }), false);
    assert.equal(await offset(s, "origin:x"), 0, "nothing was published");
  });

  it("lets the server's own pages in under an IP address or localhost, default ports normalised", async () => {
    const port = s.port;
    assert.equal(await decision({ Origin: `http://127.0.0.1:${port}`, Host: `127.0.0.1:${port}` }), true);
    assert.equal(await decision({ Origin: `http://localhost:${port}`, Host: `localhost:${port}` }), true);
    assert.equal(await decision({ Origin: `http://[::1]:${port}`, Host: `[::1]:${port}` }), true);
    // A proxy that forwards Host with the default port spelled out, or an Origin that spells it out.
    assert.equal(await decision({ Origin: "http://127.0.0.1", Host: "127.0.0.1:80" }), true);
    assert.equal(await decision({ Origin: "https://127.0.0.1:443", Host: "127.0.0.1" }), true);
  });

  it("refuses an Origin whose port differs from Host's (a proxy that drops the port: use $http_host)", async () => {
    const port = s.port;
    assert.equal(await decision({ Origin: `http://127.0.0.1:${port}`, Host: "127.0.0.1" }), false);
    assert.equal(await decision({ Origin: `http://127.0.0.1:${port}`, Host: `127.0.0.1:${port + 1}` }), false);
    assert.equal(await decision({ Origin: `https://127.0.0.1:${port}`, Host: `127.0.0.1` }), false);
  });

  it("lets listed origins in whatever Host says, with default ports normalised", async () => {
    assert.equal(await decision({ Origin: "https://app.example", Host: "push.example.com" }), true);
    assert.equal(await decision({ Origin: "https://app.example:443", Host: "push.example.com" }), true);
    assert.equal(await decision({ Origin: "https://other.example", Host: "push.example.com" }), true);
    assert.equal(await decision({ Origin: "http://app.example", Host: "push.example.com" }), false, "another scheme is another origin");
    const pre = await send(s.port, "OPTIONS", "/api/publish", { Origin: "https://app.example:443" });
    assert.equal(pre.status, 204);
    assert.match(pre.head, /access-control-allow-origin: https:\/\/app\.example:443/i);
  });
});

describe("client addresses behind --trust-proxy: one bucket per address, ports dropped", () => {
  const s = withServer({ trustProxy: true, maxConnectionsPerIp: 1 });

  it("counts 203.0.113.7:5555 and 203.0.113.7:6666 as one address", async () => {
    for (const [first, second] of [
      ["203.0.113.7:5555", "203.0.113.7:6666"],
      ["[2001:db8::1]:443", "2001:db8::1"],
      ["::ffff:198.51.100.4", "198.51.100.4:1"],
    ] as const) {
      const ac = new AbortController();
      const stream = await fetch(`${s.url}/sse?channel=bucket:1`, { headers: { "X-Forwarded-For": first! }, signal: ac.signal });
      assert.equal(stream.status, 200);
      const again = await send(s.port, "GET", "/sse?channel=bucket:1", { "X-Forwarded-For": second! });
      assert.equal(again.status, 429, `${first} then ${second}: ${again.body}`);
      assert.equal(errorCode(again), "too_many_connections_per_ip");
      const other = await send(s.port, "GET", "/sse?channel=bucket:1", { "X-Forwarded-For": "192.0.2.200" });
      assert.equal(other.status, 200, "another address has its own slot");
      ac.abort();
      await stream.body?.cancel().catch(() => {});
      await waitFor(() => s.hl.connections === 0, 5000, "the streams to close");
    }
  });
});
