/**
 * The memory broker's table of idempotency keys: for each (channel, key) the
 * first result of the publish that used it, remembered `ttlMs` after that
 * publish.
 *
 * Bounded, whoever publishes: at most `maxKeys` entries; past it the oldest
 * is forgotten first (a repeat of that publish would then be stored again,
 * so the bound is set well above what `--idempotency-ttl` normally holds).
 * Entries sit in a Map in insertion order, which is also the order in which
 * they expire: `sweep` drops expired entries from the front and stops at the
 * first live one, with no timer per key. A lookup also ignores an expired
 * entry that the sweep has not reached yet.
 */
export interface FirstResult {
  readonly epoch: string;
  readonly offset: number;
}

interface Entry extends FirstResult {
  readonly at: number;
}

export const DEFAULT_MAX_IDEMPOTENCY_KEYS = 100_000;

export class IdempotencyKeys {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxKeys: number = DEFAULT_MAX_IDEMPOTENCY_KEYS,
  ) {}

  /** The first result for `key` on `channel`, if it is still remembered at `now`. */
  get(channel: string, key: string, now: number): FirstResult | undefined {
    const id = entryId(channel, key);
    const e = this.entries.get(id);
    if (e === undefined) return undefined;
    if (now - e.at >= this.ttlMs) {
      this.entries.delete(id);
      return undefined;
    }
    return e;
  }

  /** Remembers the first result of a publish with `key` on `channel`. */
  set(channel: string, key: string, result: FirstResult, now: number): void {
    const id = entryId(channel, key);
    this.entries.delete(id);
    this.entries.set(id, { epoch: result.epoch, offset: result.offset, at: now });
    if (this.entries.size > this.maxKeys) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }

  /** Forgets every entry older than the TTL at `now`. */
  sweep(now: number): void {
    for (const [id, e] of this.entries) {
      if (now - e.at < this.ttlMs) return;
      this.entries.delete(id);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}

/** Channel names cannot hold a newline, so this never mixes two channels' keys. */
function entryId(channel: string, key: string): string {
  return channel + "\n" + key;
}
