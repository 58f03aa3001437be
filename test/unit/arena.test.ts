import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/clock.js";
import { HookError } from "../../src/errors.js";
import { Arena, ARENA_CHANNEL, cleanName, distanceToSegment, type ArenaOptions, type JoinResult, type MoveResult, type Snapshot } from "../../src/demo/arena.js";
import { arenaHooks, NAME_COOKIE } from "../../src/demo/hooks.js";
import type { HookContext } from "../../src/hooks/types.js";

/** A repeating sequence instead of Math.random, so places are known. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

function setup(options: Partial<ArenaOptions> = {}) {
  const clock = new ManualClock();
  const sent: Array<{ channel: string; data: Snapshot }> = [];
  const arena = new Arena({ clock, publish: (channel, data) => void sent.push({ channel, data: data as Snapshot }), random: sequence(0.5), coins: 0, ...options });
  const last = () => sent[sent.length - 1]!.data;
  return { clock, arena, sent, last };
}

/** Joins and places the player at (x, y) by walking there (time passes as needed). */
function joinAt(s: ReturnType<typeof setup>, name: string, x: number, y: number): JoinResult {
  const me = s.arena.join({ name });
  for (let i = 0; i < 100; i++) {
    s.clock.advance(400);
    const r = s.arena.move({ id: me.id, secret: me.secret, x, y });
    if (r.x === x && r.y === y) return { ...me, x, y };
  }
  throw new Error("could not walk there");
}

/** Walks `p` to (x, y) at its speed (30 units per 100 ms), asserting the server never corrects it. */
function walk(s: ReturnType<typeof setup>, p: JoinResult, x: number, y: number): MoveResult {
  let at = s.arena.snapshot().players.find(([id]) => id === p.id)!;
  let r: MoveResult = { x: at[2], y: at[3], corrected: false, score: 0 };
  for (let i = 0; i < 200 && (r.x !== x || r.y !== y); i++) {
    s.clock.advance(100);
    const d = Math.hypot(x - r.x, y - r.y);
    const k = Math.min(1, 30 / d);
    r = s.arena.move({ id: p.id, secret: p.secret, x: r.x + (x - r.x) * k, y: r.y + (y - r.y) * k });
    assert.equal(r.corrected, false, `walking is never corrected (at ${r.x}, ${r.y})`);
  }
  at = s.arena.snapshot().players.find(([id]) => id === p.id)!;
  assert.deepEqual([at[2], at[3]], [x, y]);
  return r;
}

function refused(fn: () => unknown, status: number, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof HookError, `a HookError, got ${String(err)}`);
    assert.equal(err.status, status);
    assert.equal(err.code, code);
    return true;
  });
}

