/**
 * The one path every route decision reads: the request target's path exactly
 * as received (the part before `?`), never normalised. A proxy in front may
 * allow or deny by path; if Heartline normalised `//x/metrics` or
 * `/healthz/%2e%2e/metrics` to `/metrics` while the proxy did not (or the
 * other way round), a denied route would be reachable. So a target that
 * anyone could read as another path is refused instead of guessed at.
 */
import { httpError } from "../errors.js";

/**
 * The raw path of `url` (a request target) when it is a normalised
 * origin-form path, else undefined. Refused: anything not starting with one
 * `/` (absolute-form, `*`, empty), an empty segment (`//`), a `.` or `..`
 * segment, a backslash — each also when spelled with `%2e`, `%2f` or `%5c`
 * (any case), as a decoding proxy or framework would read it.
 */
export function routePath(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  if (!plainPath(path)) return undefined;
  // The rare path with a percent sign is checked again as a decoding proxy would read it.
  if (path.includes("%") && !plainPath(decodeSeparators(path))) return undefined;
  return path;
}

/** One pass over `path`: a leading `/`, no empty, `.` or `..` segment, no backslash or `#`. */
function plainPath(path: string): boolean {
  if (path.charCodeAt(0) !== 47 /* / */) return false;
  const end = path.length;
  let segmentStart = 1;
  for (let i = 1; i <= end; i++) {
    const c = i === end ? 47 : path.charCodeAt(i);
    if (c === 47 /* / */) {
      if (!plainSegment(path, segmentStart, i, i === end)) return false;
      segmentStart = i + 1;
    } else if (c === 92 /* \ */ || c === 35 /* # */) {
      return false;
    }
  }
  return true;
}

/**
 * Whether `url[from, to)` is an acceptable segment: not empty (except the
 * last one, `/` or `/api/`), not `.` or `..`.
 */
function plainSegment(url: string, from: number, to: number, last: boolean): boolean {
  const n = to - from;
  if (n === 0) return last;
  if (n > 2 || url.charCodeAt(from) !== 46 /* . */) return true;
  return n === 2 && url.charCodeAt(from + 1) !== 46;
}

/** `%2e` → `.`, `%2f` → `/`, `%5c` → `\` (any case); nothing else is decoded. */
function decodeSeparators(path: string): string {
  return path.replace(/%(2e|2f|5c)/gi, (m) => String.fromCharCode(parseInt(m.slice(1), 16)));
}

/** {@link routePath}, refusing with 400 bad_request. */
export function assertRoutePath(url: string | undefined): string {
  const path = routePath(url);
  if (path === undefined) {
    throw httpError(
      "bad_request",
      "the request target must be a plain absolute path: one leading /, no empty, . or .. segments (also as %2e, %2f), no backslash",
    );
  }
  return path;
}

/**
 * The query of a request target whose path routePath accepted, read as
 * `new URL(target).searchParams` reads it (the part after the first `?`, up
 * to a `#`), without parsing a whole URL when the query is visible ASCII
 * (URL would first percent-encode anything else, and drop tabs and line
 * breaks; such a target is read by URL).
 */
export function queryOf(target: string | undefined): Pick<URL, "searchParams"> {
  const t = target ?? "";
  const q = t.indexOf("?");
  if (q < 0) return { searchParams: new URLSearchParams() };
  const hash = t.indexOf("#", q);
  // From the `?`, which URLSearchParams drops (a second one stays, as in URL).
  const query = hash < 0 ? t.slice(q) : t.slice(q, hash);
  if (NOT_VISIBLE_ASCII.test(query)) return new URL(t, "http://heartline.invalid");
  return { searchParams: new URLSearchParams(query) };
}

const NOT_VISIBLE_ASCII = /[^\x21-\x7e]/;
