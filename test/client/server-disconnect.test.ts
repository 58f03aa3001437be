/**
 * The client after the server API disconnected it (POST /api/disconnect):
 * with `reconnect: false` it stops for good on every stream transport
 * (WebSocket close 4403, SSE `event: disconnect`), and otherwise it comes back.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { nowSec, sign } from "../helpers/auth.js";
import { waitFor, withServer } from "../helpers/server.js";
import { client, connected } from "./helpers.js";

const SECRET = "client-disconnect-secret-long-enough-for-hs256";
const FAST = { backoffBase: 0.02, backoffMax: 0.1 };
const getToken = () => sign({ sub: "zoe", iat: nowSec() - 5, exp: nowSec() + 3600, channels: ["room:*"] }, SECRET);

describe("Heartline client: disconnected by the server", () => {
  const s = withServer({ jwtSecret: SECRET });

  for (const transport of ["ws", "sse"] as const) {
    it(`over ${transport}, stops for good after a disconnect without reconnect`, async () => {
      const hl = client(s.url, { transports: [transport], getToken, ...FAST });
      const errors: string[] = [];
      hl.on("error", (e) => errors.push(e.code));
      hl.subscribe("room:cd", () => {});
      await connected(hl, transport);
      await waitFor(() => s.hl.hub.subscriberCount("room:cd") === 1 || undefined, 5000, "the subscription");
      assert.deepEqual(await s.hl.disconnect("zoe", { reconnect: false }), { disconnected: 1 });
      await waitFor(() => hl.state === "closed" || undefined, 5000, "the client to give up");
      assert.deepEqual(errors, ["disconnected"]);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(s.hl.connections, 0, "it did not come back");
    });

    it(`over ${transport}, comes back after a disconnect that allows it`, async () => {
      const hl = client(s.url, { transports: [transport], getToken, ...FAST });
      hl.subscribe("room:cr", () => {});
      await connected(hl, transport);
      await waitFor(() => s.hl.hub.subscriberCount("room:cr") === 1 || undefined, 5000, "the subscription");
      assert.deepEqual(await s.hl.disconnect("zoe"), { disconnected: 1 });
      await waitFor(() => s.hl.hub.subscriberCount("room:cr") === 1 && s.hl.connections === 1 ? true : undefined, 5000, "the client to come back");
      hl.close();
      await waitFor(() => s.hl.connections === 0 || undefined, 5000, "the client to leave");
    });
  }
});
