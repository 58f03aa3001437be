/**
 * Subscriber tokens (SPEC §5) over real sockets: every 401 / 403 / 429 path
 * on WebSocket, SSE, long polling and the publish API; `public:` channels
 * without a token; HS256, RS256 and ES256 keys; algorithm confusion; resume
 * with an expired or re-scoped token; bad key files; and the behaviour with
 * no `--jwt-*` option at all (every channel public).
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { UnsecuredJWT } from "jose";
import { ConfigError, createHeartline, type Heartline } from "../../src/index.js";
import { keyFile, nowSec, sign, tempDir, writeFile, type Claims, type KeyFile } from "../helpers/auth.js";
import { ACCEPTED, attempt, TRANSPORTS } from "../helpers/attempt.js";
import { getJson, publishHttp, quietLogger, waitFor, withServer, WsClient, type TestServer } from "../helpers/server.js";

const SECRET = "heartline-test-secret-0123456789abcdef";
const API_KEY = "test-api-key";

async function assertIdle(hl: Heartline): Promise<void> {
  await waitFor(() => hl.connections === 0 && hl.hub.totalSubscriptions === 0 && hl.hub.totalWaiters === 0, 5000, "connections to close");
  assert.deepEqual({ ...hl.connectionsByTransport }, { ws: 0, sse: 0, poll: 0 });
}

function assertRefused(r: { status: number; body: any }, status: number, code: string): void {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(r.body?.error?.code, code, JSON.stringify(r.body));
  assert.equal(typeof r.body.error.message, "string");
}

/** Publishes with the API key (the backend). */
const backend = (s: TestServer, channel: string, data: unknown) => publishHttp(s, channel, data, { Authorization: `Bearer ${API_KEY}` });

