/**
 * The HTTP form of the hooks (SPEC §8): each `--proxy-*-url` becomes a hook
 * that POSTs the context as JSON to the application's backend and reads
 * `{"result": …}` or `{"error": {status, code, message}}`, through undici's
 * `request` (the client under Node's `fetch`, without the WHATWG streams
 * that cost `fetch` about a millisecond of CPU per call), on one keep-alive
 * pool per server. What the
 * answer must hold beyond that shape (a connect's `user`, …) is checked by
 * the runner, the same for both forms.
 */
import { Agent, request, type Dispatcher } from "undici";
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
 * runner, which aborts `signal`. The runner owns `agent` and closes it.
 */
export function httpHooks(urls: Partial<Record<HookName, string>>, maxAnswerBytes: number, agent: Agent): Hooks {
  const hooks: Hooks = {};
  for (const [name, url] of Object.entries(urls) as Array<[HookName, string]>) {
    if (name === "disconnect") continue;
    const call = (ctx: HookContext) => post(agent, url, body(ctx as HookContext & Record<string, unknown>), maxAnswerBytes, ctx.signal);
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

async function post(agent: Agent, url: string, json: string, maxBytes: number, signal: AbortSignal | undefined): Promise<unknown> {
  let res: Dispatcher.ResponseData;
  try {
    res = await request(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: json,
      dispatcher: agent,
      signal: signal ?? null,
    });
  } catch (err) {
    throw new HookFailure(`the hook backend could not be reached: ${causeText(err)}`, { cause: err });
  }
  const text = await readCapped(res, maxBytes);
  if (res.statusCode < 200 || res.statusCode > 299) throw new HookFailure(`the hook backend answered HTTP ${res.statusCode}`);
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

/** The body as text, at most `max` bytes; a longer one is dropped and fails. */
async function readCapped(res: Dispatcher.ResponseData, max: number): Promise<string> {
  const declared = Number(res.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) {
    res.body.destroy();
    throw new HookFailure(`the hook backend's answer is ${declared} bytes; at most ${max} are read`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      const b = chunk as Buffer;
      size += b.length;
      if (size > max) {
        res.body.destroy();
        throw new HookFailure(`the hook backend's answer is longer than ${max} bytes`);
      }
      chunks.push(b);
    }
  } catch (err) {
    if (err instanceof HookFailure) throw err;
    throw new HookFailure(`the hook backend's answer was cut off: ${causeText(err)}`, { cause: err });
  }
  return Buffer.concat(chunks, size).toString("utf8");
}

function causeText(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === "AbortError" || e?.name === "TimeoutError") return "timed out";
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}
