/**
 * `POST /api/broadcast` and the library's `broadcast()` (SPEC §10): one data
 * to many channels, each stored as its own publish (with the same
 * `idempotencyKey`, deduplicated per channel). One channel's failure is its
 * own entry in the answer; the others are stored.
 */
import type { IncomingMessage } from "node:http";
import { HeartlineError, httpError } from "../errors.js";
import { assertChannelName } from "../hub/channel-name.js";
import { assertJsonContentType, parseJson, readBody } from "./body.js";
import { checkIdempotencyKey, type Publisher, type PublishResult } from "./publish.js";

/** Channels one broadcast may name. */
export const MAX_BROADCAST_CHANNELS = 1000;
/** Room in a broadcast body for the channel list and the envelope. */
const LIST_BYTES = MAX_BROADCAST_CHANNELS * 260 + 4096;

export type BroadcastEntry = PublishResult | { channel: string; error: { code: string; message: string } };

export interface BroadcastResult {
  results: BroadcastEntry[];
}

/** Validates the channels (1 to 1000 valid names, no repeats) and the data once, then stores it on each channel. */
export async function broadcast(publisher: Publisher, channels: unknown, data: unknown, idempotencyKey?: unknown): Promise<BroadcastResult> {
  if (!Array.isArray(channels) || channels.length === 0 || channels.length > MAX_BROADCAST_CHANNELS) {
    throw httpError("bad_request", `"channels" must be an array of 1 to ${MAX_BROADCAST_CHANNELS} channel names`);
  }
  const names = channels.map((c) => assertChannelName(c));
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) throw httpError("bad_request", `"channels" names ${n} twice`);
    seen.add(n);
  }
  const key = checkIdempotencyKey(idempotencyKey);
  const json = publisher.encode(data);
  const results = await Promise.all(
    names.map((n) =>
      publisher.store(n, json, key).catch((err: unknown): BroadcastEntry => {
        const e = err instanceof HeartlineError ? err : new HeartlineError("internal_error", "unexpected error; it was logged");
        return { channel: n, error: { code: e.code, message: e.message } };
      }),
    ),
  );
  return { results };
}

/** `POST /api/broadcast`: the server's credential, then `{"channels": […], "data": …, "idempotencyKey"?}`. */
export async function handleBroadcast(publisher: Publisher, req: IncomingMessage, maxMessageBytes: number): Promise<BroadcastResult> {
  assertJsonContentType(req, "POST /api/broadcast");
  publisher.assertServer(req);
  const body = parseJson(await readBody(req, maxMessageBytes + LIST_BYTES));
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw httpError("bad_request", 'the body must be a JSON object {"channels": […], "data": …}');
  }
  const { channels, data, idempotencyKey } = body as Record<string, unknown>;
  return broadcast(publisher, channels, data, idempotencyKey);
}
