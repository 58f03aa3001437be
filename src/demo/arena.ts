/**
 * The demo game's referee: the arena of `web/demo.html`, run inside the
 * server process. Browsers do not publish where they are; they ask to move
 * (`arena.move`), and the arena checks the claim against the player's speed
 * and the walls, keeps the one true position, collects the coins a player
 * passes over and broadcasts the state on `game:arena` at a fixed tick while
 * anyone plays. Pure logic: time is a {@link Clock} and the way out is a
 * `publish(channel, data)` function, so tests drive it with a ManualClock
 * and no sockets.
 *
 * Every parameter of every call is treated as hostile: a bad one is a
 * {@link HookError} (400/403/404), never an exception of another kind, and
 * everything the arena holds is bounded (players, name length, coins).
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Clock } from "../clock.js";
import { HookError } from "../errors.js";
import { cleanName, fields, finite, shortString } from "./params.js";
import type { ArenaSettings, JoinResult, MoveResult, Snapshot } from "./types.js";

export { cleanName, MAX_NAME_LENGTH } from "./params.js";
export type { ArenaSettings, JoinResult, MoveResult, Snapshot } from "./types.js";

/** The channel the arena owns: only the server publishes on it. */
export const ARENA_CHANNEL = "game:arena";
/** Moves may miss the player's budget by this much (rounding by the page) without a correction. */
const SLACK = 0.5;

export interface ArenaOptions {
  clock: Clock;
  /** Sends a snapshot; its promise (if any) is awaited before the next one, and its failure is reported to `onError`. */
  publish: (channel: string, data: unknown) => unknown;
  /** Where coins and players appear; tests pass a fixed sequence. Default `Math.random`. */
  random?: () => number;
  /** Told when a snapshot could not be published. */
  onError?: (err: unknown) => void;
  width?: number;
  height?: number;
  /** A player's radius. */
  radius?: number;
  /** Arena units per second. */
  speed?: number;
  /** Movement a player may save up while standing still or waiting for the network, in ms of walking. */
  burstMs?: number;
  /** Snapshots per second while someone plays. */
  tickHz?: number;
  maxPlayers?: number;
  /** A player not heard from for this long is dropped (SSE and polling players have no disconnect). */
  idleMs?: number;
  /** A WebSocket player whose connection closed is dropped after this, unless it calls again (a reconnect). */
  leaveGraceMs?: number;
  /** Coins on the field. */
  coins?: number;
  coinRadius?: number;
  /** A collected coin comes back elsewhere after this. */
  respawnMs?: number;
}

interface Player {
  id: string;
  name: string;
  /** The secret as the player sends it (base64url), compared in constant time. */
  secret: Buffer;
  x: number;
  y: number;
  score: number;
  /** Distance the player may still walk at once; refilled at `speed`, capped at `speed × burstMs`. */
  budget: number;
  budgetAt: number;
  lastSeen: number;
  /** The WebSocket connection it last called over. */
  client: string | undefined;
  /** Set when that connection closed: the player leaves at this time unless it calls again. */
  leaveAt: number | undefined;
  joinedAt: number;
}

interface Coin {
  id: number;
  x: number;
  y: number;
}

const round1 = (v: number) => Math.round(v * 10) / 10;
const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));

export class Arena {
  readonly settings: ArenaSettings;
  private readonly clock: Clock;
  private readonly publish: ArenaOptions["publish"];
  private readonly random: () => number;
  private readonly onError: (err: unknown) => void;
  private readonly maxPlayers: number;
  private readonly leaveGraceMs: number;
  private readonly coinCount: number;
  private readonly respawnMs: number;
  private readonly maxBudget: number;
  private readonly players = new Map<string, Player>();
  private readonly coins: Coin[] = [];
  /** When each missing coin comes back. */
  private readonly respawns: number[] = [];
  private nextCoinId = 1;
  private tickNo = 0;
  /** When the ticker started: snapshot times count from here. */
  private startedAt = 0;
  private stopTicker: (() => void) | undefined;
  private sending = false;
  private closed = false;

  constructor(options: ArenaOptions) {
    this.clock = options.clock;
    this.publish = options.publish;
    this.random = options.random ?? Math.random;
    this.onError = options.onError ?? (() => {});
    const speed = options.speed ?? 300;
    this.settings = {
      width: options.width ?? 960,
      height: options.height ?? 560,
      radius: options.radius ?? 16,
      speed,
      coinRadius: options.coinRadius ?? 10,
      tickMs: Math.round(1000 / (options.tickHz ?? 15)),
      idleMs: options.idleMs ?? 10_000,
    };
    this.maxPlayers = options.maxPlayers ?? 32;
    this.leaveGraceMs = options.leaveGraceMs ?? 3000;
    this.coinCount = options.coins ?? 5;
    this.respawnMs = options.respawnMs ?? 1000;
    this.maxBudget = (speed / 1000) * (options.burstMs ?? 400);
  }

  /** Players in the arena now. */
  get size(): number {
    return this.players.size;
  }

