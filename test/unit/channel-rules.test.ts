/**
 * The channel-name rules exist once (src/channel-rules.ts) and every user of
 * them agrees: the server's check, the option schema, token claims and the
 * browser client.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { CHANNEL_NAME_RE, CHANNEL_PATTERN_RE } from "../../src/channel-rules.js";
import { Heartline } from "../../src/client/index.js";
import { configFromOptions } from "../../src/config.js";
import { isChannelName } from "../../src/hub/channel-name.js";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

describe("channel rules", () => {
  it("are written in src/channel-rules.ts only", () => {
    const copies = sources(SRC).filter((f) => !f.endsWith("channel-rules.ts") && readFileSync(f, "utf8").includes("A-Za-z0-9_\\-:.@/"));
    assert.deepEqual(copies, [], "a channel-name character class outside src/channel-rules.ts");
  });

  it("agree between the server, the client, the option schema and patterns", () => {
    const hl = new Heartline("http://127.0.0.1:9", { transports: ["poll"], fetch: (() => new Promise(() => {})) as unknown as typeof fetch });
    try {
      for (const name of ["a", "game:1", "x".repeat(255), "x".repeat(256), "", "a b", "a*", "ü", "a/b@c.d-e_f", "a\n"]) {
        const ok = CHANNEL_NAME_RE.test(name);
        assert.equal(isChannelName(name), ok, name);
        let clientOk = true;
        try {
          hl.subscribe(name, () => {}).unsubscribe();
        } catch {
          clientOk = false;
        }
        assert.equal(clientOk, ok, `client: ${JSON.stringify(name)}`);
        const pattern = name + "*";
        let configOk = true;
        try {
          configFromOptions({ clientPublish: [pattern] });
        } catch {
          configOk = false;
        }
        assert.equal(configOk, CHANNEL_PATTERN_RE.test(pattern), `--client-publish ${JSON.stringify(pattern)}`);
      }
    } finally {
      hl.close();
    }
  });
});
