/**
 * The client's plain HTTP requests to the server (`POST /api/publish` and
 * `POST /api/rpc`): JSON in, JSON out, the token as a Bearer header, and the
 * SPEC §4 error body turned into a {@link HeartlineError} with its status.
 */
import { HeartlineError, lostError } from "./errors.js";
import type { FetchFunction } from "./types.js";

/**
 * POSTs `body` as JSON to `url`; resolves with the answer's JSON body.
 * Rejects with `disconnected` when no answer came (network error, or
 * `signal` aborted), and with the server's code, message and status when it
 * refused. Cookies go as the platform's `fetch` sends them by default (same
 * origin).
 */
export async function postJson(fetch: FetchFunction, url: string, body: unknown, token: string | undefined, signal?: AbortSignal): Promise<Record<string, unknown>> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(token && { Authorization: "Bearer " + token }) },
    body: JSON.stringify(body),
    signal,
  }).catch(() => Promise.reject(lostError()));
  // An answer that is not a JSON object (a proxy's error page, a cut body) reads as an empty one.
  let json = (await res.json().catch(() => 0)) as { error?: { code?: string; message?: string } };
  if (!json || typeof json != "object") json = {};
  if (!res.ok) throw new HeartlineError(json.error?.code ?? "http_error", json.error?.message ?? `HTTP ${res.status}`, res.status);
  return json;
}
