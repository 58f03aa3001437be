/**
 * What the arena says on the wire: the answers of its RPCs and the snapshot
 * it broadcasts on `game:arena`. The page (web/demo.html) reads these.
 */

/** What a player is told on joining, and what the page needs to move like the server does. */
export interface ArenaSettings {
  width: number;
  height: number;
  radius: number;
  /** Arena units per second. */
  speed: number;
  coinRadius: number;
  tickMs: number;
  idleMs: number;
}

/** `arena.join`'s answer. */
export interface JoinResult {
  id: string;
  /** Proves the caller is this player in later calls; known only to the caller. */
  secret: string;
  name: string;
  x: number;
  y: number;
  arena: ArenaSettings;
}

/** `arena.move`'s answer: the authoritative position; `corrected` when it is not what was claimed. */
export interface MoveResult {
  x: number;
  y: number;
  corrected: boolean;
  score: number;
}

/**
 * One broadcast state, compact: `t` is the server's time of it in ms since
 * the arena started (ticks of a timer drift; pages place snapshots by `t`),
 * `players` are `[id, name, x, y]`, `pickups` `[id, x, y]`, `scores`
 * `[id, score]` best first. Positions have one decimal.
 */
export interface Snapshot {
  type: "snapshot";
  tick: number;
  t: number;
  players: Array<[string, string, number, number]>;
  pickups: Array<[number, number, number]>;
  scores: Array<[string, number]>;
}
