/**
 * The Holds contract (src/broker/holds.ts) as one suite, run against every
 * implementation through a factory: joins and leaves, versions, members,
 * expiry and refresh, as one node sees them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { HoldChange, Holds } from "../../src/broker/holds.js";
import { waitFor } from "../helpers/recorded.js";

export interface HoldsFactory {
  /** Fresh holds (a set name space of their own) on a clock at `now()`; `close` ends them. */
  make(): Promise<{ holds: Holds; now(): number; close(): Promise<void> }>;
}

export function holdsSuite(name: string, factory: HoldsFactory): void {
  describe(`Holds contract: ${name}`, () => {
    const withHolds = async (fn: (h: Holds, changes: HoldChange[], now: number) => Promise<void>) => {
      const made = await factory.make();
      const changes: HoldChange[] = [];
      made.holds.onChange((c) => changes.push(c));
      try {
        await fn(made.holds, changes, made.now());
      } finally {
        await made.close();
      }
    };
    /** Waits until `n` changes arrived (the Redis ones come through pub/sub), then a little more for strays. */
    const settle = async (changes: HoldChange[], n: number) => {
      await waitFor(() => changes.length >= n, 5000, `${n} changes`);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(changes.length, n, "no change beyond those expected");
    };
    const plain = (c: HoldChange) => [c.set, c.kind, c.key, c.member];

    it("reports a join for the first hold of a key and none for a renewal, with its member text", () =>
      withHolds(async (h, changes, now) => {
        assert.equal(await h.hold("room", "u1:c1", '{"user":"u1"}', now + 10_000), true);
        assert.equal(await h.hold("room", "u1:c1", '{"user":"u1"}', now + 20_000), false, "a renewal is no join");
        assert.equal(await h.hold("room", "u2:c2", '{"user":"u2"}', now + 10_000), true);
        await settle(changes, 2);
        assert.deepEqual(changes.map(plain), [
          ["room", "join", "u1:c1", '{"user":"u1"}'],
          ["room", "join", "u2:c2", '{"user":"u2"}'],
        ]);
      }));

    it("reports a leave on release with the member as it was, and nothing for a key not held", () =>
      withHolds(async (h, changes, now) => {
        await h.hold("r", "k", '{"n":1}', now + 10_000);
        assert.equal(await h.release("r", "k"), true);
        assert.equal(await h.release("r", "k"), false, "released already");
        assert.equal(await h.release("r", "never"), false);
        assert.equal(await h.release("no-such-set", "k"), false);
        await settle(changes, 2);
        assert.deepEqual(changes.map(plain), [
          ["r", "join", "k", '{"n":1}'],
          ["r", "leave", "k", '{"n":1}'],
        ]);
      }));

    it("grows a set's version with every change, each change naming the version before it", () =>
      withHolds(async (h, changes, now) => {
        for (let i = 0; i < 5; i++) await h.hold("v", `k${i}`, String(i), now + 10_000);
        for (let i = 0; i < 5; i += 2) await h.release("v", `k${i}`);
        await h.hold("other", "x", "0", now + 10_000);
        await settle(changes, 9);
        const mine = changes.filter((c) => c.set === "v");
        assert.equal(mine.length, 8);
        for (let i = 1; i < mine.length; i++) {
          assert.ok(mine[i]!.version > mine[i - 1]!.version, "versions strictly grow");
          assert.equal(mine[i]!.previous, mine[i - 1]!.version, "previous chains");
        }
        assert.ok(mine[0]!.previous < mine[0]!.version);
        assert.ok(mine.every((c) => Number.isSafeInteger(c.version) && Number.isSafeInteger(c.previous)));
      }));

    it("answers members with the version of the last change, so the snapshot plus later changes is the set", () =>
      withHolds(async (h, changes, now) => {
        assert.deepEqual((await h.members("m")).members, [], "a set never held has no member");
        await h.hold("m", "a", '"A"', now + 10_000);
        await h.hold("m", "b", '"B"', now + 10_000);
        await settle(changes, 2);
        const snap = await h.members("m");
        assert.deepEqual([...snap.members].sort(), ['"A"', '"B"']);
        assert.equal(snap.version, changes[1]!.version);
        await h.release("m", "a");
        await h.hold("m", "c", '"C"', now + 10_000);
        await settle(changes, 4);
        const list = new Set(snap.members);
        for (const c of changes) {
          if (c.version <= snap.version) continue;
          if (c.kind === "join") list.add(c.member);
          else list.delete(c.member);
        }
        const after = await h.members("m");
        assert.deepEqual([...list].sort(), [...after.members].sort());
        assert.deepEqual([...after.members].sort(), ['"B"', '"C"']);
        assert.equal(after.version, changes[3]!.version);
      }));

    it("expires holds at or before now, reporting each leave, and keeps later ones", () =>
      withHolds(async (h, changes, now) => {
        await h.hold("e", "early", '"early"', now + 1000);
        await h.hold("e", "edge", '"edge"', now + 2000);
        await h.hold("e", "late", '"late"', now + 3000);
        assert.deepEqual(await h.expire("e", now + 500), []);
        assert.deepEqual((await h.expire("e", now + 2000)).sort(), ['"early"', '"edge"'], "expire answers the members that left");
        await settle(changes, 5);
        assert.deepEqual(changes.slice(3).map(plain).sort(), [
          ["e", "leave", "early", '"early"'],
          ["e", "leave", "edge", '"edge"'],
        ]);
        assert.equal(await h.release("e", "early"), false, "an expired hold is gone");
        assert.deepEqual(await h.expire("empty-set", now + 10_000), []);
        assert.deepEqual(await h.expire("e", now + 3000), ['"late"']);
        await settle(changes, 6);
        assert.deepEqual((await h.members("e")).members, []);
      }));

    it("pushes expiries forward in one refresh of many holds, never backward", () =>
      withHolds(async (h, changes, now) => {
        const holds: Array<[string, string]> = [];
        for (let s = 0; s < 3; s++) for (let k = 0; k < 20; k++) holds.push([`set${s}`, `k${k}`]);
        for (const [set, key] of holds) await h.hold(set, key, JSON.stringify(key), now + 1000);
        await h.hold("set0", "long", '"long"', now + 50_000);
        await h.refresh([...holds, ["set0", "long"], ["set0", "not-held"], ["unknown", "k"]], now + 10_000);
        for (let s = 0; s < 3; s++) await h.expire(`set${s}`, now + 5000);
        await settle(changes, 61);
        assert.equal((await h.members("set1")).members.length, 20, "refreshed holds outlive their first expiry");
        await h.expire("set0", now + 20_000);
        await settle(changes, 81);
        assert.deepEqual((await h.members("set0")).members, ['"long"'], "refresh did not shorten a later expiry");
        assert.equal(await h.release("set0", "not-held"), false, "refresh holds nothing new");
        await h.refresh([], now + 1);
      }));

    it("keeps any text as set, key and member: newlines, braces, quotes, unicode", () =>
      withHolds(async (h, changes, now) => {
        const set = 'odd {set}\n"x"';
        const key = 'user\n{1}\\"é🙂/</';
        const member = '{"info":"line\\nbreak","emoji":"🙂"}\n';
        assert.equal(await h.hold(set, key, member, now + 10_000), true);
        assert.equal(await h.hold(set, key + "\n", "2", now + 10_000), true, "another key");
        await settle(changes, 2);
        assert.deepEqual(plain(changes[0]!), [set, "join", key, member]);
        assert.deepEqual([...(await h.members(set)).members].sort(), [member, "2"].sort());
        assert.equal(await h.release(set, key), true);
        await settle(changes, 3);
        assert.deepEqual(plain(changes[2]!), [set, "leave", key, member]);
      }));

    it("forgets a set once it has no member, and a later join gets a higher version", () =>
      withHolds(async (h, changes, now) => {
        await h.hold("f", "k", "1", now + 10_000);
        await h.release("f", "k");
        await settle(changes, 2);
        assert.deepEqual((await h.members("f")).members, []);
        await h.hold("f", "k", "2", now + 10_000);
        await settle(changes, 3);
        assert.ok(changes[2]!.version > changes[1]!.version);
      }));
  });
}
