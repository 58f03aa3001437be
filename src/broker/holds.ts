/**
 * Holds: the cluster-wide sets behind presence (SPEC §9), the backend event
 * feed's connect/disconnect, and a channel's occupancy.
 *
 * A set is named by a string (a channel name for presence; the server picks
 * names that no channel can take for its own sets). Each member has a key
 * (for presence: the user and the client id) and a JSON text (`member`). A
 * member is *held* by one or more nodes; it is in the set while at least one
 * hold lives. Every hold has an expiry on the shared clock: the node that
 * holds it pushes the expiry forward from its ticker (`refresh`, batched; no
 * timer per member), so the holds of a node that dies lapse by themselves
 * and are removed by the next `expire` of that set (any node may run it).
 *
 * Contract (memory and Redis alike):
 * - `hold` adds or renews this node's hold. It resolves `true` when the key
 *   was held by no node before: a join. Every join and leave is one atomic
 *   step with the change it reports, bumps the set's `version` by one and is
 *   handed, in version order per set, to the listener of `onChange` on every
 *   node (this one included).
 * - `release` drops this node's hold; `true` when it was the last: a leave.
 * - `members` answers the members of live holds and the set's version, in one
 *   consistent step, so a list built from `members` and then the changes with
 *   a higher version is exactly the set.
 * - A set's version only grows, also across the set being emptied and
 *   forgotten (memory: one counter per process; Redis: `max(last + 1, time in
 *   µs)`), so a reader that remembers a version can tell whether it missed a
 *   change: each change carries the version before it (`previous`).
 * - What is held is bounded by what callers hold: a set without members is
 *   forgotten.
 */

/** A join or a leave, as every node is told it. */
export interface HoldChange {
  readonly set: string;
  readonly kind: "join" | "leave";
  readonly key: string;
  /** The member's JSON text (for a leave: the member as it was). */
  readonly member: string;
  /** The set's version after this change. */
  readonly version: number;
  /** The set's version before it: a reader at `previous` missed nothing. */
  readonly previous: number;
}

/** What `members` answers. */
export interface HoldSnapshot {
  /** Members' JSON texts, in no particular order. */
  readonly members: string[];
  readonly version: number;
}

export interface Holds {
  /** Adds or renews this node's hold of `key` in `set` until `expiresAt` (clock ms); `true` when it is a join. */
  hold(set: string, key: string, member: string, expiresAt: number): Promise<boolean>;
  /** Drops this node's hold; `true` when no hold is left (a leave). */
  release(set: string, key: string): Promise<boolean>;
  /** Pushes the expiry of this node's holds forward, in as few round trips as the store allows. */
  refresh(holds: ReadonlyArray<readonly [set: string, key: string]>, expiresAt: number): Promise<void>;
  /**
   * Removes every hold of `set` that expired at or before `now` (any node's),
   * reporting the leaves; resolves with the JSON of each member that left
   * (each leave is reported to exactly one caller, whichever nodes expire at once).
   */
  expire(set: string, now: number): Promise<string[]>;
  /** The members of `set` held now, with the version they stand at. */
  members(set: string): Promise<HoldSnapshot>;
  /** Sets the single listener of joins and leaves (of every set, from every node). */
  onChange(listener: (change: HoldChange) => void): void;
}

/** One member of a set in memory: its text and the expiry of the (single) hold. */
interface MemoryMember {
  member: string;
  expiresAt: number;
}

interface MemorySet {
  members: Map<string, MemoryMember>;
  version: number;
}

/**
 * The one-process store: a map per set. One node holds everything, so a hold
 * is the member itself. Changes reach the listener in a microtask after the
 * call that made them, never inside it.
 */
export class MemoryHolds implements Holds {
  private readonly sets = new Map<string, MemorySet>();
  private listener: (change: HoldChange) => void = () => {};
  /** The last version given to any set. */
  private counter = 0;

  onChange(listener: (change: HoldChange) => void): void {
    this.listener = listener;
  }

  async hold(set: string, key: string, member: string, expiresAt: number): Promise<boolean> {
    let s = this.sets.get(set);
    if (!s) this.sets.set(set, (s = { members: new Map(), version: 0 }));
    const m = s.members.get(key);
    if (m) {
      m.member = member;
      m.expiresAt = Math.max(m.expiresAt, expiresAt);
      return false;
    }
    s.members.set(key, { member, expiresAt });
    this.changed(set, s, "join", key, member);
    return true;
  }

  async release(set: string, key: string): Promise<boolean> {
    const s = this.sets.get(set);
    const m = s?.members.get(key);
    if (!s || !m) return false;
    s.members.delete(key);
    this.changed(set, s, "leave", key, m.member);
    if (s.members.size === 0) this.sets.delete(set);
    return true;
  }

  async refresh(holds: ReadonlyArray<readonly [string, string]>, expiresAt: number): Promise<void> {
    for (const [set, key] of holds) {
      const m = this.sets.get(set)?.members.get(key);
      if (m && m.expiresAt < expiresAt) m.expiresAt = expiresAt;
    }
  }

  async expire(set: string, now: number): Promise<string[]> {
    const s = this.sets.get(set);
    const left: string[] = [];
    if (!s) return left;
    for (const [key, m] of s.members) {
      if (m.expiresAt > now) continue;
      s.members.delete(key);
      left.push(m.member);
      this.changed(set, s, "leave", key, m.member);
    }
    if (s.members.size === 0) this.sets.delete(set);
    return left;
  }

  async members(set: string): Promise<HoldSnapshot> {
    const s = this.sets.get(set);
    const members: string[] = [];
    if (s) for (const m of s.members.values()) members.push(m.member);
    return { members, version: s?.version ?? 0 };
  }

  /** Sets with at least one member; for tests and metrics. */
  get size(): number {
    return this.sets.size;
  }

  private changed(set: string, s: MemorySet, kind: "join" | "leave", key: string, member: string): void {
    const previous = s.version;
    s.version = ++this.counter;
    const change: HoldChange = { set, kind, key, member, version: s.version, previous };
    queueMicrotask(() => this.listener(change));
  }
}
