/** The README's nginx configuration, run against a real nginx. */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { configFromOptions } from "../../src/config.js";
import { Proxy, proxySkip, readmeBlock } from "../helpers/proxies.js";
import { startServer, upgrade, type TestServer } from "../helpers/server.js";
import { proxySuite } from "./suite.js";

proxySuite("nginx");

describe("the README's nginx configuration", { skip: proxySkip("nginx") }, () => {
  it("closes idle upstream connections before Heartline's default --keep-alive-timeout", () => {
    const m = /^\s*keepalive_timeout\s+(\d+)s;/m.exec(readmeBlock("nginx"));
    assert.ok(m, "the upstream sets keepalive_timeout");
    assert.ok(Number(m[1]) < configFromOptions().keepAliveTimeout, `${m[1]} s is not below ${configFromOptions().keepAliveTimeout} s`);
  });

  describe("on a non-default port, with --allowed-origins set", () => {
    let server: TestServer;
    let proxy: Proxy;
    before(async () => {
      server = await startServer({ allowedOrigins: "http://other.example", trustProxy: true });
      proxy = await Proxy.start("nginx", server.port);
    });
    after(async () => {
      await proxy?.stop();
      await server?.close();
    });

    it("accepts a WebSocket from a page that Heartline served through the proxy", async () => {
      const host = `127.0.0.1:${proxy.port}`;
      const a = await upgrade(proxy.port, "/ws?channel=x", { Host: host, Origin: `http://${host}` });
      assert.equal(a.status, 101, JSON.stringify(a.body));
      const page = await fetch(`${proxy.url}/heartline.js`, { headers: { Origin: `http://${host}` } });
      assert.notEqual(page.status, 403);
      // Another site is still refused.
      const other = await upgrade(proxy.port, "/ws?channel=x", { Host: host, Origin: "http://evil.example" });
      assert.equal(other.status, 403);
    });
  });
});
