/**
 * Wire formats, in one place: WebSocket text frames (RFC 6455), Server-Sent
 * Events (WHATWG HTML §9.2), the long-poll answer (SPEC §3) and the head of an
 * HTTP/1.1 response written on a bare socket (RFC 9112).
 *
 * Dependency-free and at the top of src/, below every layer: the hub's
 * `Outgoing` encodes each message here once per format, and the transports
 * and HTTP helpers write everything else through it, without the hub
 * importing a transport or the transports reaching into the hub's encodings.
 *
 * Field safety: an SSE field ends at CR or LF, and so does an HTTP header
 * line. Data split over several `data:` lines (EventSource joins them with
 * LF, which JSON reads as whitespace); event names, ids and header values
 * holding CR, LF (or, for ids, NUL) are refused with an error. The one
 * exception is {@link sseIdLine} on the delivery path: its value is a cursor,
 * made of URL-unreserved characters by construction (channel keys in base 36,
 * decimal offsets, epochs minted by a broker or checked against `EPOCH_RE`
 * when a client sends them), so it is not scanned once per delivery.
 */

// ── WebSocket ────────────────────────────────────────────────────────────

/** An unmasked, final WebSocket text frame holding `payload` (RFC 6455 §5.2): what a server sends. */
export function wsTextFrame(payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + n);
  frame[0] = 0x81;
  if (n < 126) frame[1] = n;
  else if (n < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    frame.writeUInt32BE(n >>> 0, 6);
  }
  payload.copy(frame, head);
  return frame;
}

/** The WebSocket payload of a message, `{"type":"message",…}`, from the message object's JSON. */
export function wsMessagePayload(messageJson: string): Buffer {
  return Buffer.from('{"type":"message",' + messageJson.slice(1));
}

/** `{"type":"unsubscribed","channel":…}`: the answer to an unsubscribe frame, and the server's own removal of a subscription (SPEC §10). */
export function wsUnsubscribedFrame(channel: string, extra?: Record<string, unknown>): string {
  return JSON.stringify({ type: "unsubscribed", channel, ...extra });
}

// ── Server-Sent Events ───────────────────────────────────────────────────

const LINE_BREAK = /\r\n|\r|\n/;

function assertField(what: string, value: string, nulToo: boolean): void {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 10 || c === 13 || (nulToo && c === 0)) throw new Error(`an SSE ${what} may not contain CR, LF${nulToo ? " or NUL" : ""}: ${JSON.stringify(value.slice(0, 60))}`);
  }
}

/** `data:` lines for `data` (one per line of it), without the blank line that ends the event. */
export function sseDataLines(data: string): string {
  if (data.indexOf("\n") < 0 && data.indexOf("\r") < 0) return "data: " + data + "\n";
  let out = "";
  for (const line of data.split(LINE_BREAK)) out += "data: " + line + "\n";
  return out;
}

/**
 * One whole event: `event:` (unless the event is the default one), `id:`
 * (when given), the data, and the blank line. Event names and ids holding a
 * line break throw; data is split over `data:` lines.
 */
export function sseEvent(event: string | undefined, id: string | undefined, data: string): string {
  let out = "";
  if (event !== undefined) {
    assertField("event name", event, false);
    out += "event: " + event + "\n";
  }
  if (id !== undefined) {
    assertField("id", id, true);
    out += "id: " + id + "\n";
  }
  return out + sseDataLines(data) + "\n";
}

/**
 * The `id:` line that goes before each delivered message: the connection's
 * cursor, unreserved characters only by construction (see the module notes),
 * so it is not scanned here.
 */
export function sseIdLine(cursor: string): string {
  return "id: " + cursor + "\n";
}

/**
 * A message event: its `data:` lines and the blank line, after an `id:` line
 * when `cursor` is given (a stream on one channel, whose whole event every
 * such stream shares); without one, the body every stream shares, its own
 * `id:` line going before it.
 */
export function sseMessageEvent(messageJson: string, cursor?: string): Buffer {
  return Buffer.from((cursor === undefined ? "" : sseIdLine(cursor)) + sseDataLines(messageJson) + "\n");
}

