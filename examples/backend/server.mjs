// @ts-check
/**
 * An example application backend for Heartline's HTTP hooks (SPEC §8), in
 * plain node:http with no dependency: cookie sessions, and the connect,
 * subscribe, publish and rpc hooks that Heartline calls with
 * `--proxy-connect-url http://127.0.0.1:3000/hooks/connect` and so on.
 *
 * Run: node examples/backend/server.mjs [--port 3000] [--host 127.0.0.1] [--max-sessions 10000]
 * Prints one JSON line `{"listening":<port>}` on stdout once it listens.
 *
 * The hook endpoints trust what Heartline tells them (`user`, `ip`), so they
 * must be reachable by Heartline only: the default host is 127.0.0.1.
 */
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";

/** Largest request body read, in bytes; Heartline's default message limit is 64 KiB, plus headers. */
const MAX_BODY_BYTES = 256 * 1024;
/** Sessions kept in memory by default (`--max-sessions`); past it the oldest is forgotten. */
const MAX_SESSIONS = 10_000;
/** How long a session lives, in milliseconds. */
const SESSION_TTL_MS = 24 * 60 * 60 * 1000;
/** User names: they appear in channel names such as `private:<user>`. */
const NAME_RE = /^[A-Za-z0-9_.@-]{1,64}$/;
/** Longest chat message kept, in characters; longer ones are cut. */
const MAX_TEXT = 500;
/** Longest wait of the `sleep` RPC, in milliseconds. */
const MAX_SLEEP_MS = 10_000;

/**
 * @typedef {{ user: string, since: number, expires: number }} Session
 * @typedef {{ transport?: string, ip?: string, headers?: Record<string, string>, user?: string,
 *   client?: string, channel?: string, data?: unknown, method?: string, params?: unknown }} HookRequest
 * @typedef {{ result: unknown } | { error: { status: number, code: string, message: string } }} HookAnswer
 * @typedef {"hang" | "500" | "garbage" | "huge" | "huge-chunked" | "reset" | "shapeless" | `slow:${number}`} Fault
 */

/** A refusal the hook answers as `200 {"error":{status,code,message}}`. */
class Refusal extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A request the backend itself rejects with an HTTP status and a JSON body. */
class BadRequest extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Sessions by cookie value, oldest first (a Map keeps insertion order). */
class Sessions {
  /** @type {Map<string, Session>} */
  #byId = new Map();
  #max;

  /** @param {number} max */
  constructor(max) {
    this.#max = max;
  }

  /** @param {string} user @returns {string} the new session id */
  create(user) {
    while (this.#byId.size >= this.#max) {
      const oldest = this.#byId.keys().next().value;
      if (oldest === undefined) break;
      this.#byId.delete(oldest);
    }
    const sid = randomBytes(24).toString("base64url");
    const now = Date.now();
    this.#byId.set(sid, { user, since: now, expires: now + SESSION_TTL_MS });
    return sid;
  }

  /** @param {string | undefined} sid @returns {Session | undefined} */
  get(sid) {
    if (!sid) return undefined;
    const s = this.#byId.get(sid);
    if (s && s.expires <= Date.now()) {
      this.#byId.delete(sid);
      return undefined;
    }
    return s;
  }

  /** @param {string | undefined} sid */
  delete(sid) {
    if (sid) this.#byId.delete(sid);
  }

  get size() {
    return this.#byId.size;
  }
}

/** @param {unknown} header @returns {Record<string, string>} */
function parseCookies(header) {
  /** @type {Record<string, string>} */
  const out = {};
  if (typeof header !== "string") return out;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (name && !(name in out)) out[name] = part.slice(eq + 1).trim();
  }
  return out;
}

