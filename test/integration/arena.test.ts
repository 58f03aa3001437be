/**
 * The demo arena inside a real Heartline (library form, real sockets): join,
 * move and snapshots on game:arena over WebSocket, moves over POST /api/rpc
 * for SSE and polling players, teleports corrected, client publishes on
 * game:arena refused (frame and HTTP), hostile RPCs answered with their
 * error and nothing else, a closed WebSocket's player let go; and
 * `npm start`'s program (src/demo/main.ts) in a child process.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, afterEach, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ManualClock } from "../../src/index.js";
import { Arena, ARENA_CHANNEL, type JoinResult, type MoveResult, type Snapshot } from "../../src/demo/arena.js";
import { arenaHooks } from "../../src/demo/hooks.js";
import { getJson, publishHttp, startServer, waitFor, WsClient, type Frame, type TestServer } from "../helpers/server.js";

const API_KEY = "arena-api-key";
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** POST /api/rpc, as an SSE or polling page calls. */
function rpcHttp(s: TestServer, body: unknown) {
  return getJson(`${s.url}/api/rpc`, { method: "POST", headers: { "Content-Type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
}

/** One rpc frame and its answer. */
async function rpcWs(c: WsClient, id: number | string, method: string, params: unknown): Promise<Frame> {
  c.send({ type: "rpc", id, method, params });
  return c.next((f) => f.type === "rpc" && f.id === id);
}

describe("demo arena in a Heartline server", () => {
  let s: TestServer;
  let arena: Arena;
  let clock: ManualClock;
  const clients: WsClient[] = [];

  before(async () => {
    clock = new ManualClock();
    arena = new Arena({ clock, publish: (channel, data) => s.hl.publish(channel, data), leaveGraceMs: 0, coins: 3 });
    s = await startServer({ apiKey: API_KEY, clientPublish: ["game:*"] }, { hooks: arenaHooks(arena, { clientPublish: ["game:*"] }) });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await waitFor(() => s.hl.connections === 0, 5000, "connections to close");
    // Everyone leaves; the last (empty) snapshot goes out and the arena is quiet again.
    await waitFor(() => arena.size === 0, 5000, "players to leave");
    clock.advance(100);
    assert.equal(arena.ticking, false);
  });
  after(async () => {
    arena.close();
    await s.close();
  });

  async function player(): Promise<WsClient> {
    const c = await WsClient.connect(`${s.wsUrl}/ws?channel=${ARENA_CHANNEL}`);
    clients.push(c);
    await c.next((f) => f.type === "subscribed");
    return c;
  }
  /** Lets the arena tick; resolves with the snapshot of that tick as each of `cs` received it. */
  async function tick(...cs: WsClient[]): Promise<Snapshot[]> {
    clock.advance(67);
    const want = arena.snapshot().tick;
    return Promise.all(cs.map(async (c) => (await c.next((f) => f.type === "message" && f.channel === ARENA_CHANNEL && (f.data as Snapshot).tick === want)).data as Snapshot));
  }
  const where = (snap: Snapshot, id: string) => snap.players.find(([pid]) => pid === id)?.slice(2);

  it("two WebSocket players join by rpc frame, move, and both see the server's snapshots", async () => {
    const [a, b] = [await player(), await player()];
    const ja = await rpcWs(a, 1, "arena.join", { name: "Alice" });
    const jb = await rpcWs(b, "j", "arena.join", { name: "Bob" });
    const alice = ja.result as JoinResult;
    const bob = jb.result as JoinResult;
    assert.equal(alice.name, "Alice");
    assert.deepEqual(alice.arena, { width: 960, height: 560, radius: 16, speed: 300, coinRadius: 10, tickMs: 67, idleMs: 10_000 });
    const [sa, sb] = await tick(a, b);
    assert.deepEqual(sa, sb, "everyone gets the same state");
    assert.deepEqual(sa!.players.map(([id, name]) => [id, name]).sort(), [[alice.id, "Alice"], [bob.id, "Bob"]].sort());
    assert.equal(sa!.pickups.length, 3);
    assert.deepEqual(sa!.scores.map(([, score]) => score), [0, 0]);

    // A step within the speed is taken as claimed.
    clock.advance(100);
    // To a tenth, as the arena keeps places (512.8 − 20 is 492.79999999999995 in floating point).
    const x = Math.round((alice.x > 480 ? alice.x - 20 : alice.x + 20) * 10) / 10;
    const moved = (await rpcWs(a, 2, "arena.move", { id: alice.id, secret: alice.secret, x, y: alice.y })).result as MoveResult;
    assert.deepEqual(moved, { x, y: alice.y, corrected: false, score: moved.score });
    const [, seenByBob] = await tick(a, b);
    assert.deepEqual(where(seenByBob!, alice.id), [x, alice.y], "Bob sees Alice where the server put her");
  });

  it("a teleport claimed through arena.move is corrected, and the snapshots show the corrected place", async () => {
    const [a, b] = [await player(), await player()];
    const alice = (await rpcWs(a, 1, "arena.join", { name: "Alice" })).result as JoinResult;
    await rpcWs(b, 1, "arena.join", { name: "Bob" });
    clock.advance(5000);
    const far = { x: alice.x > 480 ? 20 : 940, y: alice.y > 280 ? 20 : 540 };
    const answer = (await rpcWs(a, 2, "arena.move", { id: alice.id, secret: alice.secret, ...far })).result as MoveResult;
    assert.equal(answer.corrected, true);
    const moved = Math.hypot(answer.x - alice.x, answer.y - alice.y);
    assert.ok(moved <= 120.5, `moved ${moved.toFixed(1)} toward the claim, at most the 400 ms burst (120)`);
    const [, snap] = await tick(a, b);
    assert.deepEqual(where(snap!, alice.id), [answer.x, answer.y]);
    assert.notDeepEqual(where(snap!, alice.id), [far.x, far.y]);
  });

  it("a client publish on game:arena is refused over a frame and over HTTP; the position stays the server's", async () => {
    const [a, b] = [await player(), await player()];
    const alice = (await rpcWs(a, 1, "arena.join", { name: "Alice" })).result as JoinResult;
    const [first] = await tick(b);
    const offset = (await getJson(`${s.url}/api/channels/${ARENA_CHANNEL}`, { headers: { authorization: `Bearer ${API_KEY}` } })).body.offset as number;
    const forged: Snapshot = { type: "snapshot", tick: 999, t: 0, players: [[alice.id, "Alice", 900, 500]], pickups: [], scores: [[alice.id, 1000]] };
    a.send({ type: "publish", channel: ARENA_CHANNEL, data: forged });
    const refusal = await a.next((f) => f.type === "error");
    assert.equal(refusal.code, "server_owned");
    assert.match(String(refusal.message), /written by the arena server/);
    // HTTP, as SSE and polling pages publish: from this very machine, without the API key.
    const http = await publishHttp(s, ARENA_CHANNEL, forged);
    assert.equal(http.status, 403);
    assert.equal(http.body.error.code, "server_owned");
    assert.equal((await getJson(`${s.url}/api/channels/${ARENA_CHANNEL}`, { headers: { authorization: `Bearer ${API_KEY}` } })).body.offset, offset, "nothing was stored");
    const [next] = await tick(b);
    assert.deepEqual(where(next!, alice.id), where(first!, alice.id));
    assert.deepEqual(next!.scores, [[alice.id, 0]]);
    assert.ok(b.messages(ARENA_CHANNEL).every((m) => (m.data as Snapshot).tick !== 999), "Bob never saw the forgery");
    // Other game channels stay open to clients, as --client-publish says.
    a.send({ type: "publish", channel: "game:chat", data: "hello" });
    await waitFor(async () => (await getJson(`${s.url}/api/channels/game:chat`, { headers: { authorization: `Bearer ${API_KEY}` } })).body.offset === 1, 5000, "the chat message");
  });

  it("SSE and polling players play over POST /api/rpc and read snapshots from /poll", async () => {
    const start = (await getJson(`${s.url}/poll?channel=${ARENA_CHANNEL}`)).body.cursor as string;
    const joined = await rpcHttp(s, { method: "arena.join", params: { name: "Polly" } });
    assert.equal(joined.status, 200);
    const polly = joined.body.result as JoinResult;
    clock.advance(5000);
    const moved = await rpcHttp(s, { method: "arena.move", params: { id: polly.id, secret: polly.secret, x: polly.x > 480 ? 16 : 944, y: polly.y } });
    assert.equal(moved.status, 200);
    assert.equal(moved.body.result.corrected, true);
    clock.advance(67);
    // Poll on (the snapshot of that tick may still be on its way to the broker) until it comes.
    const want = arena.snapshot().tick;
    let cursor = start;
    let last: Snapshot | undefined;
    while (last?.tick !== want) {
      const polled = await getJson(`${s.url}/poll?channel=${ARENA_CHANNEL}&cursor=${cursor}&timeout=2`);
      assert.equal(polled.status, 200);
      cursor = polled.body.cursor;
      const snaps = polled.body.messages.map((m: { data: Snapshot }) => m.data) as Snapshot[];
      assert.ok(snaps.length > 0, "a snapshot within 2 s");
      last = snaps[snaps.length - 1]!;
    }
    assert.deepEqual(where(last, polly.id), [moved.body.result.x, moved.body.result.y]);
    const left = await rpcHttp(s, { method: "arena.leave", params: { id: polly.id, secret: polly.secret } });
    assert.deepEqual(left.body, { result: { left: true } });
    assert.equal(arena.size, 0);
  });

  it("hostile RPCs get their error, over HTTP and over a frame, and change nothing", async () => {
    const a = await player();
    const alice = (await rpcWs(a, 1, "arena.join", { name: "Alice" })).result as JoinResult;
    const cases: Array<[unknown, number, string]> = [
      [{ method: "arena.join", params: null }, 400, "bad_params"],
      [{ method: "arena.join", params: { name: "x".repeat(10_000) } }, 400, "bad_params"],
      [{ method: "arena.join", params: { name: ["A"] } }, 400, "bad_params"],
      [{ method: "arena.move", params: { id: alice.id, secret: alice.secret, x: "1e9", y: 0 } }, 400, "bad_params"],
      [{ method: "arena.move", params: { id: alice.id, secret: alice.secret, x: 1e400, y: 0 } }, 400, "bad_params"],
      [{ method: "arena.move", params: { id: alice.id, secret: alice.secret, x: { valueOf: 5 }, y: 0 } }, 400, "bad_params"],
      [{ method: "arena.move", params: { id: "nobody", secret: alice.secret, x: 1, y: 1 } }, 404, "unknown_player"],
      [{ method: "arena.move", params: { id: alice.id, secret: "guess", x: 1, y: 1 } }, 403, "bad_secret"],
      [{ method: "arena.leave", params: { id: alice.id, secret: alice.secret.toUpperCase() } }, 403, "bad_secret"],
      [{ method: "arena.explode", params: {} }, 404, "unknown_method"],
    ];
    for (const [body, status, code] of cases) {
      const r = await rpcHttp(s, body);
      assert.equal(r.status, status, JSON.stringify(body).slice(0, 80));
      assert.equal(r.body.error.code, code);
    }
    // JSON.stringify turned 1e400 into null above; over raw text it is Infinity for JSON.parse, refused as well.
    const raw = await rpcHttp(s, `{"method":"arena.move","params":{"id":"${alice.id}","secret":"${alice.secret}","x":1e400,"y":0}}`);
    assert.equal(raw.body.error.code, "bad_params");
    let id = 10;
    for (const [body, , code] of cases) {
      const { method, params } = body as { method: string; params: unknown };
      const f = await rpcWs(a, ++id, method, params);
      assert.equal((f.error as { code: string }).code, code);
    }
    assert.equal(arena.size, 1, "only Alice, still there");
    const [snap] = await tick(a);
    assert.deepEqual(where(snap!, alice.id), [alice.x, alice.y], "and where she was");
  });

  it("a WebSocket player leaves when its connection closes (the disconnect hook)", async () => {
    const [a, b] = [await player(), await player()];
    const alice = (await rpcWs(a, 1, "arena.join", { name: "Alice" })).result as JoinResult;
    const bob = (await rpcWs(b, 1, "arena.join", { name: "Bob" })).result as JoinResult;
    a.close();
    await waitFor(() => arena.size === 1, 5000, "Alice to leave");
    const [snap] = await tick(b);
    assert.deepEqual(snap!.players.map(([id]) => id), [bob.id]);
    const late = await rpcWs(b, 2, "arena.move", { id: alice.id, secret: alice.secret, x: 1, y: 1 });
    assert.equal((late.error as { code: string }).code, "unknown_player");
  });
});

describe("npm start (src/demo/main.ts)", () => {
  /** Runs the demo's program; resolves with its port once it listens. */
  function demo(args: string[], env: Record<string, string> = {}) {
    const clean: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("HEARTLINE_")) clean[k] = v;
    const child = spawn(process.execPath, ["--import", "tsx", "src/demo/main.ts", ...args], { cwd: ROOT, env: { ...clean, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    const exit = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
    const port = () =>
      waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`exited early (${child.exitCode}): ${err}${out}`);
          const line = out.split("\n").find((l) => l.includes('"listening"'));
          return line ? (JSON.parse(line) as { port: number }).port : undefined;
        },
        30_000,
        "the listening line",
      );
    return { child, exit, port, output: () => out + err };
  }

  it("serves the arena with options from env and flags, refuses client publishes on game:arena, drains on SIGTERM", async () => {
    const d = demo(["--transports", "ws,sse"], { HEARTLINE_PORT: "0", HEARTLINE_HOST: "127.0.0.1", HEARTLINE_LOG_LEVEL: "warn", HEARTLINE_API_KEY: "k" });
    try {
      const port = await d.port();
      const url = `http://127.0.0.1:${port}`;
      const page = await fetch(`${url}/`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /arena\.move/);
      assert.equal((await getJson(`${url}/poll?channel=${ARENA_CHANNEL}`)).status, 404, "--transports from the flag");
      const joined = await getJson(`${url}/api/rpc`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ method: "arena.join", params: { name: "Child" } }) });
      assert.equal(joined.status, 200);
      assert.match(joined.body.result.id, /^[\w-]{8}$/);
      // With an API key (from the environment), a publish without it is a client's: the hook refuses game:arena.
      const forged = await getJson(`${url}/api/publish`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ channel: ARENA_CHANNEL, data: { type: "snapshot" } }) });
      assert.equal(forged.status, 403);
      assert.equal(forged.body.error.code, "server_owned");
      d.child.kill("SIGTERM");
      assert.equal(await d.exit, 0, d.output());
    } finally {
      d.child.kill("SIGKILL");
    }
  });

  it("exits 2 naming a bad option", async () => {
    const d = demo(["--port", "nope"]);
    assert.equal(await d.exit, 2);
    assert.match(d.output(), /--port.*"nope"/);
  });
});
