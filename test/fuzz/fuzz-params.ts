/**
 * How long the fuzz properties run. Inside `npm test` they are bounded to a
 * few seconds in total; `node scripts/fuzz.mjs` runs them longer.
 *
 * - `FUZZ_RUNS=<n>`: every property runs exactly n times;
 * - `FUZZ_SCALE=<k>`: every property runs k times its default count;
 * - `FUZZ_SEED=<n>`: replay a failure (fast-check prints the seed and path).
 */
import fc, { type Parameters } from "fast-check";

const runsOverride = Number(process.env.FUZZ_RUNS ?? "");
const scale = Number(process.env.FUZZ_SCALE ?? "");
const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;

/** The number of runs for a property whose default is `base`. */
export function runs(base: number): number {
  if (Number.isInteger(runsOverride) && runsOverride > 0) return runsOverride;
  if (Number.isFinite(scale) && scale > 0) return Math.max(1, Math.round(base * scale));
  return base;
}

/** fast-check parameters for a property whose default run count is `base`. */
export function params<T>(base: number): Parameters<T> {
  const p: Parameters<T> = { numRuns: runs(base), endOnFailure: true };
  if (seed !== undefined && Number.isInteger(seed)) p.seed = seed;
  if (process.env.FUZZ_PATH) p.path = process.env.FUZZ_PATH;
  return p;
}

/** Whether the suite is running longer than the bounded default (more output is fine then). */
export const long = runs(100) > 100;

/**
 * Any UTF-16 text, lone surrogates and control characters included.
 * (fast-check's `unit: "binary"` is equivalent but takes seconds to build.)
 */
export function anyText(constraints: { minLength?: number; maxLength?: number } = {}): fc.Arbitrary<string> {
  return fc.string({ ...constraints, unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) });
}
