/**
 * Tokens from a hostile client: random strings, random JWT-shaped text,
 * headers naming any algorithm (none, HS/RS/ES confusion, unknown ones) with
 * signatures keyed by the public key's PEM, a wrong secret or random bytes,
 * and valid tokens with one character changed. Every one gets 401 (never 200,
 * 403 or 500) on every transport and on the publish API. Tokens signed with
 * the right secret but random claims are accepted exactly when the claims
 * are valid and cover the channel.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { keyFile, nowSec, sign, tempDir, upgrade, type KeyFile } from "../helpers/auth.js";
import { getJson, waitFor, withServer, type TestServer } from "../helpers/server.js";
import { anyText, params } from "./fuzz-params.js";

const SECRET = "heartline-fuzz-token-secret-0123456789";
const b64 = (v: string | Uint8Array) => Buffer.from(v).toString("base64url");

/** A compact JWS over `header` and `payload` (JSON values or raw text), signed with HMAC-SHA256 by `key`, or with `raw` bytes. */
function compact(header: unknown, payload: unknown, sig: { hmac: string } | { raw: Uint8Array }): string {
  const h = b64(typeof header === "string" ? header : (JSON.stringify(header) ?? ""));
  const p = b64(typeof payload === "string" ? payload : (JSON.stringify(payload) ?? ""));
  const s = "hmac" in sig ? createHmac("sha256", sig.hmac).update(`${h}.${p}`).digest("base64url") : b64(sig.raw);
  return `${h}.${p}.${s}`;
}

type Where = "poll" | "poll-header" | "sse" | "ws" | "publish";