  /** Whether snapshots are being broadcast (only while someone plays). */
  get ticking(): boolean {
    return this.stopTicker !== undefined;
  }

  /**
   * One client call. `client` is the WebSocket connection it came over, if
   * any: a player who joined over it leaves when it closes (see
   * {@link disconnected}). Throws {@link HookError} for anything refused.
   */
  call(method: string, params: unknown, client?: string): JoinResult | MoveResult | { name: string } | { left: true } {
    switch (method) {
      case "arena.join":
        return this.join(params, client);
      case "arena.move":
        return this.move(params, client);
      case "arena.rename":
        return this.rename(params, client);
      case "arena.leave":
        return this.leave(params);
      default:
        throw new HookError(404, "unknown_method", `no method ${JSON.stringify(method.slice(0, 100))}; the arena answers arena.join, arena.move, arena.rename and arena.leave`);
    }
  }

  join(params: unknown, client?: string): JoinResult {
    if (this.closed) throw new HookError(503, "arena_closed", "the arena is closing");
    const name = cleanName(fields(params).name);
    if (this.players.size >= this.maxPlayers) throw new HookError(503, "arena_full", `the arena holds ${this.maxPlayers} players already; try again later`);
    let id: string;
    do id = randomBytes(6).toString("base64url");
    while (this.players.has(id));
    const secret = randomBytes(18).toString("base64url");
    const { width, height, radius } = this.settings;
    const now = this.clock.now();
    const player: Player = {
      id,
      name,
      secret: Buffer.from(secret),
      x: round1(radius + this.random() * (width - 2 * radius)),
      y: round1(radius + this.random() * (height - 2 * radius)),
      score: 0,
      budget: 0,
      budgetAt: now,
      lastSeen: now,
      client,
      leaveAt: undefined,
      joinedAt: now,
    };
    this.players.set(id, player);
    if (!this.stopTicker) this.start();
    this.collect(player, player.x, player.y);
    return { id, secret, name, x: player.x, y: player.y, arena: { ...this.settings } };
  }

  /**
   * `{id, secret, x, y}` claims a new position; `{id, secret, dx, dy}` walks
   * in a direction (length at most 1) as far as the player could since its
   * last move. Either way the answer is where the player really is.
   */
  move(params: unknown, client?: string): MoveResult {
    const p = fields(params);
    const player = this.authenticate(p, client);
    const { width, height, radius } = this.settings;
    this.refill(player);
    let tx: number;
    let ty: number;
    let corrected = false;
    if (p.x !== undefined || p.y !== undefined) {
      tx = finite(p, "x");
      ty = finite(p, "y");
    } else {
      let dx = finite(p, "dx");
      let dy = finite(p, "dy");
      const len = Math.hypot(dx, dy);
      if (len > 1) [dx, dy] = [dx / len, dy / len];
      const reach = Math.max(0, player.budget);
      tx = player.x + dx * reach;
      ty = player.y + dy * reach;
    }
    // Walls first: a claim far outside (even 1e308) becomes a point on the field before any distance is taken.
    const bx = clamp(tx, radius, width - radius);
    const by = clamp(ty, radius, height - radius);
    if (Math.abs(bx - tx) > SLACK || Math.abs(by - ty) > SLACK) corrected = true;
    const d = Math.hypot(bx - player.x, by - player.y);
    let nx = bx;
    let ny = by;
    if (d > player.budget + SLACK) {
      const k = Math.max(0, player.budget) / d;
      nx = player.x + (bx - player.x) * k;
      ny = player.y + (by - player.y) * k;
      corrected = true;
    }
    nx = round1(nx);
    ny = round1(ny);
    player.budget -= Math.hypot(nx - player.x, ny - player.y);
    this.collect(player, nx, ny);
    player.x = nx;
    player.y = ny;
    return { x: nx, y: ny, corrected, score: player.score };
  }

  /** `{id, secret, name}`: the player's new name, as cleaned. */
  rename(params: unknown, client?: string): { name: string } {
    const p = fields(params);
    const player = this.authenticate(p, client);
    player.name = cleanName(p.name);
    return { name: player.name };
  }

  leave(params: unknown): { left: true } {
    const player = this.authenticate(fields(params), undefined);
    this.players.delete(player.id);
    return { left: true };
  }

  /** The name of the player that last called over connection `client`, if any (presence info). */
  nameOf(client: string | undefined): string | undefined {
    if (client === undefined) return undefined;
    for (const player of this.players.values()) if (player.client === client) return player.name;
    return undefined;
  }

  /**
   * A WebSocket connection closed: its players leave after the grace period,
   * unless they call again before (the page reconnected).
   */
  disconnected(client: string): void {
    const at = this.clock.now() + this.leaveGraceMs;
    for (const player of this.players.values()) if (player.client === client) player.leaveAt = at;
    if (this.leaveGraceMs <= 0) this.dropGone(this.clock.now());
  }