describe("auth with --jwt-secret (HS256)", () => {
  const token = (claims: Claims = {}) => sign({ sub: "alice", exp: nowSec() + 3600, channels: ["chat:*", "news"], ...claims }, SECRET);

  const s = withServer({ jwtSecret: SECRET, apiKey: API_KEY, clientPublish: ["game:*", "public:*", "chat:*"] });

  for (const t of TRANSPORTS) {
    describe(`${t}: refusals before anything is opened`, () => {
      it("a private channel without a token → 401 unauthorized", async () => {
        assertRefused(await attempt(s, t, "channel=chat:1"), 401, "unauthorized");
        await assertIdle(s.hl);
      });

      it("a garbled token → 401 unauthorized, in the query or in Authorization: Bearer", async () => {
        assertRefused(await attempt(s, t, "channel=chat:1&token=not.a.jwt"), 401, "unauthorized");
        assertRefused(await attempt(s, t, "channel=chat:1", { Authorization: "Bearer abc" }), 401, "unauthorized");
        await assertIdle(s.hl);
      });

      it("a token signed with another secret → 401 unauthorized", async () => {
        const forged = await sign({ sub: "alice", exp: nowSec() + 60, channels: ["*"] }, "another-secret-another-secret-xx");
        assertRefused(await attempt(s, t, `channel=chat:1&token=${forged}`), 401, "unauthorized");
      });

      it("an expired token → 401 token_expired", async () => {
        const old = await token({ exp: nowSec() - 5 });
        assertRefused(await attempt(s, t, `channel=chat:1&token=${old}`), 401, "token_expired");
        assertRefused(await attempt(s, t, "channel=chat:1", { Authorization: `Bearer ${old}` }), 401, "token_expired");
      });

      it("a token without sub or exp, or with channels that are not an array of patterns → 401 unauthorized", async () => {
        for (const bad of [
          await sign({ exp: nowSec() + 60, channels: ["*"] }, SECRET),
          await sign({ sub: "alice", channels: ["*"] }, SECRET),
          await sign({ sub: 42, exp: nowSec() + 60, channels: ["*"] }, SECRET),
          await sign({ sub: "alice", exp: "soon", channels: ["*"] }, SECRET),
          await token({ channels: "chat:*" }),
          await token({ channels: ["chat:*", "bad channel"] }),
        ]) {
          assertRefused(await attempt(s, t, `channel=chat:1&token=${bad}`), 401, "unauthorized");
        }
      });

      it("a channel outside the token's channels → 403 forbidden, even next to allowed ones", async () => {
        const tok = await token();
        assertRefused(await attempt(s, t, `channel=secret:1&token=${tok}`), 403, "forbidden");
        assertRefused(await attempt(s, t, `channel=chat:1&channel=secret:1&token=${tok}`), 403, "forbidden");
        assertRefused(await attempt(s, t, `channel=newsroom&token=${tok}`), 403, "forbidden");
        await assertIdle(s.hl);
      });

      it("a token that is present but invalid is refused even for public channels", async () => {
        assertRefused(await attempt(s, t, "channel=public:lobby&token=garbage"), 401, "unauthorized");
      });

      it("accepted: a valid token in the query or in Authorization: Bearer; public: channels without any token", async () => {
        const tok = await token();
        assert.equal((await attempt(s, t, `channel=chat:1&channel=news&token=${tok}`)).status, ACCEPTED[t]);
        assert.equal((await attempt(s, t, "channel=chat:1", { Authorization: `Bearer ${tok}` })).status, ACCEPTED[t]);
        assert.equal((await attempt(s, t, "channel=public:lobby&channel=public:news")).status, ACCEPTED[t]);
        await assertIdle(s.hl);
      });
    });
  }

  it("the connections refused for tokens are counted in heartline_connections_rejected_total", async () => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    for (const reason of ["unauthorized", "token_expired", "forbidden"]) {
      const m = new RegExp(`^heartline_connections_rejected_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(text);
      assert.ok(m && Number(m[1]) > 0, `${reason} refusals counted`);
    }
  });

  describe("WebSocket frames", () => {
    it("a subscribe frame outside the claims gets error forbidden; the connection stays and allowed channels work", async () => {
      const ws = await WsClient.connect(`${s.wsUrl}/ws?token=${await token()}`);
      ws.send({ type: "subscribe", channel: "secret:1", id: 1 });
      assert.deepEqual(await ws.next((f) => f.type === "error"), {
        type: "error",
        code: "forbidden",
        message: "the token does not allow subscribing to secret:1",
        channel: "secret:1",
        id: 1,
      });
      ws.send({ type: "subscribe", channel: "chat:2", id: 2 });
      await ws.next((f) => f.type === "subscribed" && f.channel === "chat:2");
      assert.equal(s.hl.hub.subscriberCount("secret:1"), 0);
      await backend(s, "secret:1", "hidden");
      await backend(s, "chat:2", "visible");
      assert.deepEqual(await ws.next((f) => f.type === "message"), { type: "message", channel: "chat:2", offset: 1, data: "visible" });
      assert.equal(ws.messages("secret:1").length, 0);
      ws.close();
      await assertIdle(s.hl);
    });

    it("a connection without a token gets public channels, and error unauthorized for private ones", async () => {
      const ws = await WsClient.connect(`${s.wsUrl}/ws`);
      ws.send({ type: "subscribe", channel: "chat:3", id: "a" });
      const err = await ws.next((f) => f.type === "error");
      assert.equal(err.code, "unauthorized");
      assert.equal(err.channel, "chat:3");
      assert.equal(err.id, "a");
      ws.send({ type: "subscribe", channel: "public:3" });
      await ws.next((f) => f.type === "subscribed" && f.channel === "public:3");
      await backend(s, "chat:3", 1);
      await backend(s, "public:3", 2);
      assert.deepEqual(await ws.next((f) => f.type === "message"), { type: "message", channel: "public:3", offset: 1, data: 2 });
      assert.equal(ws.ws.readyState, ws.ws.OPEN);
      ws.close();
      await assertIdle(s.hl);
    });

    it("publish frames: allowed by --client-publish and the publish claim; forbidden or unauthorized otherwise", async () => {
      const tok = await token({ publish: ["game:1"] });
      const ws = await WsClient.connect(`${s.wsUrl}/ws?token=${tok}`);
      ws.send({ type: "publish", channel: "game:1", data: "move", id: 1 });
      const ok = await ws.next((f) => f.id === 1);
      assert.equal(ok.type, "published");
      assert.equal(ok.offset, 1);
      ws.send({ type: "publish", channel: "game:2", data: "move", id: 2 });
      assert.deepEqual(await ws.next((f) => f.id === 2), {
        type: "error",
        code: "forbidden",
        message: "the token does not allow publishing to game:2",
        channel: "game:2",
        id: 2,
      });
      // The claim alone is not enough: --client-publish must allow the channel too.
      const ws2 = await WsClient.connect(`${s.wsUrl}/ws?token=${await token({ publish: ["*"] })}`);
      ws2.send({ type: "publish", channel: "news", data: "x", id: 3 });
      const outside = await ws2.next((f) => f.id === 3);
      assert.equal(outside.code, "forbidden");
      assert.match(String(outside.message), /--client-publish/);
      // Without a token: public channels of --client-publish only.
      const anon = await WsClient.connect(`${s.wsUrl}/ws`);
      anon.send({ type: "publish", channel: "game:1", data: "x", id: 4 });
      assert.equal((await anon.next((f) => f.id === 4)).code, "unauthorized");
      anon.send({ type: "publish", channel: "public:chat", data: "x", id: 5 });
      assert.equal((await anon.next((f) => f.id === 5)).type, "published");
      assert.equal((await getJson(`${s.url}/api/channels/game:2`, { headers: { Authorization: `Bearer ${API_KEY}` } })).body.offset, 0, "nothing was stored by a refused publish");
      assert.equal((await getJson(`${s.url}/api/channels/game:1`, { headers: { Authorization: `Bearer ${API_KEY}` } })).body.offset, 1);
      for (const c of [ws, ws2, anon]) c.close();
      await assertIdle(s.hl);
    });
  });

  describe("POST /api/publish with client tokens", () => {
    it("a token may publish where --client-publish and its publish claim both allow (Bearer or token=)", async () => {
      const tok = await token({ publish: ["chat:*"] });
      const r = await publishHttp(s, "chat:pub", { n: 1 }, { Authorization: `Bearer ${tok}` });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.offset, 1);
      const q = await getJson(`${s.url}/api/publish?token=${tok}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ channel: "chat:pub", data: { n: 2 } }),
      });
      assert.equal(q.status, 200, JSON.stringify(q.body));
      assert.equal(q.body.offset, 2);
    });

    it("403 forbidden outside the publish claim, or outside --client-publish", async () => {
      const tok = await token({ publish: ["chat:*"] });
      assertRefused(await publishHttp(s, "game:9", 1, { Authorization: `Bearer ${tok}` }), 403, "forbidden");
      const all = await token({ publish: ["*"] });
      assertRefused(await publishHttp(s, "news", 1, { Authorization: `Bearer ${all}` }), 403, "forbidden");
      const none = await token();
      assertRefused(await publishHttp(s, "chat:pub2", 1, { Authorization: `Bearer ${none}` }), 403, "forbidden");
      assert.equal((await getJson(`${s.url}/api/channels/game:9`, { headers: { Authorization: `Bearer ${API_KEY}` } })).body.offset, 0);
    });

    it("401 without a token on a private --client-publish channel, or with an invalid or expired one", async () => {
      assertRefused(await publishHttp(s, "game:9", 1), 401, "unauthorized");
      assertRefused(await publishHttp(s, "game:9", 1, { Authorization: "Bearer nope" }), 401, "unauthorized");
      const old = await token({ publish: ["*"], exp: nowSec() - 1 });
      assertRefused(await publishHttp(s, "game:9", 1, { Authorization: `Bearer ${old}` }), 401, "token_expired");
      const forged = await sign({ sub: "x", exp: nowSec() + 60, publish: ["*"] }, "wrong-secret-wrong-secret-wrong!");
      assertRefused(await publishHttp(s, "game:9", 1, { Authorization: `Bearer ${forged}` }), 401, "unauthorized");
    });

    it("public: channels of --client-publish need no token; the API key may publish anywhere", async () => {
      assert.equal((await publishHttp(s, "public:open", 1)).status, 200);
      assert.equal((await backend(s, "secret:anything", 1)).status, 200);
      assert.equal((await backend(s, "game:9", 1)).status, 200);
    });
  });

  describe("resume re-checks the token", () => {
    it("an expired or re-scoped token can never resume, on any transport; a fresh one resumes without loss", async () => {
      const tok = await token();
      // Take a position on chat:resume on every transport.
      const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=chat:resume&token=${tok}`);
      const sub = await ws.next((f) => f.type === "subscribed");
      ws.close();
      const polled = await getJson(`${s.url}/poll?channel=chat:resume&token=${tok}`);
      assert.equal(polled.status, 200);
      const cursor: string = polled.body.cursor;
      await assertIdle(s.hl);
      // Messages published while nobody is connected.
      for (let i = 1; i <= 3; i++) assert.equal((await backend(s, "chat:resume", i)).status, 200);

      const expired = await token({ exp: nowSec() - 1 });
      const rescoped = await token({ channels: ["news"] });
      for (const t of TRANSPORTS) {
        const resume = t === "sse" ? `lastEventId=${cursor}` : `cursor=${cursor}`;
        assertRefused(await attempt(s, t, `channel=chat:resume&${resume}&token=${expired}`), 401, "token_expired");
        assertRefused(await attempt(s, t, `channel=chat:resume&${resume}&token=${rescoped}`), 403, "forbidden");
      }
      assertRefused(await attempt(s, "sse", "channel=chat:resume", { "Last-Event-ID": cursor, Authorization: `Bearer ${expired}` }), 401, "token_expired");
      await assertIdle(s.hl);

      // A fresh token resumes from the same position and gets every message exactly once.
      const fresh = await token();
      const back = await WsClient.connect(`${s.wsUrl}/ws?token=${fresh}`);
      back.send({ type: "subscribe", channel: "chat:resume", since: { epoch: sub.epoch, offset: sub.offset } });
      await waitFor(() => back.messages("chat:resume").length === 3, 5000, "the replay");
      assert.deepEqual(
        back.messages("chat:resume").map((m) => m.data),
        [1, 2, 3],
      );
      const p = await getJson(`${s.url}/poll?channel=chat:resume&cursor=${cursor}&token=${fresh}`);
      assert.deepEqual(
        p.body.messages.map((m: { data: unknown }) => m.data),
        [1, 2, 3],
      );
      back.close();
      await assertIdle(s.hl);
    });
  });
});

describe("per-IP limits with tokens", () => {
  const token = (sub = "bob") => sign({ sub, exp: nowSec() + 3600, channels: ["room:*"] }, SECRET);

  const s = withServer({ jwtSecret: SECRET, maxConnectionsPerIp: 1, trustProxy: true });

  it("at the limit a valid token gets 429 on ws, sse and a held poll; an invalid one still gets 401 and takes no slot", async () => {
    const tok = await token();
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=room:1&token=${tok}`);
    await ws.next((f) => f.type === "subscribed");
    for (const t of TRANSPORTS) {
      if (t === "poll") continue;
      const r = await attempt(s, t, `channel=room:1&token=${tok}`);
      assertRefused(r, 429, "too_many_connections_per_ip");
      assertRefused(await attempt(s, t, "channel=room:1&token=junk"), 401, "unauthorized");
    }
    // A poll that would be held needs a slot too; one answered at once does not.
    const { cursor } = (await getJson(`${s.url}/poll?channel=room:1&token=${tok}`)).body;
    const held = await getJson(`${s.url}/poll?channel=room:1&cursor=${cursor}&token=${tok}&timeout=5`);
    assertRefused(held, 429, "too_many_connections_per_ip");
    assert.equal(s.hl.connections, 1);
    ws.close();
    await assertIdle(s.hl);
    // Refusals for tokens never used a slot: the address can connect again.
    const again = await WsClient.connect(`${s.wsUrl}/ws?channel=room:1&token=${tok}`);
    await again.next((f) => f.type === "subscribed");
    again.close();
    await assertIdle(s.hl);
  });

  it("with --trust-proxy each X-Forwarded-For address has its own slot, whatever the token", async () => {
    const a = await WsClient.connect(`${s.wsUrl}/ws?channel=room:2&token=${await token("a")}`, { headers: { "X-Forwarded-For": "203.0.113.1" } });
    const b = await WsClient.connect(`${s.wsUrl}/ws?channel=room:2&token=${await token("a")}`, { headers: { "X-Forwarded-For": "203.0.113.2" } });
    await a.next((f) => f.type === "subscribed");
    await b.next((f) => f.type === "subscribed");
    assertRefused(
      await attempt(s, "sse", `channel=room:2&token=${await token("other")}`, { "X-Forwarded-For": "198.51.100.7, 203.0.113.1" }),
      429,
      "too_many_connections_per_ip",
    );
    assertRefused(await attempt(s, "ws", `channel=room:2&token=bad`, { "X-Forwarded-For": "203.0.113.1" }), 401, "unauthorized");
    assert.equal(s.hl.connections, 2);
    a.close();
    b.close();
    await assertIdle(s.hl);
  });
});

