/**
 * The HTTP form of the hooks (SPEC §8): each `--proxy-*-url` becomes a hook
 * that POSTs the context as JSON to the application's backend and reads
 * `{"result": …}` or `{"error": {status, code, message}}`. Node's `fetch`
 * (undici) keeps connections to the backend alive and pooled. What the
 * answer must hold beyond that shape (a connect's `user`, …) is checked by
 * the runner, the same for both forms.
 */
import { z } from "zod";
import type { HeartlineConfig } from "../config.js";
import { HookError } from "../errors.js";
import type { HookContext, HookName, Hooks } from "./types.js";

/** The backend's answer was not what SPEC §8 documents, or never came; the runner answers 503 `hook_unavailable`. */
export class HookFailure extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "HookFailure";
  }
}

const ANSWER = z.union([
  z.object({ result: z.unknown() }).refine((a) => "result" in a, "result missing"),
  z.object({ error: z.object({ status: z.number().int().min(400).max(599), code: z.string(), message: z.string() }) }),
]);

/** The URLs of the hooks configured over HTTP. */
export function hookUrls(config: HeartlineConfig): Partial<Record<HookName, string>> {
  const urls: Partial<Record<HookName, string>> = {};
  if (config.proxyConnectUrl) urls.connect = config.proxyConnectUrl;
  if (config.proxySubscribeUrl) urls.subscribe = config.proxySubscribeUrl;
  if (config.proxyPublishUrl) urls.publish = config.proxyPublishUrl;
  if (config.proxyRpcUrl) urls.rpc = config.proxyRpcUrl;
  return urls;
}

/**
 * Hooks that call the backend. `maxAnswerBytes` bounds what one answer may
 * cost: a longer body is cut off and fails. The timeout is applied by the
 * runner, which aborts `signal`.
 */
export function httpHooks(urls: Partial<Record<HookName, string>>, maxAnswerBytes: number): Hooks {
  const hooks: Hooks = {};
  for (const [name, url] of Object.entries(urls) as Array<[HookName, string]>) {
    if (name === "disconnect") continue;
    const call = (ctx: HookContext) => post(url, body(ctx as HookContext & Record<string, unknown>), maxAnswerBytes, ctx.signal);
    (hooks as Record<string, unknown>)[name] = call;
  }
  return hooks;
}

/** The JSON Heartline sends: `{transport, ip, headers, user?, client?, channel?, data?, method?, params?}`. */
function body(ctx: HookContext & Record<string, unknown>): string {
  const out: Record<string, unknown> = { transport: ctx.transport, ip: ctx.ip, headers: ctx.headers };
  if (ctx.user !== undefined) out.user = ctx.user;
  if (ctx.client !== undefined) out.client = ctx.client;
  for (const k of ["channel", "data", "method", "params"] as const) if (k in ctx && ctx[k] !== undefined) out[k] = ctx[k];
  return JSON.stringify(out);
}

async function post(url: string, json: string, maxBytes: number, signal: AbortSignal | undefined): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", accept: "application/json" }, body: json, signal: signal ?? null });
  } catch (err) {
    throw new HookFailure(`the hook backend could not be reached: ${causeText(err)}`, { cause: err });
  }
  const text = await readCapped(res, maxBytes);
  if (res.status < 200 || res.status > 299) throw new HookFailure(`the hook backend answered HTTP ${res.status}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new HookFailure("the hook backend's answer is not JSON");
  }
  const answer = ANSWER.safeParse(parsed);
  if (!answer.success) throw new HookFailure('the hook backend\'s answer is neither {"result": …} nor {"error": {status, code, message}}');
  if ("error" in answer.data) {
    const { status, code, message } = answer.data.error;
    try {
      throw new HookError(status, code, message);
    } catch (err) {
      if (err instanceof HookError) throw err;
      throw new HookFailure(`the hook backend's error is malformed: ${(err as Error).message}`);
    }
  }
  return answer.data.result;
}

/** The body as text, at most `max` bytes; a longer one is cancelled and fails. */
async function readCapped(res: Response, max: number): Promise<string> {
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => {});
    throw new HookFailure(`the hook backend's answer is ${declared} bytes; at most ${max} are read`);
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > max) {
        await reader.cancel().catch(() => {});
        throw new HookFailure(`the hook backend's answer is longer than ${max} bytes`);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof HookFailure) throw err;
    throw new HookFailure(`the hook backend's answer was cut off: ${causeText(err)}`, { cause: err });
  }
  return Buffer.concat(chunks).toString("utf8");
}

function causeText(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === "AbortError" || e?.name === "TimeoutError") return "timed out";
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}
