/**
 * A Heartline child process whose hooks are the example backend's (both
 * started before the tests of the file and stopped after them), and the
 * client requests the hook tests make on every transport.
 */
import assert from "node:assert/strict";
import { after, before } from "node:test";
import { startBackend, type Backend } from "./backend.js";
import { startChildServer, type ChildServer } from "./child.js";
import { getJson, WsClient, type Frame } from "./server.js";
import { SseStream, type Refusal } from "./sse.js";

/** The API key of {@link withHookedServer}: a publish from this machine without it is a client's. */
export const HOOKS_API_KEY = "hooks-test-key";

export class HookedServer {
  backend!: Backend;
  hl!: ChildServer;
  /** Cookie headers (`sid=…`) of the users logged in at start, by name. */
  readonly cookies: Record<string, string> = {};
  private readonly open: Array<{ close(): void }> = [];

  /** A WebSocket with the given Cookie header (none when undefined), closed by {@link closeAll}. */
  async ws(cookie: string | undefined, query = "", server: ChildServer = this.hl): Promise<WsClient> {
    const c = await WsClient.connect(`${server.wsUrl}/ws${query}`, cookie === undefined ? {} : { headers: { cookie } });
    this.open.push(c);
    return c;
  }

  /** An event stream, or the refusal it was answered with. */
  async sse(query: string, cookie?: string): Promise<SseStream | Refusal> {
    const r = await SseStream.attempt(`${this.hl.url}/sse${query}`, cookie === undefined ? {} : { cookie });
    if (r instanceof SseStream) this.open.push(r);
    return r;
  }

  poll(query: string, cookie?: string) {
    return getJson(`${this.hl.url}/poll${query}`, { headers: cookie === undefined ? {} : { cookie } });
  }

  /** `POST /api/rpc` with `body` (JSON unless a string). */
  apiRpc(body: unknown, headers: Record<string, string> = {}, server: ChildServer = this.hl) {
    return getJson(`${server.url}/api/rpc`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  }

  apiPublish(channel: string, data: unknown, headers: Record<string, string> = {}) {
    return getJson(`${this.hl.url}/api/publish`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ channel, data }),
    });
  }

  /** A publish of the server's own (with the API key): no hook is asked. */
  serverPublish(channel: string, data: unknown) {
    return this.apiPublish(channel, data, { authorization: `Bearer ${HOOKS_API_KEY}` });
  }

  /** A channel's latest offset on the server. */
  async offsetOf(channel: string): Promise<number> {
    const res = await getJson(`${this.hl.url}/api/channels/${encodeURIComponent(channel)}`, { headers: { authorization: `Bearer ${HOOKS_API_KEY}` } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.offset as number;
  }

  /** Closes every WebSocket and stream opened through this object. */
  closeAll(): void {
    for (const c of this.open.splice(0)) c.close();
  }
}

/**
 * Starts the example backend, logs `users` in, then starts `heartline serve`
 * with all four `--proxy-*-url`, `--api-key` and `extraArgs`, before the
 * tests of the enclosing suite; stops both after them.
 */
export function withHookedServer(users: string[], extraArgs: string[] = ["--proxy-timeout", "3"]): HookedServer {
  const h = new HookedServer();
  before(async () => {
    h.backend = await startBackend();
    for (const name of users) h.cookies[name] = await h.backend.login(name);
    h.hl = await startChildServer([...h.backend.proxyArgs(), "--api-key", HOOKS_API_KEY, ...extraArgs]);
  });
  after(async () => {
    h.closeAll();
    await h.hl?.stop();
    await h.backend?.stop();
  });
  return h;
}

/** Sends an rpc frame and waits for its answer. */
export async function rpcFrame(c: WsClient, id: number | string, method: string, params?: unknown): Promise<Frame> {
  c.send({ type: "rpc", id, method, params });
  return c.next((f) => f.type === "rpc" && f.id === id);
}