describe("auth with --jwt-public-key", () => {
  const tmp = tempDir();
  let rsa: KeyFile;
  let ec: KeyFile;
  let otherRsa: KeyFile;

  before(async () => {
    [rsa, ec, otherRsa] = await Promise.all([keyFile("RS256", tmp.dir), keyFile("ES256", tmp.dir), keyFile("RS256", tmp.dir)]);
  });
  // The key files exist only once the hook above ran: the options are read when the servers start.
  const rs = withServer(() => ({ jwtPublicKey: rsa.path, clientPublish: ["game:*"], apiKey: API_KEY }));
  const es = withServer(() => ({ jwtPublicKey: ec.path }));
  const both = withServer(() => ({ jwtPublicKey: rsa.path, jwtSecret: SECRET }));
  after(() => tmp.cleanup());

  const claims = (): Claims => ({ sub: "carol", exp: nowSec() + 600, channels: ["game:*"], publish: ["game:*"] });

  it("RS256: a token signed with the RSA private key works on ws, sse, poll and publish", async () => {
    const tok = await sign(claims(), rsa.privateKey, "RS256");
    for (const t of TRANSPORTS) assert.equal((await attempt(rs, t, `channel=game:1&token=${tok}`)).status, ACCEPTED[t], t);
    const r = await publishHttp(rs, "game:1", "x", { Authorization: `Bearer ${tok}` });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await assertIdle(rs.hl);
  });

  it("alg confusion: an HS256 token keyed with the RSA public key's PEM text → 401 everywhere", async () => {
    const confused = await sign(claims(), rsa.pem, "HS256");
    for (const t of TRANSPORTS) assertRefused(await attempt(rs, t, `channel=game:1&token=${confused}`), 401, "unauthorized");
    assertRefused(await publishHttp(rs, "game:1", "x", { Authorization: `Bearer ${confused}` }), 401, "unauthorized");
    // Also where an HS256 secret is configured: the PEM is not the secret.
    for (const t of TRANSPORTS) assertRefused(await attempt(both, t, `channel=game:1&token=${confused}`), 401, "unauthorized");
  });

  it("alg none, a token of another RSA key, and an ES256 token against an RSA key → 401", async () => {
    const none = new UnsecuredJWT(claims() as Record<string, unknown>).encode();
    const other = await sign(claims(), otherRsa.privateKey, "RS256");
    const ecTok = await sign(claims(), ec.privateKey, "ES256");
    // An RS256 header over an ES256 signature.
    const relabelled = await sign(claims(), ec.privateKey, "ES256").then((t) => {
      const [, p, sig] = t.split(".");
      return Buffer.from(JSON.stringify({ alg: "RS256" })).toString("base64url") + "." + p + "." + sig;
    });
    for (const tok of [none, other, ecTok, relabelled]) {
      for (const t of TRANSPORTS) assertRefused(await attempt(rs, t, `channel=game:1&token=${tok}`), 401, "unauthorized");
    }
    await assertIdle(rs.hl);
  });

  it("ES256: a token of the EC key works; RS256 and HS256 tokens do not", async () => {
    const tok = await sign(claims(), ec.privateKey, "ES256");
    for (const t of TRANSPORTS) assert.equal((await attempt(es, t, `channel=game:1&token=${tok}`)).status, ACCEPTED[t], t);
    const rsTok = await sign(claims(), rsa.privateKey, "RS256");
    const hsTok = await sign(claims(), ec.pem, "HS256");
    for (const bad of [rsTok, hsTok]) {
      for (const t of TRANSPORTS) assertRefused(await attempt(es, t, `channel=game:1&token=${bad}`), 401, "unauthorized");
    }
    await assertIdle(es.hl);
  });

  it("with both a secret and a key, HS256 is verified with the secret and RS256 with the key", async () => {
    const hs = await sign(claims(), SECRET, "HS256");
    const rsTok = await sign(claims(), rsa.privateKey, "RS256");
    for (const tok of [hs, rsTok]) assert.equal((await attempt(both, "poll", `channel=game:1&token=${tok}`)).status, 200);
    assertRefused(await attempt(both, "poll", `channel=game:1&token=${await sign(claims(), otherRsa.privateKey, "RS256")}`), 401, "unauthorized");
  });

  describe("bad key files are refused at start with a ConfigError naming --jwt-public-key", () => {
    const cases: Array<[string, () => string, RegExp]> = [
      ["a missing file", () => tmp.dir + "/missing.pem", /cannot be read \(ENOENT\)/],
      ["a file that is not PEM", () => writeFile(tmp.dir, "junk.pem", "not a key"), /is not a PEM public key/],
      [
        "a private key",
        () => writeFile(tmp.dir, "private.pem", generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string),
        /holds a private key/,
      ],
      [
        "an EC key on P-384",
        () => writeFile(tmp.dir, "p384.pem", generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ type: "spki", format: "pem" }) as string),
        /curve secp384r1; ES256 needs P-256/,
      ],
      [
        "a 1024-bit RSA key",
        () => writeFile(tmp.dir, "rsa1024.pem", generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ type: "spki", format: "pem" }) as string),
        /1024-bit RSA key; RS256 needs at least 2048 bits/,
      ],
      [
        "an Ed25519 key",
        () => writeFile(tmp.dir, "ed.pem", generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }) as string),
        /holds a ed25519 key; expected an RSA key \(RS256\) or an EC P-256 key \(ES256\)/,
      ],
    ];
    for (const [name, make, why] of cases) {
      it(name, () => {
        const path = make();
        assert.throws(
          () => createHeartline({ jwtPublicKey: path }, { logger: quietLogger() }),
          (err: unknown) => {
            assert.ok(err instanceof ConfigError, String(err));
            assert.match(err.message, /^invalid value for --jwt-public-key: /);
            assert.ok(err.message.includes(JSON.stringify(path)), err.message);
            assert.match(err.message, why);
            return true;
          },
        );
      });
    }
  });
});

describe("without --jwt-secret or --jwt-public-key every channel is public", () => {
  const s = withServer({});

  it("private channels open on every transport with no token, and a token parameter is ignored", async () => {
    for (const t of TRANSPORTS) {
      assert.equal((await attempt(s, t, "channel=chat:1")).status, ACCEPTED[t]);
      assert.equal((await attempt(s, t, "channel=chat:1&token=garbage", { Authorization: "Bearer junk" })).status, ACCEPTED[t]);
    }
    await assertIdle(s.hl);
  });

  it("a refresh frame gets error bad_request and the connection stays", async () => {
    const ws = await WsClient.connect(`${s.wsUrl}/ws?channel=chat:2`);
    await ws.next((f) => f.type === "subscribed");
    ws.send({ type: "refresh", token: "x", id: 9 });
    const err = await ws.next((f) => f.type === "error");
    assert.equal(err.code, "bad_request");
    assert.equal(err.id, 9);
    assert.match(String(err.message), /does not use tokens/);
    await publishHttp(s, "chat:2", "still here");
    assert.equal((await ws.next((f) => f.type === "message")).data, "still here");
    ws.close();
    await assertIdle(s.hl);
  });
});