/**
 * `event: disconnect` with `{"reconnect":bool}`: the server ends the stream
 * (POST /api/disconnect); with `reconnect: false` the client should not come back.
 */
export function sseDisconnectEvent(reconnect: boolean): string {
  return sseEvent("disconnect", undefined, reconnect ? '{"reconnect":true}' : '{"reconnect":false}');
}

/** `event: unsubscribed` with `{"channel":…}` and the stream's cursor without that channel as its id (SPEC §10). */
export function sseUnsubscribedEvent(channel: string, cursor: string): string {
  return sseEvent("unsubscribed", cursor, JSON.stringify({ channel }));
}

/** `event: error` with `{"code","message"}`: why the server ends a stream (token expired or revoked) or refused a subscription. */
export function sseErrorEvent(code: string, message: string): string {
  return sseEvent("error", undefined, JSON.stringify({ code, message }));
}

/** `retry: <ms>` and the blank line: the reconnection delay a stream announces first. */
export function sseRetry(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new Error(`an SSE retry must be a whole number of milliseconds: ${ms}`);
  return "retry: " + ms + "\n\n";
}

// ── Long polling ─────────────────────────────────────────────────────────

/** A reset as a poll answer lists it. */
export interface PollReset {
  channel: string;
  epoch: string;
  offset: number;
}

/**
 * `{"messages":[…],"cursor":"…","resets":[…],"presence":[…]}`. The messages
 * and presence events are already JSON; the cursor is URL-unreserved, so it
 * needs no escaping in a JSON string.
 */
export function pollAnswerJson(
  messages: readonly { readonly json: string }[],
  cursor: string,
  resets: readonly PollReset[],
  presence: readonly string[] = NONE,
): string {
  let body = '{"messages":[';
  for (let i = 0; i < messages.length; i++) body += (i ? "," : "") + messages[i]!.json;
  body += '],"cursor":"' + cursor + '","resets":' + (resets.length === 0 ? "[]" : JSON.stringify(resets)) + ',"presence":[';
  for (let i = 0; i < presence.length; i++) body += (i ? "," : "") + presence[i];
  return body + "]}";
}

const NONE: readonly string[] = [];

// ── Presence (the same objects on every transport) ───────────────────────

/** `{"type":"join"|"leave","channel":…,"client":…,"user":…,"info":…}` from the member's JSON `{"client":…,…}`. */
export function presenceChangeJson(kind: "join" | "leave", channel: string, memberJson: string): string {
  return '{"type":"' + kind + '","channel":' + JSON.stringify(channel) + "," + memberJson.slice(1);
}

/** `{"type":"presence","channel":…,"members":[…]}` from the members' JSON. */
export function presenceSnapshotJson(channel: string, members: readonly string[]): string {
  return '{"type":"presence","channel":' + JSON.stringify(channel) + ',"members":[' + members.join(",") + "]}";
}

/** A presence object as an SSE event named by its type (`join`, `leave`, `presence`); no `id:`, the position does not move. */
export function ssePresenceEvent(type: string, json: string): string {
  return "event: " + type + "\n" + sseDataLines(json) + "\n";
}

// ── HTTP/1.1 response head on a bare socket ──────────────────────────────

/** `HTTP/1.1 <status> <reason>\r\n`. */
export function statusLine(status: number, reason: string): string {
  assertHeaderValue("reason phrase", reason);
  return "HTTP/1.1 " + status + " " + reason + "\r\n";
}

/** `Name: value\r\n`. A value holding CR or LF (response splitting) throws. */
export function headerLine(name: string, value: string | number): string {
  if (typeof value === "string") assertHeaderValue(name, value);
  return name + ": " + value + "\r\n";
}

/** {@link headerLine} for every field of `fields`. */
export function headerLines(fields: Readonly<Record<string, string | number>> | undefined): string {
  let out = "";
  if (fields) for (const name in fields) out += headerLine(name, fields[name]!);
  return out;
}

/** The blank line that ends a response head. */
export const HEAD_END = "\r\n";

function assertHeaderValue(name: string, value: string): void {
  if (value.indexOf("\r") >= 0 || value.indexOf("\n") >= 0) throw new Error(`the HTTP header ${name} may not contain CR or LF`);
}