  /** The state as broadcast. */
  snapshot(): Snapshot {
    const all = [...this.players.values()];
    return {
      type: "snapshot",
      tick: this.tickNo,
      t: Math.round(this.clock.now() - this.startedAt),
      players: all.map((p) => [p.id, p.name, p.x, p.y]),
      pickups: this.coins.map((c) => [c.id, c.x, c.y]),
      scores: all
        .sort((a, b) => b.score - a.score || a.joinedAt - b.joinedAt)
        .map((p): [string, number] => [p.id, p.score]),
    };
  }

  /** Stops broadcasting; later joins are refused. */
  close(): void {
    this.closed = true;
    this.stop();
    this.players.clear();
  }

  private authenticate(p: Record<string, unknown>, client: string | undefined): Player {
    const id = shortString(p, "id", 64);
    const secret = shortString(p, "secret", 64);
    const player = this.players.get(id);
    if (!player) throw new HookError(404, "unknown_player", "no such player in the arena (it left or was dropped); join again");
    const given = Buffer.from(secret);
    if (given.length !== player.secret.length || !timingSafeEqual(given, player.secret)) {
      throw new HookError(403, "bad_secret", "the secret does not match this player");
    }
    player.lastSeen = this.clock.now();
    player.leaveAt = undefined;
    if (client !== undefined) player.client = client;
    return player;
  }

  private refill(player: Player): void {
    const now = this.clock.now();
    player.budget = Math.min(this.maxBudget, player.budget + ((now - player.budgetAt) * this.settings.speed) / 1000);
    player.budgetAt = now;
  }

  /** Scores every coin within reach of the way from the player's position to (x, y). */
  private collect(player: Player, x: number, y: number): void {
    const reach = this.settings.radius + this.settings.coinRadius;
    for (let i = this.coins.length - 1; i >= 0; i--) {
      const c = this.coins[i]!;
      if (distanceToSegment(c.x, c.y, player.x, player.y, x, y) <= reach) {
        this.coins.splice(i, 1);
        this.respawns.push(this.clock.now() + this.respawnMs);
        player.score++;
      }
    }
  }

  private start(): void {
    this.tickNo = 0;
    this.startedAt = this.clock.now();
    this.stopTicker = this.clock.every(this.settings.tickMs, () => this.tick());
    while (this.coins.length + this.respawns.length < this.coinCount) this.spawnCoin();
  }

  private stop(): void {
    this.stopTicker?.();
    this.stopTicker = undefined;
    this.coins.length = 0;
    this.respawns.length = 0;
  }

  private tick(): void {
    const now = this.clock.now();
    this.dropGone(now);
    for (let i = this.respawns.length - 1; i >= 0; i--) {
      if (this.respawns[i]! <= now) {
        this.respawns.splice(i, 1);
        this.spawnCoin();
      }
    }
    this.tickNo++;
    this.send(this.snapshot());
    // The last snapshot (nobody left) is sent, so pages clear the field; then the arena is quiet.
    if (this.players.size === 0) this.stop();
  }

  private dropGone(now: number): void {
    const idle = now - this.settings.idleMs;
    for (const [id, p] of this.players) {
      if (p.lastSeen <= idle || (p.leaveAt !== undefined && p.leaveAt <= now)) this.players.delete(id);
    }
  }

  private send(snapshot: Snapshot): void {
    // One snapshot at a time: a slow broker skips ticks rather than queueing them.
    if (this.sending) return;
    this.sending = true;
    let pending: unknown;
    try {
      pending = this.publish(ARENA_CHANNEL, snapshot);
    } catch (err) {
      this.sending = false;
      this.onError(err);
      return;
    }
    if (!isThenable(pending)) {
      this.sending = false;
      return;
    }
    pending.then(
      () => {
        this.sending = false;
      },
      (err: unknown) => {
        this.sending = false;
        this.onError(err);
      },
    );
  }

  /** A coin somewhere free: not on a player, not on another coin (a few tries, then anywhere). */
  private spawnCoin(): void {
    const { width, height, radius, coinRadius } = this.settings;
    const margin = coinRadius + 4;
    let x = 0;
    let y = 0;
    for (let attempt = 0; attempt < 8; attempt++) {
      x = round1(margin + this.random() * (width - 2 * margin));
      y = round1(margin + this.random() * (height - 2 * margin));
      const clear = (px: number, py: number, r: number) => Math.hypot(px - x, py - y) > r + coinRadius + radius;
      if ([...this.players.values()].every((p) => clear(p.x, p.y, radius)) && this.coins.every((c) => clear(c.x, c.y, coinRadius))) break;
    }
    this.coins.push({ id: this.nextCoinId++, x, y });
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === "object" || typeof v === "function") && typeof (v as { then?: unknown }).then === "function";
}

/** Distance from (px, py) to the segment (ax, ay)–(bx, by). */
export function distanceToSegment(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const vx = bx - ax;
  const vy = by - ay;
  const len2 = vx * vx + vy * vy;
  const t = len2 === 0 ? 0 : clamp(((px - ax) * vx + (py - ay) * vy) / len2, 0, 1);
  return Math.hypot(px - (ax + t * vx), py - (ay + t * vy));
}
