/**
 * The measurements of `heartline doctor`, each a plain request through the
 * path under test: a WebSocket upgrade to `/ws`, a paced event stream and
 * silent holds on `GET /diag`, and a held long poll on `/poll`. Each returns
 * what it saw (times in ms, the answer of a refusal); doctor-verdict.ts
 * judges them.
 */
import WebSocket from "ws";

/** An HTTP answer as seen by the client: what names who gave it. */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  /** The start of the body (at most 4 KiB). */
  body: string;
}

const BODY_MAX = 4096;

/** `http(s)://host[:port][/prefix]` + path; `ws(s)://` for a WebSocket. */
export function endpoint(base: URL, path: string, query: Record<string, string | number | undefined> = {}, ws = false): string {
  const u = new URL(base.href.replace(/\/$/, "") + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) u.searchParams.set(k, String(v));
  if (ws) u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.href;
}

function headersOf(h: Headers | NodeJSHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  if (h instanceof Headers) h.forEach((v, k) => (out[k] = v));
  else for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : v;
  return out;
}
type NodeJSHeaders = Record<string, string | string[] | undefined>;

async function answerOf(res: Response): Promise<Answer> {
  let body = "";
  try {
    body = (await res.text()).slice(0, BODY_MAX);
  } catch {
    // A body cut short: the status and headers still say who answered.
  }
  return { status: res.status, headers: headersOf(res.headers), body };
}

/** A response body's chunks as they arrive. */
async function* chunksOf(res: Response): AsyncGenerator<Uint8Array> {
  const reader = res.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    yield value;
  }
}

/** The message of a fetch or socket error, with its cause (ECONNREFUSED …). */
export function errorText(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  const cause = e?.cause?.code ?? e?.cause?.message;
  return cause ? `${e.message ?? String(err)} (${cause})` : (e?.message ?? String(err));
}

export type InfoResult = { reached: true; answer: Answer } | { reached: false; error: string };

/** `GET /diag?mode=silent&hold=0`: reaches the server, and (when it serves /diag) reads its heartbeat and poll settings. */
export async function probeInfo(base: URL, timeoutMs: number): Promise<InfoResult> {
  try {
    const res = await fetch(endpoint(base, "/diag", { mode: "silent", hold: 0 }), { signal: AbortSignal.timeout(timeoutMs) });
    return { reached: true, answer: await answerOf(res) };
  } catch (err) {
    return { reached: false, error: errorText(err) };
  }
}

export type WsResult = { open: true; headers: Record<string, string> } | { open: false; answer?: Answer; error?: string };

/** A WebSocket upgrade to `/ws`: open, or the answer (or error) that refused it. */
export function probeWebSocket(base: URL, token: string | undefined, timeoutMs: number): Promise<WsResult> {
  return new Promise((resolve) => {
    const ws = new WebSocket(endpoint(base, "/ws", { token }, true), { handshakeTimeout: timeoutMs });
    let done = false;
    const finish = (r: WsResult) => {
      if (done) return;
      done = true;
      resolve(r);
    };
    ws.on("upgrade", (res) => finish({ open: true, headers: headersOf(res.headers) }));
    ws.on("open", () => ws.close(1000));
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body = (body + c).slice(0, BODY_MAX)));
      const end = () => {
        finish({ open: false, answer: { status: res.statusCode ?? 0, headers: headersOf(res.headers), body } });
        ws.terminate();
      };
      res.on("end", end);
      res.on("error", end);
      res.on("close", end);
    });
    ws.on("error", (err) => finish({ open: false, error: errorText(err) }));
  });
}

export interface SseResult {
  /** Refused: the answer. */
  answer?: Answer;
  error?: string;
  /** ms after the request: the response head, the `: open` line written at once, each event. */
  headersAt?: number;
  openAt?: number;
  events: number[];
  /** The `end` event arrived. */
  ended: boolean;
  headers?: Record<string, string>;
}