/**
 * Reads the whole body, at most MAX_BODY_BYTES.
 * @param {import("node:http").IncomingMessage} req
 * @returns {Promise<string>}
 */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (declared > MAX_BODY_BYTES) return reject(new BadRequest(413, "body_too_large", `The body is over ${MAX_BODY_BYTES} bytes.`));
    /** @type {Buffer[]} */
    const chunks = [];
    let size = 0;
    req.on("data", (/** @type {Buffer} */ chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        chunks.length = 0;
        reject(new BadRequest(413, "body_too_large", `The body is over ${MAX_BODY_BYTES} bytes.`));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/**
 * The body as a JSON object, or (when `form` allows it) a urlencoded form.
 * @param {import("node:http").IncomingMessage} req
 * @param {boolean} [form]
 * @returns {Promise<Record<string, unknown>>}
 */
async function readObject(req, form = false) {
  const text = await readBody(req);
  const type = String(req.headers["content-type"] ?? "");
  if (form && type.startsWith("application/x-www-form-urlencoded")) return Object.fromEntries(new URLSearchParams(text));
  /** @type {unknown} */
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BadRequest(400, "bad_json", "The body is not JSON.");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new BadRequest(400, "bad_json", "The body is not a JSON object.");
  return /** @type {Record<string, unknown>} */ (value);
}

/**
 * @param {import("node:http").ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 * @param {Record<string, string>} [headers]
 */
function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * The user a hook acts for: the one Heartline names (from connect or a token),
 * else the one of the forwarded session cookie.
 * @param {HookRequest} body @param {Sessions} sessions
 */
function userOf(body, sessions) {
  if (typeof body.user === "string" && body.user !== "") return body.user;
  const user = sessions.get(parseCookies(body.headers?.cookie).sid)?.user;
  if (!user) throw new Refusal(401, "not_logged_in", "Log in first.");
  return user;
}

/** The four hooks: each returns (or resolves with) the `result`, or throws a Refusal. */
const hooks = {
  /** @param {HookRequest} body @param {Sessions} sessions */
  connect(body, sessions) {
    const session = sessions.get(parseCookies(body.headers?.cookie).sid);
    if (!session) throw new Refusal(401, "not_logged_in", "No valid session cookie: log in first.");
    return { user: session.user, info: { name: session.user, since: Math.floor(session.since / 1000), transport: body.transport } };
  },

  /** @param {HookRequest} body @param {Sessions} sessions */
  subscribe(body, sessions) {
    const user = userOf(body, sessions);
    const channel = String(body.channel ?? "");
    if (channel === `private:${user}`) return {};
    if (channel.startsWith("room:")) return { info: { user } };
    throw new Refusal(403, "channel_not_allowed", `${user} may not subscribe to ${channel}.`);
  },

  /** @param {HookRequest} body @param {Sessions} sessions */
  publish(body, sessions) {
    const user = userOf(body, sessions);
    const channel = String(body.channel ?? "");
    if (!channel.startsWith("room:")) throw new Refusal(403, "publish_not_allowed", `Clients may not publish to ${channel}.`);
    const data = /** @type {{ text?: unknown } | null} */ (body.data);
    const text = typeof data === "object" && data !== null && typeof data.text === "string" ? data.text.trim() : "";
    if (text === "") throw new Refusal(400, "bad_message", 'A chat message is {"text":"…"} with some text.');
    return { data: { text: text.slice(0, MAX_TEXT), user, at: Date.now() } };
  },

  /** @param {HookRequest} body @param {Sessions} sessions */
  rpc(body, sessions) {
    const user = userOf(body, sessions);
    const params = /** @type {any} */ (body.params);
    switch (body.method) {
      case "whoami":
        return { user };
      case "echo":
        return params ?? null;
      case "sleep": {
        // An RPC that takes its time, as one that asks a database would: answers come back in any order.
        const ms = params?.ms;
        if (typeof ms !== "number" || !(ms >= 0 && ms <= MAX_SLEEP_MS)) throw new Refusal(400, "bad_params", `sleep takes {ms}, 0 to ${MAX_SLEEP_MS}.`);
        return new Promise((resolve) => setTimeout(() => resolve({ slept: ms }), ms));
      }
      case "context":
        // What Heartline said about the caller; header values stay here (the cookie is HttpOnly).
        return { user, transport: body.transport, ip: body.ip, client: body.client ?? null, headers: Object.keys(body.headers ?? {}).sort() };
      case "add": {
        const a = params?.a;
        const b = params?.b;
        if (typeof a !== "number" || typeof b !== "number") throw new Refusal(400, "bad_params", "add takes {a, b}, two numbers.");
        return a + b;
      }
      default:
        throw new Refusal(404, "unknown_method", `There is no method ${String(body.method)}.`);
    }
  },
};

/**
 * Test-only faults, from `BACKEND_FAULTS="rpc=hang,connect=500"` (see README).
 * @param {string | undefined} spec
 * @returns {Map<string, Fault>}
 */
function parseFaults(spec) {
  /** @type {Map<string, Fault>} */
  const out = new Map();
  for (const item of (spec ?? "").split(",")) {
    if (!item.trim()) continue;
    const [hook, mode] = item.split("=").map((s) => s.trim());
    if (!Object.hasOwn(hooks, hook) || !/^(hang|500|garbage|huge|huge-chunked|reset|shapeless|slow:\d+)$/.test(mode ?? "")) {
      throw new Error(`BACKEND_FAULTS: "${item}" is not <hook>=hang|500|garbage|huge|huge-chunked|reset|shapeless|slow:<ms>`);
    }
    out.set(hook, /** @type {Fault} */ (mode));
  }
  return out;
}

/**
 * Misbehaves as a test asked; returns true when the answer is taken care of.
 * @param {Fault} fault @param {import("node:http").ServerResponse} res @param {Set<import("node:http").ServerResponse>} hanging
 */
async function misbehave(fault, res, hanging) {
  switch (fault) {
    case "hang":
      hanging.add(res);
      res.on("close", () => hanging.delete(res));
      return true;
    case "500":
      send(res, 500, { error: { code: "internal", message: "Failing on purpose (BACKEND_FAULTS)." } });
      return true;
    case "garbage":
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"result": {"user": "x"');
      return true;
    case "huge":
    case "huge-chunked": {
      // Valid JSON of 10 MB: only its size is wrong. Declared up front, or streamed without a length.
      const text = `{"result":{"user":"huge","info":"${"x".repeat(10 * 1024 * 1024)}"}}`;
      if (fault === "huge") {
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
        res.end(text);
        return true;
      }
      res.writeHead(200, { "content-type": "application/json" });
      for (let i = 0; i < text.length; i += 64 * 1024) res.write(text.slice(i, i + 64 * 1024));
      res.end();
      return true;
    }
    case "reset":
      res.socket?.destroy();
      return true;
    case "shapeless":
      send(res, 200, { ok: true });
      return true;
    default:
      await new Promise((resolve) => setTimeout(resolve, Number(fault.slice("slow:".length))));
      return false;
  }
}

/**
 * @param {{ maxSessions?: number, faults?: Map<string, Fault> }} [options]
 */
export function createBackend(options = {}) {
  const sessions = new Sessions(options.maxSessions ?? MAX_SESSIONS);
  const faults = options.faults ?? new Map();
  /** @type {Set<import("node:http").ServerResponse>} */
  const hanging = new Set();

  const server = createServer(async (req, res) => {
    try {
      const path = pathOf(req.url);
      const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
      if (!route) {
        req.resume();
        return send(res, 404, { error: { code: "not_found", message: `${path} is not served here.` } });
      }
      if (req.method !== "POST") {
        req.resume();
        return send(res, 405, { error: { code: "method_not_allowed", message: `${path} takes POST.` } }, { allow: "POST" });
      }
      await route(req, res);
    } catch (err) {
      if (err instanceof BadRequest) {
        // The rest of an oversized body is not read: close the connection after the answer.
        send(res, err.status, { error: { code: err.code, message: err.message } }, err.status === 413 ? { connection: "close" } : {});
      } else {
        console.error(err);
        if (!res.headersSent) send(res, 500, { error: { code: "internal", message: "Something went wrong." } });
        else res.destroy();
      }
    }
  });
  server.on("clientError", (_err, socket) => socket.destroy());

  /** @type {Record<string, (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => Promise<void>>} */
  const routes = {
    "/login": async (req, res) => {
      const body = await readObject(req, true);
      const name = typeof body.name === "string" ? body.name.trim() : "";
      if (!NAME_RE.test(name)) throw new BadRequest(400, "bad_name", "name is 1 to 64 of A-Z a-z 0-9 _ . @ -.");
      const sid = sessions.create(name);
      send(res, 200, { user: name }, { "set-cookie": `sid=${sid}; HttpOnly; SameSite=Lax; Path=/; Max-Age=${SESSION_TTL_MS / 1000}` });
    },
    "/logout": async (req, res) => {
      await readBody(req);
      sessions.delete(parseCookies(req.headers.cookie).sid);
      send(res, 200, {}, { "set-cookie": "sid=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0" });
    },
  };
  for (const name of /** @type {(keyof typeof hooks)[]} */ (Object.keys(hooks))) {
    routes[`/hooks/${name}`] = async (req, res) => {
      const body = /** @type {HookRequest} */ (await readObject(req));
      if (body.headers !== undefined && (typeof body.headers !== "object" || body.headers === null)) {
        throw new BadRequest(400, "bad_request", "headers is an object.");
      }
      const fault = faults.get(name);
      if (fault && (await misbehave(fault, res, hanging))) return;
      /** @type {HookAnswer} */
      let answer;
      try {
        answer = { result: await hooks[name](body, sessions) };
      } catch (err) {
        if (!(err instanceof Refusal)) throw err;
        answer = { error: { status: err.status, code: err.code, message: err.message } };
      }
      send(res, 200, answer);
    };
  }

  return {
    server,
    sessions,
    /** Stops listening and ends hung answers. */
    close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}

/** @param {string | undefined} url */
function pathOf(url) {
  try {
    return new URL(url ?? "/", "http://backend").pathname;
  } catch {
    throw new BadRequest(400, "bad_url", "The request target is not a path.");
  }
}

/** @param {string[]} argv @param {string} name @param {string} fallback */
function flag(argv, name, fallback) {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const argv = process.argv.slice(2);
  const port = Number(flag(argv, "port", "3000"));
  const host = flag(argv, "host", "127.0.0.1");
  const maxSessions = Number(flag(argv, "max-sessions", String(MAX_SESSIONS)));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port: ${flag(argv, "port", "")} is not a port (0 to 65535)`);
    process.exit(2);
  }
  if (!Number.isInteger(maxSessions) || maxSessions < 1) {
    console.error(`--max-sessions: ${flag(argv, "max-sessions", "")} is not a whole number of 1 or more`);
    process.exit(2);
  }
  let faults;
  try {
    faults = parseFaults(process.env.BACKEND_FAULTS);
  } catch (err) {
    console.error(/** @type {Error} */ (err).message);
    process.exit(2);
  }
  const backend = createBackend({ maxSessions, faults });
  backend.server.listen(port, host, () => {
    const address = backend.server.address();
    process.stdout.write(JSON.stringify({ listening: typeof address === "object" && address ? address.port : port }) + "\n");
  });
  for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM"])) {
    process.on(signal, () => void backend.close().then(() => process.exit(0)));
  }
}