describe("Arena", () => {
  describe("join", () => {
    it("answers an id, a secret, a place on the field and the arena's size and speed", () => {
      const { arena } = setup({ random: sequence(0.25, 0.75) });
      const me = arena.join({ name: "  Alice  " });
      assert.match(me.id, /^[A-Za-z0-9_-]{8}$/);
      assert.match(me.secret, /^[A-Za-z0-9_-]{24}$/);
      assert.equal(me.name, "Alice");
      assert.deepEqual({ x: me.x, y: me.y }, { x: 16 + 0.25 * (960 - 32), y: 16 + 0.75 * (560 - 32) });
      assert.deepEqual(me.arena, { width: 960, height: 560, radius: 16, speed: 300, coinRadius: 10, tickMs: 67, idleMs: 10_000 });
      assert.notEqual(arena.join({ name: "Bob" }).id, me.id);
      assert.equal(arena.size, 2);
    });

    it("cleans names of control and format characters and cuts them to 16 characters", () => {
      assert.equal(cleanName("Eve\u202e\u0000\u0007 the great and terrible"), "Eve the great an");
      assert.equal(cleanName("🦊".repeat(20)), "🦊".repeat(16), "cut by characters, not UTF-16 units");
    });

    it("refuses hostile names and params with 400 bad_params", () => {
      const { arena } = setup();
      for (const params of [null, undefined, 7, "Alice", [], [{ name: "x" }], {}, { name: 5 }, { name: "" }, { name: " \u0000\u200b " }, { name: "x".repeat(65) }, { name: { toString: "A" } }]) {
        refused(() => arena.call("arena.join", params), 400, "bad_params");
      }
      assert.equal(arena.size, 0);
      assert.equal(arena.ticking, false, "nothing started");
    });

    it("refuses players beyond maxPlayers with 503 arena_full", () => {
      const { arena } = setup({ maxPlayers: 2 });
      arena.join({ name: "a" });
      arena.join({ name: "b" });
      refused(() => arena.join({ name: "c" }), 503, "arena_full");
      assert.equal(arena.size, 2);
    });

    it("refuses unknown methods with 404 unknown_method", () => {
      refused(() => setup().arena.call("arena.teleport", {}), 404, "unknown_method");
    });
  });

  describe("move", () => {
    it("accepts a claim within the player's speed as it is", () => {
      const s = setup();
      const me = joinAt(s, "A", 100, 100);
      s.clock.advance(100); // 30 units of walking
      assert.deepEqual(s.arena.move({ id: me.id, secret: me.secret, x: 130, y: 100 }), { x: 130, y: 100, corrected: false, score: 0 });
    });

    it("clamps a claim faster than the speed along its way, and says so", () => {
      const s = setup();
      const me = joinAt(s, "A", 100, 100);
      s.arena.move({ id: me.id, secret: me.secret, x: 100, y: 100 }); // spends nothing, but time is measured from here
      s.clock.advance(100);
      // 30 units were possible after the full burst was spent... the burst of 400 ms is full by now, so 120 at most.
      const r = s.arena.move({ id: me.id, secret: me.secret, x: 400, y: 100 });
      assert.equal(r.corrected, true);
      assert.equal(r.y, 100);
      assert.ok(r.x > 100 && r.x <= 100 + 120.5, `moved toward the claim, within the burst: ${r.x}`);
      // With the budget spent, 50 ms later only 15 units more are possible.
      s.clock.advance(50);
      const r2 = s.arena.move({ id: me.id, secret: me.secret, x: 800, y: 100 });
      assert.equal(r2.corrected, true);
      assert.ok(Math.abs(r2.x - (r.x + 15)) <= 0.6, `${r.x} → ${r2.x}`);
    });

    it("corrects a teleport: the position stays within the burst of the old one", () => {
      const s = setup();
      const me = joinAt(s, "A", 100, 100);
      s.clock.advance(10_000);
      const r = s.arena.move({ id: me.id, secret: me.secret, x: 900, y: 500 });
      assert.equal(r.corrected, true);
      const moved = Math.hypot(r.x - 100, r.y - 100);
      assert.ok(moved <= 120.5, `moved ${moved} (the burst is 400 ms × 300 units/s = 120), not 894`);
      s.clock.advance(67);
      const seen = s.last().players.find(([id]) => id === me.id)!;
      assert.deepEqual([seen[2], seen[3]], [r.x, r.y], "the snapshot shows the corrected place");
    });

    it("keeps players inside the walls, even for huge or negative claims", () => {
      const s = setup({ burstMs: 1_000_000, idleMs: 1_000_000 });
      const me = s.arena.join({ name: "A" });
      s.clock.advance(100_000);
      const r = s.arena.move({ id: me.id, secret: me.secret, x: 1e308, y: -1e308 });
      assert.deepEqual(r, { x: 960 - 16, y: 16, corrected: true, score: r.score });
    });

    it("walks by a direction as far as the time since the last move allows", () => {
      const s = setup();
      const me = joinAt(s, "A", 100, 100);
      s.arena.move({ id: me.id, secret: me.secret, dx: 0, dy: 0 });
      s.clock.advance(100);
      // The burst left over from walking there, plus 100 ms: never more than the burst.
      const r = s.arena.move({ id: me.id, secret: me.secret, dx: 30, dy: 40 }); // normalized to (0.6, 0.8)
      const moved = Math.hypot(r.x - 100, r.y - 100);
      assert.ok(moved > 0 && moved <= 120.5, `moved ${moved}`);
      assert.ok(Math.abs((r.y - 100) / (r.x - 100) - 4 / 3) < 0.02, "in the asked direction");
      assert.equal(r.corrected, false);
    });

    it("refuses hostile params: 400 for shape, 404 for an unknown player, 403 for a wrong secret", () => {
      const s = setup();
      const me = s.arena.join({ name: "A" });
      const ok = { id: me.id, secret: me.secret };
      for (const params of [null, [], "x", { ...ok }, { ...ok, x: 1 }, { ...ok, x: "1", y: 2 }, { ...ok, x: NaN, y: 1 }, { ...ok, x: Infinity, y: 1 }, { ...ok, dx: 1 }, { ...ok, dx: null, dy: 1 }]) {
        refused(() => s.arena.call("arena.move", params), 400, "bad_params");
      }
      for (const params of [{ secret: me.secret, x: 1, y: 1 }, { id: 5, secret: me.secret, x: 1, y: 1 }, { id: "x".repeat(65), secret: me.secret, x: 1, y: 1 }, { id: me.id, x: 1, y: 1 }, { id: me.id, secret: "s".repeat(65), x: 1, y: 1 }]) {
        refused(() => s.arena.call("arena.move", params), 400, "bad_params");
      }
      refused(() => s.arena.call("arena.move", { id: "nobody", secret: me.secret, x: 1, y: 1 }), 404, "unknown_player");
      refused(() => s.arena.call("arena.move", { id: "__proto__", secret: me.secret, x: 1, y: 1 }), 404, "unknown_player");
      refused(() => s.arena.call("arena.move", { id: me.id, secret: me.secret.slice(1) + "A", x: 1, y: 1 }), 403, "bad_secret");
      refused(() => s.arena.call("arena.move", { id: me.id, secret: "short", x: 1, y: 1 }), 403, "bad_secret");
      const other = s.arena.join({ name: "B" });
      refused(() => s.arena.call("arena.move", { id: me.id, secret: other.secret, x: 1, y: 1 }), 403, "bad_secret");
      refused(() => s.arena.call("arena.leave", { id: me.id, secret: other.secret }), 403, "bad_secret");
      assert.equal(s.arena.size, 2, "nobody was removed by a refused call");
      const snap = s.arena.snapshot().players.find(([id]) => id === me.id)!;
      assert.deepEqual([snap[2], snap[3]], [me.x, me.y], "and nobody moved");
    });
  });

  describe("coins", () => {
    it("the server collects a coin a player walks over and scores it; the coin comes back elsewhere", () => {
      // Places come from the sequence: the player at (0.1, 0.1) of the field, the coin at its middle.
      const s = setup({ coins: 1, random: sequence(0.1, 0.1, 0.5, 0.5, 0.9, 0.9) });
      const me = s.arena.join({ name: "A" });
      s.clock.advance(67);
      assert.deepEqual(s.last().pickups, [[1, 480, 280]]);
      assert.deepEqual(s.last().scores, [[me.id, 0]]);
      // Through the coin's place to beyond it, at walking speed: passing over it counts.
      walk(s, me, 480, 300);
      const r = walk(s, me, 700, 300);
      assert.equal(r.score, 1);
      s.clock.advance(67);
      assert.deepEqual(s.last().scores, [[me.id, 1]]);
      assert.deepEqual(s.last().pickups, [], "gone until it respawns");
      s.clock.advance(1000);
      assert.deepEqual(s.last().pickups, [[2, 14 + 0.9 * (960 - 28), 14 + 0.9 * (560 - 28)].map((v, i) => (i ? Math.round(v * 10) / 10 : v))], "a new coin, elsewhere");
    });

    it("a claim that reaches a coin only by a teleport scores nothing", () => {
      const s = setup({ coins: 1, random: sequence(0.05, 0.05, 0.9, 0.9) });
      const me = s.arena.join({ name: "A" });
      s.clock.advance(10_000 - 1);
      const coin = s.arena.snapshot().pickups[0]!;
      const r = s.arena.move({ id: me.id, secret: me.secret, x: coin[1], y: coin[2] });
      assert.equal(r.corrected, true);
      assert.equal(r.score, 0);
      assert.equal(s.arena.snapshot().pickups.length, 1);
    });

    it("ranks the score board best first", () => {
      const s = setup({ coins: 1, random: sequence(0.1, 0.1, 0.5, 0.5, 0.9, 0.9) });
      const a = s.arena.join({ name: "A" });
      const b = s.arena.join({ name: "B" });
      assert.deepEqual(s.arena.snapshot().scores, [[a.id, 0], [b.id, 0]], "ties in joining order");
      walk(s, b, 480, 280);
      assert.deepEqual(s.arena.snapshot().scores, [[b.id, 1], [a.id, 0]]);
    });
  });

  describe("snapshots", () => {
    it("are published on game:arena at the tick only while players are present, and a last empty one after", () => {
      const s = setup({ tickHz: 10, coins: 5 });
      s.clock.advance(1000);
      assert.equal(s.sent.length, 0, "nothing without players");
      const me = s.arena.join({ name: "A" });
      assert.equal(s.arena.ticking, true);
      s.clock.advance(1000);
      assert.equal(s.sent.length, 10);
      assert.ok(s.sent.every((m) => m.channel === ARENA_CHANNEL));
      assert.deepEqual(s.sent.map((m) => m.data.tick), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.deepEqual(s.sent.map((m) => m.data.t), [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000], "the server's time since the arena started");
      const snap = s.last();
      assert.equal(snap.type, "snapshot");
      assert.deepEqual(snap.players, [[me.id, "A", me.x, me.y]]);
      assert.equal(snap.pickups.length, 5);
      assert.ok(JSON.stringify(snap).length < 300, `compact: ${JSON.stringify(snap)}`);
      s.arena.leave({ id: me.id, secret: me.secret });
      s.clock.advance(100);
      assert.deepEqual(s.last().players, [], "the last snapshot clears the field");
      assert.equal(s.arena.ticking, false);
      const count = s.sent.length;
      s.clock.advance(5000);
      assert.equal(s.sent.length, count, "quiet once empty");
    });

    it("skip ticks while a publish is under way, and survive a publish that fails or throws", async () => {
      const errors: unknown[] = [];
      let calls = 0;
      let release: () => void = () => {};
      const clock = new ManualClock();
      const arena = new Arena({
        clock,
        onError: (e) => errors.push(e),
        publish: () => {
          calls++;
          if (calls === 1) return new Promise<void>((r) => (release = r));
          if (calls === 2) return Promise.reject(new Error("broker down"));
          throw new Error("thrown");
        },
      });
      arena.join({ name: "A" });
      clock.advance(67 * 5);
      assert.equal(calls, 1, "later ticks wait for the first publish");
      release();
      await new Promise((r) => setImmediate(r));
      clock.advance(67);
      await new Promise((r) => setImmediate(r));
      clock.advance(67);
      await new Promise((r) => setImmediate(r));
      assert.equal(calls, 3);
      assert.deepEqual(errors.map((e) => (e as Error).message), ["broker down", "thrown"]);
      arena.close();
    });
  });

  describe("leaving", () => {
    it("drops players idle for idleMs; a call keeps them", () => {
      const s = setup({ idleMs: 5000 });
      const a = s.arena.join({ name: "A" });
      const b = s.arena.join({ name: "B" });
      for (let t = 0; t < 4; t++) {
        s.clock.advance(2000);
        s.arena.move({ id: b.id, secret: b.secret, x: b.x, y: b.y });
      }
      assert.deepEqual(s.last().players.map(([id]) => id), [b.id], "A was dropped after 5 s of silence, B stays");
      refused(() => s.arena.move({ id: a.id, secret: a.secret, x: 1, y: 1 }), 404, "unknown_player");
    });

    it("arena.rename cleans the new name; a bad one is refused and the old one kept", () => {
      const s = setup();
      const a = s.arena.join({ name: "A" });
      assert.deepEqual(s.arena.call("arena.rename", { id: a.id, secret: a.secret, name: " Zoë\u0000 " }), { name: "Zoë" });
      refused(() => s.arena.call("arena.rename", { id: a.id, secret: a.secret, name: "" }), 400, "bad_params");
      refused(() => s.arena.call("arena.rename", { id: a.id, secret: "x", name: "Mallory" }), 403, "bad_secret");
      assert.equal(s.arena.snapshot().players[0]![1], "Zoë");
    });

    it("arena.leave removes the player at once", () => {
      const s = setup();
      const a = s.arena.join({ name: "A" });
      assert.deepEqual(s.arena.call("arena.leave", { id: a.id, secret: a.secret }), { left: true });
      assert.equal(s.arena.size, 0);
      refused(() => s.arena.call("arena.leave", { id: a.id, secret: a.secret }), 404, "unknown_player");
    });

    it("a closed WebSocket lets its players go after the grace, unless they call again over a new one", () => {
      const s = setup({ leaveGraceMs: 1000 });
      const a = s.arena.call("arena.join", { name: "A" }, "conn-1") as JoinResult;
      const b = s.arena.call("arena.join", { name: "B" }, "conn-2") as JoinResult;
      s.arena.disconnected("conn-1");
      s.arena.disconnected("conn-2");
      s.arena.disconnected("conn-unknown");
      s.clock.advance(500);
      s.arena.call("arena.move", { id: b.id, secret: b.secret, x: b.x, y: b.y }, "conn-3"); // B reconnected
      s.clock.advance(600);
      assert.deepEqual(s.last().players.map(([id]) => id), [b.id]);
      refused(() => s.arena.move({ id: a.id, secret: a.secret, x: 1, y: 1 }), 404, "unknown_player");
      // The old connection closing again does not touch B, who moved on to conn-3.
      s.arena.disconnected("conn-2");
      s.clock.advance(2000);
      assert.equal(s.arena.size, 1);
    });

    it("with no grace, a closed WebSocket's player leaves at once", () => {
      const s = setup({ leaveGraceMs: 0 });
      s.arena.call("arena.join", { name: "A" }, "c1");
      s.arena.disconnected("c1");
      assert.equal(s.arena.size, 0);
    });
  });

  describe("hooks", () => {
    const ctx: HookContext = { transport: "ws", ip: "127.0.0.1", headers: {}, cookies: {}, query: {}, user: "", info: null, client: "c1" };

    it("refuse client publishes on game:arena with 403 server_owned, even where --client-publish would allow it", async () => {
      const hooks = arenaHooks(setup().arena, { clientPublish: ["game:*"] });
      await assert.rejects(
        async () => hooks.publish!({ ...ctx, channel: ARENA_CHANNEL, data: { type: "snapshot", players: [] } }),
        (err: unknown) => err instanceof HookError && err.status === 403 && err.code === "server_owned",
      );
      assert.equal(await hooks.publish!({ ...ctx, channel: "game:chat", data: "hi" }), undefined, "other game channels are open");
      await assert.rejects(
        async () => hooks.publish!({ ...ctx, channel: "news:today", data: "hi" }),
        (err: unknown) => err instanceof HookError && err.status === 403 && err.code === "forbidden",
        "channels outside --client-publish stay closed",
      );
    });

    it("give a subscriber of game:arena its player's name as presence info: the arena's for its client, else the page's cookie", async () => {
      const s = setup();
      const hooks = arenaHooks(s.arena);
      const sub = (over: Partial<HookContext>, channel = ARENA_CHANNEL) => hooks.subscribe!({ ...ctx, ...over, channel });
      assert.deepEqual(await sub({}), {}, "no player, no cookie: no info");
      assert.deepEqual(await sub({ cookies: { [NAME_COOKIE]: encodeURIComponent(" Zoë\u0000 ") } }), { info: { name: "Zoë" } });
      await hooks.rpc!({ ...ctx, method: "arena.join", params: { name: "Ann" } });
      assert.deepEqual(await sub({ cookies: { [NAME_COOKIE]: "Old" } }), { info: { name: "Ann" } }, "the arena's name wins");
      assert.deepEqual(await sub({ client: "c2", cookies: { [NAME_COOKIE]: "Bea" } }), { info: { name: "Bea" } });
      // Hostile cookies: no info, and the subscription is still allowed.
      for (const bad of ["%E0%A4%A", encodeURIComponent("x".repeat(5000)), "%00%01", ""]) {
        assert.deepEqual(await sub({ client: "c3", cookies: { [NAME_COOKIE]: bad } }), {}, JSON.stringify(bad));
      }
      assert.deepEqual(await sub({}, "game:chat"), {}, "other channels: allowed, no info");
      assert.equal(arenaHooks(s.arena, { tokens: true }).subscribe, undefined, "with tokens, the tokens alone decide");
    });

    it("answer RPCs with the arena and let a WebSocket's player go when it closes", async () => {
      const s = setup({ leaveGraceMs: 0 });
      const hooks = arenaHooks(s.arena);
      const me = (await hooks.rpc!({ ...ctx, method: "arena.join", params: { name: "A" } })) as JoinResult;
      assert.equal(s.arena.size, 1);
      await hooks.disconnect!({ ...ctx, client: "other", reason: "going_away" });
      assert.equal(s.arena.size, 1);
      await hooks.disconnect!({ ...ctx, reason: "going_away" });
      assert.equal(s.arena.size, 0);
      refused(() => s.arena.move({ id: me.id, secret: me.secret, x: 1, y: 1 }), 404, "unknown_player");
    });
  });

  it("distanceToSegment", () => {
    assert.equal(distanceToSegment(5, 5, 0, 0, 10, 0), 5);
    assert.equal(distanceToSegment(-3, 4, 0, 0, 10, 0), 5);
    assert.equal(distanceToSegment(3, 4, 0, 0, 0, 0), 5);
  });
});
