/**
 * Reconnection backoff: exponential bounds with full jitter, and a reset only
 * after a connection that stayed up long enough to count as stable.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Backoff } from "../../src/client/index.js";
import { startServer, waitFor } from "../helpers/server.js";
import { client, connected, ManualClientClock, serverBehindProxy } from "./helpers.js";

describe("Backoff", () => {
  it("doubles the bound from base up to cap", () => {
    const b = new Backoff({ base: 250, cap: 30_000, random: () => 0.5 });
    const bounds: number[] = [];
    for (let i = 0; i < 10; i++) {
      bounds.push(b.bound);
      b.next();
    }
    assert.deepEqual(bounds, [250, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
  });

  it("draws each wait uniformly in [0, bound): full jitter", () => {
    assert.equal(new Backoff({ random: () => 0 }).next(), 0);
    assert.equal(new Backoff({ random: () => 0.999_999 }).next(), 249);
    const b = new Backoff({ base: 100, cap: 1000 });
    const waits: number[] = [];
    for (let round = 0; round < 200; round++) {
      b.reset();
      for (let i = 0; i < 6; i++) {
        const bound = b.bound;
        const w = b.next();
        assert.ok(w >= 0 && w < bound, `${w} in [0, ${bound})`);
        if (i === 5) waits.push(w);
      }
    }
    // Jitter spreads over the whole range, not just near the bound.
    assert.ok(Math.min(...waits) < 250 && Math.max(...waits) > 750, `spread ${Math.min(...waits)}–${Math.max(...waits)}`);
  });

  it("starts over after reset()", () => {
    const b = new Backoff({ base: 250, random: () => 0.5 });
    b.next();
    b.next();
    assert.equal(b.bound, 1000);
    b.reset();
    assert.equal(b.attempt, 0);
    assert.equal(b.next(), 125);
  });

  it("never exceeds cap even after many attempts", () => {
    const b = new Backoff({ base: 250, cap: 30_000, random: () => 0.999_999 });
    for (let i = 0; i < 2000; i++) assert.ok(b.next() < 30_000);
  });
});

describe("Heartline client: backoff between reconnects", () => {
  const fx = serverBehindProxy();

  /** Cuts the connection (refusing new ones) and returns the backoff wait the client schedules. */
  async function cutAndReadWait(clock: ManualClientClock, expected: number): Promise<void> {
    await waitFor(() => clock.pending().includes(expected) || undefined, 3000, `a backoff wait of ${expected} ms (pending ${clock.pending()})`);
  }

  it("grows the wait while attempts fail or connections flap, and resets it after a stable connection", async () => {
    const clock = new ManualClientClock();
    // random() = 0.5: each wait is half its bound (250 ms base, 10 s stable).
    const hl = client(fx.proxy.url, { transports: ["ws"], clock, random: () => 0.5 });
    hl.subscribe("backoff:a", () => {});
    try {
      await connected(hl, "ws");
      fx.proxy.block();
      fx.proxy.cut();
      await cutAndReadWait(clock, 125);
      clock.advance(125); // attempt refused by the proxy
      await cutAndReadWait(clock, 250);
      clock.advance(250);
      await cutAndReadWait(clock, 500);
      fx.proxy.unblock();
      clock.advance(500);
      await connected(hl, "ws");
      // Up for 1 s only: not stable, the next wait keeps growing.
      clock.advance(1000);
      fx.proxy.cut();
      await cutAndReadWait(clock, 1000);
      clock.advance(1000);
      await connected(hl, "ws");
      // Up for 10 s: stable, the next wait starts over.
      clock.advance(10_000);
      fx.proxy.cut();
      await cutAndReadWait(clock, 125);
      clock.advance(125);
      await connected(hl, "ws");
    } finally {
      hl.close();
    }
    assert.deepEqual(clock.pending(), []);
  });

  it("waits at least Retry-After when the server answers 503", async () => {
    const busy = await startServer({ maxConnections: 1 });
    const clock = new ManualClientClock();
    const filler = client(busy.url, { transports: ["poll"] });
    filler.subscribe("busy", () => {});
    const hl = client(busy.url, { transports: ["poll"], clock, random: () => 0 });
    try {
      await connected(filler, "poll");
      await waitFor(() => busy.hl.connections === 1 || undefined);
      hl.subscribe("busy", () => {});
      // The first poll (timeout=0) is answered at once and is not held, so it is admitted.
      await connected(hl, "poll");
      // The next poll is held, over the limit: 503 with Retry-After: the wait is max(backoff, Retry-After).
      await waitFor(() => hl.state === "disconnected" || undefined, 3000, "the 503");
      assert.ok(clock.pending().includes(5000), `pending ${clock.pending()}`);
    } finally {
      hl.close();
      filler.close();
      await busy.close();
    }
  });
});
