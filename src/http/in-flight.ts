/** A count of operations under way, and a way to wait until there are none (drain). */
export class InFlight {
  private n = 0;
  private waiters: Array<() => void> = [];

  get size(): number {
    return this.n;
  }

  /** Counts one operation; call the returned function (once; more calls do nothing) when it is over. */
  begin(): () => void {
    this.n++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.n === 0) {
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
      }
    };
  }

  /** Resolves once nothing is in flight. */
  idle(): Promise<void> {
    return this.n === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}