describe("fuzz: tokens", () => {
  const tmp = tempDir();
  let rsa: KeyFile;
  const valid: string[] = [];

  before(async () => {
    rsa = await keyFile("RS256", tmp.dir);
  });
  // An API key, so the publish API does not trust loopback callers. The key file exists only once the
  // hook above ran: the options of `rs` are read when it starts.
  const hs = withServer({ jwtSecret: SECRET, clientPublish: ["priv:*"], apiKey: "fuzz-key" });
  const rs = withServer(() => ({ jwtPublicKey: rsa.path, clientPublish: ["priv:*"], apiKey: "fuzz-key" }));
  before(async () => {
    const claims = { sub: "z", exp: nowSec() + 3600, channels: ["priv:*"], publish: ["priv:*"] };
    valid.push(await sign(claims, SECRET), await sign(claims, rsa.privateKey, "RS256"), await sign({ ...claims, channels: ["*"] }, SECRET));
  });
  after(() => tmp.cleanup());

  /** Sends `token` to `server` the way `where` says; resolves with the HTTP status and error code. */
  async function present(server: TestServer, token: string, where: Where): Promise<{ status: number; code: string | undefined }> {
    // URLSearchParams, unlike encodeURIComponent, takes lone surrogates (as U+FFFD).
    const q = new URLSearchParams({ channel: "priv:x", token }).toString();
    const headerSafe = /^[\x21-\x7e]+$/.test(token);
    let r: { status: number; body: any };
    switch (where) {
      case "poll":
        r = await getJson(`${server.url}/poll?${q}`);
        break;
      case "poll-header":
        r = headerSafe ? await getJson(`${server.url}/poll?channel=priv:x`, { headers: { Authorization: `Bearer ${token}` } }) : await getJson(`${server.url}/poll?${q}`);
        break;
      case "sse": {
        const ac = new AbortController();
        const res = await fetch(`${server.url}/sse?${q}`, { signal: ac.signal });
        r = { status: res.status, body: res.status === 200 ? undefined : await res.json() };
        ac.abort();
        break;
      }
      case "ws":
        r = await upgrade(server.port, `/ws?${q}`);
        break;
      case "publish":
        r = await getJson(`${server.url}/api/publish?${new URLSearchParams({ token })}`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ channel: "priv:x", data: 1 }),
        });
        break;
    }
    return { status: r.status, code: r.body?.error?.code };
  }

  const where = fc.constantFrom<Where>("poll", "poll-header", "sse", "ws", "publish");
  const alg = fc.oneof(fc.constantFrom("none", "None", "HS256", "HS384", "HS512", "RS256", "ES256", "PS256", "EdDSA", "", "hs256"), fc.string({ maxLength: 6 }), fc.anything({ maxDepth: 0 }));
  const header = fc.oneof(
    fc.record({ alg, typ: fc.option(fc.constantFrom("JWT", "jwt", "at+jwt")), kid: fc.option(fc.string({ maxLength: 8 })), crit: fc.option(fc.anything({ maxDepth: 1 })), b64: fc.option(fc.boolean()) }, { requiredKeys: ["alg"] }),
    fc.anything({ maxDepth: 1 }),
    fc.string({ maxLength: 20 }),
  );
  const claims = fc.record(
    {
      sub: fc.oneof(fc.constant("z"), fc.anything({ maxDepth: 0 })),
      exp: fc.oneof(fc.constant(nowSec() + 600), fc.integer(), fc.double(), fc.anything({ maxDepth: 0 })),
      nbf: fc.integer(),
      channels: fc.oneof(fc.constant(["priv:*"]), fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }), fc.anything({ maxDepth: 1 })),
      publish: fc.oneof(fc.constant(["priv:*"]), fc.anything({ maxDepth: 1 })),
    },
    { requiredKeys: [] },
  );
  /** Keys an attacker may sign with: the public key's PEM text (alg confusion), a wrong secret, or none at all. */
  const signature = fc.oneof(
    fc.constant(null).map(() => ({ hmac: rsa.pem })),
    fc.constant({ hmac: "wrong-secret" }),
    fc.constant({ hmac: "" }),
    fc.uint8Array({ maxLength: 300 }).map((raw) => ({ raw })),
  );

  it("random, forged and algorithm-confused tokens always get 401 unauthorized", async () => {
    const forged = fc.oneof(
      anyText({ maxLength: 60 }),
      fc.array(fc.oneof(fc.base64String({ maxLength: 40 }), fc.string({ maxLength: 10 })), { minLength: 1, maxLength: 5 }).map((parts) => parts.join(".")),
      fc.tuple(header, claims, signature).map(([h, p, sig]) => compact(h, p, sig)),
      fc.tuple(header, claims).map(([h, p]) => compact(h, p, { raw: new Uint8Array() }).replace(/\.$/, ".")),
    );
    await fc.assert(
      fc.asyncProperty(forged, fc.boolean(), where, async (token, onRsa, w) => {
        const server = onRsa ? rs : hs;
        const r = await present(server, token, w);
        if (token === "" && (w === "poll" || w === "sse" || w === "ws" || w === "poll-header")) {
          // An empty token parameter is no token at all: still 401 for a private channel.
          assert.equal(r.status, 401);
          return;
        }
        assert.deepEqual(r, { status: 401, code: "unauthorized" }, `${w} ${token.slice(0, 120)}`);
      }),
      params(80),
    );
    await waitFor(() => hs.hl.connections === 0 && rs.hl.connections === 0, 5000, "nothing left open");
  });

  it("a valid token with one character changed (not a segment's last) gets 401", async () => {
    const b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    await fc.assert(
      fc.asyncProperty(fc.nat(valid.length - 1), fc.nat(), fc.constantFrom(...b64chars), where, async (which, at, replacement, w) => {
        const token = valid[which]!;
        const server = which === 1 ? rs : hs;
        // Positions whose change alters decoded bytes: not a dot, not a segment's last character.
        const positions = [...token].map((c, i) => i).filter((i) => token[i] !== "." && i + 1 < token.length && token[i + 1] !== ".");
        const i = positions[at % positions.length]!;
        if (token[i] === replacement) return;
        const tampered = token.slice(0, i) + replacement + token.slice(i + 1);
        const r = await present(server, tampered, w);
        assert.equal(r.status, 401, `${w} at ${i}: ${JSON.stringify(r)}`);
        assert.equal(r.code, "unauthorized");
      }),
      params(50),
    );
  });

  it("tokens signed with the right secret are accepted exactly when their claims are valid and cover the channel", async () => {
    const now = nowSec();
    await fc.assert(
      fc.asyncProperty(claims, fc.constantFrom<Where>("poll", "sse", "ws"), async (c, w) => {
        const token = compact({ alg: "HS256", typ: "JWT" }, c, { hmac: SECRET });
        const r = await present(hs, token, w);
        assert.notEqual(r.status, 500);
        const { sub, exp, nbf, channels } = c as Record<string, unknown>;
        const patternsOk = channels === undefined || (Array.isArray(channels) && channels.every((p) => typeof p === "string" && /^[A-Za-z0-9_\-:.@/*]{1,255}$/.test(p)));
        const publishOk = c.publish === undefined || (Array.isArray(c.publish) && c.publish.every((p) => typeof p === "string" && /^[A-Za-z0-9_\-:.@/*]{1,255}$/.test(p)));
        const wellFormed = typeof sub === "string" && sub.length > 0 && typeof exp === "number" && Number.isFinite(exp) && patternsOk && publishOk && (nbf === undefined || (nbf as number) <= now);
        if (!wellFormed) {
          assert.equal(r.status, 401, `${JSON.stringify(c)} → ${JSON.stringify(r)}`);
          return;
        }
        if ((exp as number) <= now + 1) {
          // Around exp the answer depends on the second the request lands in.
          assert.ok(r.status === 401 || r.status === 403 || r.status === 200 || r.status === 101, JSON.stringify(r));
          if ((exp as number) < now) assert.deepEqual(r, { status: 401, code: "token_expired" });
          return;
        }
        const covered = Array.isArray(channels) && channels.some((p) => new RegExp("^" + String(p).split("*").map((x) => x.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join(".*") + "$").test("priv:x"));
        if (covered) assert.equal(r.status, w === "ws" ? 101 : 200, `${JSON.stringify(c)} → ${JSON.stringify(r)}`);
        else assert.deepEqual(r, { status: 403, code: "forbidden" }, JSON.stringify(c));
      }),
      params(80),
    );
    await waitFor(() => hs.hl.connections === 0, 5000, "nothing left open");
  });
});
