/**
 * Connections or held polls by user, so the server API (disconnect, revoke)
 * finds a user's without a scan. Only named users are kept; a user's set is
 * dropped with its last member.
 */
export class ByUser<T> {
  private readonly sets = new Map<string, Set<T>>();

  add(user: string | undefined, item: T): void {
    if (user === undefined) return;
    const set = this.sets.get(user);
    if (set === undefined) this.sets.set(user, new Set([item]));
    else set.add(item);
  }

  delete(user: string | undefined, item: T): void {
    const set = user === undefined ? undefined : this.sets.get(user);
    if (set !== undefined && set.delete(item) && set.size === 0) this.sets.delete(user!);
  }

  /** `user`'s items, as a copy (acting on them may change the index). */
  of(user: string): T[] {
    const set = this.sets.get(user);
    return set === undefined ? [] : [...set];
  }
}
