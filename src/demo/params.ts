/**
 * The arena's RPC params, read as hostile input: each reader either returns
 * a value of the promised type and size or throws a 400 {@link HookError}.
 */
import { HookError } from "../errors.js";

/** The longest player name, in characters, after control characters are removed. */
export const MAX_NAME_LENGTH = 16;
/** Names longer than this are refused before they are cleaned, so nothing large is ever copied. */
const MAX_RAW_NAME = 64;

function bad(message: string): HookError {
  return new HookError(400, "bad_params", message);
}

/** The params as a plain object, or a 400. */
export function fields(params: unknown): Record<string, unknown> {
  if (params === null || typeof params !== "object" || Array.isArray(params)) throw bad("params must be a JSON object");
  return params as Record<string, unknown>;
}

/** `p[key]` as a finite number (JSON cannot carry NaN, but a library caller can). */
export function finite(p: Record<string, unknown>, key: string): number {
  const v = p[key];
  if (typeof v !== "number" || !Number.isFinite(v)) throw bad(`${key} must be a finite number`);
  return v;
}

/** `p[key]` as a string of 1 to `max` UTF-16 units. */
export function shortString(p: Record<string, unknown>, key: string, max: number): string {
  const v = p[key];
  if (typeof v !== "string" || v.length === 0 || v.length > max) throw bad(`${key} must be a string of 1 to ${max} characters`);
  return v;
}

/** A name as shown to everyone: no control characters, trimmed, at most {@link MAX_NAME_LENGTH}. */
export function cleanName(raw: unknown): string {
  if (typeof raw !== "string" || raw.length > MAX_RAW_NAME) throw bad(`name must be a string of at most ${MAX_NAME_LENGTH} characters`);
  // Control and format characters (bidi overrides included) would let a name disguise itself.
  const name = [...raw.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, "").trim()].slice(0, MAX_NAME_LENGTH).join("").trim();
  if (name.length === 0) throw bad("name must not be empty");
  return name;
}