/** `GET /diag?mode=events`: when each of `count` events, written `interval` ms apart, arrives. */
export async function probeSse(base: URL, count: number, interval: number, timeoutMs: number): Promise<SseResult> {
  const r: SseResult = { events: [], ended: false };
  const t0 = performance.now();
  const at = () => Math.round(performance.now() - t0);
  try {
    const res = await fetch(endpoint(base, "/diag", { mode: "events", count, interval }), {
      headers: { Accept: "text/event-stream" },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (res.status !== 200) {
      r.answer = await answerOf(res);
      return r;
    }
    r.headersAt = at();
    r.headers = headersOf(res.headers);
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of chunksOf(res)) {
      buffer += decoder.decode(chunk, { stream: true });
      let i: number;
      while ((i = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, i);
        buffer = buffer.slice(i + 2);
        if (block.startsWith(": open")) r.openAt ??= at();
        else if (block.startsWith("event: diag")) r.events.push(at());
        else if (block.startsWith("event: end")) r.ended = true;
      }
    }
  } catch (err) {
    r.error = errorText(err);
  }
  return r;
}

export interface HoldResult {
  answer?: Answer;
  error?: string;
  /** ms after the request when the first line (or frame) arrived. */
  openAt?: number;
  /** ms after the request when the last line arrived (the hold lived to its end). */
  endAt?: number;
  /** ms after the request when the connection was cut before its end. */
  cutAt?: number;
  headers?: Record<string, string>;
}

/** `GET /diag?mode=silent&hold=…` over HTTP: lives to its end, or when it was cut. */
export async function probeSilentHttp(base: URL, hold: number): Promise<HoldResult> {
  const r: HoldResult = {};
  const t0 = performance.now();
  const at = () => Math.round(performance.now() - t0);
  try {
    const res = await fetch(endpoint(base, "/diag", { mode: "silent", hold }), { signal: AbortSignal.timeout((hold + 15) * 1000) });
    if (res.status !== 200) {
      r.answer = await answerOf(res);
      r.cutAt = at();
      return r;
    }
    r.headers = headersOf(res.headers);
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of chunksOf(res)) {
      text += decoder.decode(chunk, { stream: true });
      if (r.openAt === undefined && text.includes("\n")) r.openAt = at();
      if (/\nend held=/.test(text)) r.endAt = at();
    }
    if (r.endAt === undefined) r.cutAt = at();
  } catch (err) {
    r.error = errorText(err);
    if (r.endAt === undefined) r.cutAt = at();
  }
  return r;
}

/** `GET /diag?mode=silent&hold=…` as a WebSocket: lives to its end, or when it was cut. */
export function probeSilentWs(base: URL, hold: number): Promise<HoldResult> {
  return new Promise((resolve) => {
    const r: HoldResult = {};
    const t0 = performance.now();
    const at = () => Math.round(performance.now() - t0);
    const ws = new WebSocket(endpoint(base, "/diag", { mode: "silent", hold }, true), { handshakeTimeout: 15_000 });
    const limit = setTimeout(() => ws.terminate(), (hold + 15) * 1000);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(limit);
      if (r.endAt === undefined && r.answer === undefined) r.cutAt = at();
      resolve(r);
    };
    ws.on("upgrade", (res) => (r.headers = headersOf(res.headers)));
    ws.on("message", (data) => {
      const text = data.toString();
      if (r.openAt === undefined) r.openAt = at();
      if (text.includes('"end"')) r.endAt = at();
    });
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body = (body + c).slice(0, BODY_MAX)));
      res.on("end", () => {
        r.answer = { status: res.statusCode ?? 0, headers: headersOf(res.headers), body };
        ws.terminate();
        finish();
      });
    });
    ws.on("error", (err) => {
      r.error ??= errorText(err);
      finish();
    });
    ws.on("close", finish);
  });
}

export interface PollResult {
  answer?: Answer;
  error?: string;
  /** ms the held poll took until its answer (or cut). */
  elapsed?: number;
  /** The held poll's answer carried messages (answered early for a reason). */
  messages?: number;
}

/** A poll's JSON answer; undefined when the body is not JSON. */
function pollAnswer(a: Answer): unknown {
  try {
    return JSON.parse(a.body) as unknown;
  } catch {
    return undefined;
  }
}

/** A first poll for a cursor, then one held for `hold` seconds on a channel no one publishes to. */
export async function probePoll(base: URL, hold: number, token: string | undefined): Promise<PollResult> {
  const channel = "heartline-doctor";
  const r: PollResult = {};
  try {
    const first = await answerOf(await fetch(endpoint(base, "/poll", { channel, token, timeout: 0 }), { signal: AbortSignal.timeout(15_000) }));
    const cursor = (pollAnswer(first) as { cursor?: string } | undefined)?.cursor;
    if (first.status !== 200 || typeof cursor !== "string") {
      r.answer = first;
      return r;
    }
    const t0 = performance.now();
    try {
      const res = await fetch(endpoint(base, "/poll", { channel, token, cursor, timeout: hold }), { signal: AbortSignal.timeout((hold + 15) * 1000) });
      const answer = await answerOf(res);
      r.elapsed = Math.round(performance.now() - t0);
      const body = pollAnswer(answer) as { messages?: unknown[] } | undefined;
      // Not Heartline's answer (an error, or a page a proxy put in its place): who gave it says more.
      if (res.status !== 200 || !Array.isArray(body?.messages)) r.answer = answer;
      else r.messages = body.messages.length;
    } catch (err) {
      r.elapsed = Math.round(performance.now() - t0);
      throw err;
    }
  } catch (err) {
    r.error = errorText(err);
  }
  return r;
}
