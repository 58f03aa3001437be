/**
 * The cluster broker's fan-out continuity (FanoutTracks) with a history that
 * cannot always be read: a gap whose read fails is not handed over as a
 * loss; it is healed, in order, once history answers again. The history
 * here is an array behind the same read interface as the Redis script's.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../../src/clock.js";
import type { Position, ReadResult, StoredMessage } from "../../src/broker/broker.js";
import { FanoutTracks } from "../../src/broker/redis-fanout.js";
import { createLogger } from "../../src/log.js";

const EPOCH = "e1";
const message = (offset: number): StoredMessage => ({ channel: "c", epoch: EPOCH, offset, json: `{"n":${offset}}` });
const notification = (m: StoredMessage) => `${m.epoch}\n${m.offset}\n${m.channel}\n${m.json}`;

/** A channel's stored history, readable unless `down`. */
class History {
  readonly stored: StoredMessage[] = [];
  down = false;
  reads = 0;

  read(since: Position | undefined, limit: number): ReadResult {
    this.reads++;
    if (this.down) throw new Error("Command timed out");
    const latest = this.stored.at(-1)?.offset ?? 0;
    const after = since === undefined ? [] : this.stored.filter((m) => m.offset > since.offset).slice(0, limit);
    return { epoch: EPOCH, offset: latest, messages: after, recovered: since !== undefined };
  }
}

function tracksOver(history: History, clock: ManualClock): { tracks: FanoutTracks; handed: number[] } {
  const tracks = new FanoutTracks({
    historySize: 100,
    ttlMs: 60_000,
    readTtlMs: 60_000,
    maxTracks: 100,
    clock,
    log: createLogger("silent"),
    readRaw: async (_channel, since, limit) => history.read(since, limit),
    renew: async () => {},
    isReady: () => true,
    isActive: () => true,
  });
  const handed: number[] = [];
  tracks.listener = (m) => handed.push(m.offset);
  tracks.subscribed = true;
  return { tracks, handed };
}

const settle = () => new Promise((r) => setImmediate(r));

describe("fan-out continuity when history cannot be read", () => {
  it("keeps a message that follows a gap until the gap can be read, then hands both over in order", async () => {
    const clock = new ManualClock();
    const history = new History();
    const { tracks, handed } = tracksOver(history, clock);
    for (const n of [1, 2, 3, 4]) history.stored.push(message(n));
    tracks.onNotification(notification(message(1)));
    // 2 and 3 were published while the fan-out connection was cut: their notifications never came.
    history.down = true;
    tracks.onNotification(notification(message(4)));
    await settle();
    assert.deepEqual(handed, [1], "nothing is handed over the gap while history cannot be read");
    assert.ok(history.reads >= 1, "the gap was looked for in history");
    // Still down at the first sweep: nothing changes, nothing is lost.
    clock.advance(1000);
    tracks.sweep(clock.now());
    await settle();
    assert.deepEqual(handed, [1]);
    history.down = false;
    history.stored.push(message(5));
    clock.advance(1000);
    tracks.sweep(clock.now());
    await settle();
    assert.deepEqual(handed, [1, 2, 3, 4, 5], "the heal hands over the gap, the message kept back, and what followed");
    // Later notifications of what was healed are duplicates.
    tracks.onNotification(notification(message(5)));
    tracks.onNotification(notification(message(6)));
    await settle();
    assert.deepEqual(handed, [1, 2, 3, 4, 5, 6]);
  });

  it("still hands over a message past history that was trimmed away, for the hub to announce the gap", async () => {
    const clock = new ManualClock();
    const history = new History();
    const { tracks, handed } = tracksOver(history, clock);
    history.stored.push(message(1));
    tracks.onNotification(notification(message(1)));
    // 2 is gone from history (trimmed); 3 is there.
    history.stored.push(message(3));
    tracks.onNotification(notification(message(3)));
    await settle();
    assert.deepEqual(handed, [1, 3]);
  });
});
