/**
 * Browser test helpers: Debian's Chromium driven by playwright-core (never a
 * downloaded browser), the browser client bundle, and waiting inside pages.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from "playwright-core";
import { systemClock } from "../../src/clock.js";
import { Arena, ARENA_CHANNEL, type ArenaOptions } from "../../src/demo/arena.js";
import { arenaHooks } from "../../src/demo/hooks.js";
import { startServer, type TestServer } from "../helpers/server.js";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** Screenshots go here (gitignored). */
export const RESULTS_DIR = join(ROOT, "test-results");
/** Debian's Chromium; never a browser downloaded by playwright. */
export const CHROMIUM_PATH = "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const CLIENT_SRC = join(ROOT, "src/client");
const BUILD_SCRIPT = join(ROOT, "scripts/build-client.mjs");
export const CLIENT_BUNDLE = join(ROOT, "web/build/heartline.js");

const inCi = process.env.CI === "true";

/**
 * Why the browser tests cannot run here, or undefined when they can. On CI a
 * missing browser or client is a failure, not a skip.
 */
export function e2eSkipReason(): string | undefined {
  let reason: string | undefined;
  if (!existsSync(CHROMIUM_PATH)) {
    reason = `Chromium not found at ${CHROMIUM_PATH} (install Debian's chromium package: apt-get install chromium)`;
  } else {
    reason = ensureClientBundle();
  }
  if (reason && inCi) throw new Error(`browser tests cannot run on CI: ${reason}`);
  if (reason) console.warn(`skipping browser tests: ${reason}`);
  return reason;
}

function newest(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let t = st.mtimeMs;
  for (const e of readdirSync(path)) t = Math.max(t, newest(join(path, e)));
  return t;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Builds web/build/heartline.js when it is missing or older than src/client.
 * Test files run in parallel, so the build is serialized by a lock directory.
 * Returns a skip reason when the client cannot be built.
 */
export function ensureClientBundle(): string | undefined {
  const fresh = () => existsSync(CLIENT_BUNDLE) && (!existsSync(CLIENT_SRC) || newest(CLIENT_SRC) <= statSync(CLIENT_BUNDLE).mtimeMs);
  if (fresh()) return undefined;
  if (!existsSync(BUILD_SCRIPT)) return `the browser client is not built (${CLIENT_BUNDLE} and ${BUILD_SCRIPT} are missing)`;
  const lock = join(tmpdir(), `heartline-client-build-${Buffer.from(ROOT).toString("hex").slice(-24)}.lock`);
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Another test file is building; a lock older than a minute is left over from a crash.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 60_000) rmSync(lock, { recursive: true, force: true });
      } catch {
        /* gone meanwhile */
      }
      if (Date.now() > deadline) return "timed out waiting for another build of the client";
      sleepSync(100);
    }
  }
  try {
    if (!fresh()) execFileSync(process.execPath, [BUILD_SCRIPT], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  } catch (err) {
    return `building the client failed: ${(err as Error).message}`;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
  return existsSync(CLIENT_BUNDLE) ? undefined : `${BUILD_SCRIPT} did not produce ${CLIENT_BUNDLE}`;
}

/** Launches Debian's Chromium headless with a fresh profile (playwright makes a new user-data-dir per launch). */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/**
 * A fresh context (its own storage, like a separate browser profile).
 * Functions passed to page.evaluate are compiled by tsx, which may wrap named
 * functions in a `__name(fn, "name")` call; the init script makes that a no-op
 * in the page.
 */
export async function newContext(browser: Browser, options: BrowserContextOptions = {}): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 680 }, ...options });
  await context.addInitScript("globalThis.__name ??= (fn) => fn;");
  return context;
}

/** Page errors and console errors, so a failing test can show what the page said. */
export function recordPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  return errors;
}

/**
 * Evaluates `fn(arg)` in the page until it returns a truthy value; returns it.
 * Polls from Node (not page.waitForFunction) so a page that navigates or is
 * busy does not wedge the wait, and the failure names what was awaited.
 */
export async function waitInPage<A, R>(page: Page, fn: (arg: A) => R | Promise<R>, arg: A, what: string, timeoutMs = 10_000): Promise<NonNullable<R>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      // playwright types the argument as its serialized form (Unboxed<A>), which plain data equals.
      last = await page.evaluate<R, A>(fn as (arg: unknown) => R, arg);
      if (last) return last as NonNullable<R>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${String(last)})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ── in-page test clients ──────────────────────────────────────────────────
// Pages load the browser bundle from their own origin (`/heartline.js`) and
// record what each client hands to the application.

/** What one in-page client recorded. */
export interface Recorded {
  offsets: number[];
  data: unknown[];
  /** Every state the client entered, in order. */
  states: string[];
  resets: Array<{ channel: string; epoch: string; offset: number }>;
  errors: string[];
  state: string;
  transport: string | null;
}

export interface ClientSpec {
  channel: string;
  transports?: string[];
  /** Every reconnection waits about 30 s (unless something wakes the client). */
  slowBackoff?: boolean;
  shared?: boolean;
}

interface PageClient {
  hl: {
    state: string;
    transport: string | undefined;
    publish(channel: string, data: unknown): Promise<unknown>;
    positionOf(channel: string): { epoch: string; offset: number } | undefined;
    close(): void;
  };
  rec: Omit<Recorded, "state" | "transport">;
}

declare global {
  interface Window {
    /** Test clients by name. */
    heartlineTest?: Record<string, PageClient>;
  }
}

/** Starts a client named `name` in `page`, subscribed to `spec.channel`. */
export async function startClient(page: Page, name: string, spec: ClientSpec): Promise<void> {
  await page.evaluate(
    async ({ name, spec }) => {
      // A variable keeps the import dynamic: the bundle exists only at the page's origin.
      const url = "/heartline.js";
      const { Heartline } = await import(url);
      const options: Record<string, unknown> = {};
      if (spec.transports) options.transports = spec.transports;
      if (spec.shared !== undefined) options.shared = spec.shared;
      if (spec.slowBackoff) Object.assign(options, { backoffBase: 30, backoffMax: 30, random: () => 0.999 });
      const hl = new Heartline(location.origin, options);
      const rec = { offsets: [] as number[], data: [] as unknown[], states: [] as string[], resets: [] as Recorded["resets"], errors: [] as string[] };
      hl.on("state", ({ to }: { to: string }) => rec.states.push(to));
      hl.on("error", (e: Error) => rec.errors.push(String(e?.message ?? e)));
      const sub = hl.subscribe(spec.channel, (m: { offset: number; data: unknown }) => {
        rec.offsets.push(m.offset);
        rec.data.push(m.data);
      });
      sub.on("reset", (r: Recorded["resets"][number]) => rec.resets.push(r));
      (window.heartlineTest ??= {})[name] = { hl, rec };
    },
    { name, spec },
  );
}

/** A snapshot of what client `name` recorded. */
export function recorded(page: Page, name: string): Promise<Recorded> {
  return page.evaluate((n) => {
    const c = window.heartlineTest![n]!;
    return { ...c.rec, offsets: [...c.rec.offsets], state: c.hl.state, transport: c.hl.transport ?? null };
  }, name);
}

/** Waits until client `name` is in `state` (and, when given, uses `transport`). */
export function inState(page: Page, name: string, state: string, transport?: string, timeoutMs = 10_000): Promise<unknown> {
  return waitInPage(
    page,
    ({ n, st, t }) => {
      const c = window.heartlineTest?.[n];
      return !!c && c.hl.state === st && (t === undefined || c.hl.transport === t);
    },
    { n: name, st: state, t: transport },
    `client ${name} to be ${state}${transport ? ` over ${transport}` : ""}`,
    timeoutMs,
  );
}

/** Waits until client `name` is connected (over `transport`, when given). */
export const connected = (page: Page, name: string, transport?: string, timeoutMs?: number) => inState(page, name, "connected", transport, timeoutMs);

/** Waits until client `name` has received `count` messages. */
export function received(page: Page, name: string, count: number, timeoutMs = 10_000): Promise<unknown> {
  return waitInPage(
    page,
    ({ n, k }) => (window.heartlineTest?.[n]?.rec.offsets.length ?? 0) >= k,
    { n: name, k: count },
    `client ${name} to receive ${count} messages`,
    timeoutMs,
  );
}

/** Publishes from client `name`; resolves with the server's answer. */
export function publishFrom(page: Page, name: string, channel: string, data: unknown): Promise<unknown> {
  return page.evaluate(({ n, c, d }) => window.heartlineTest![n]!.hl.publish(c, d), { n: name, c: channel, d: data });
}

/** Emulates the tab becoming hidden or visible (the client listens to `visibilitychange`). */
export function setVisibility(page: Page, state: "hidden" | "visible"): Promise<void> {
  return page.evaluate((s) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => s });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => s === "hidden" });
    document.dispatchEvent(new Event("visibilitychange"));
  }, state);
}

// ── the demo page ─────────────────────────────────────────────────────────

/** A player as the demo's test hook reports it: where the server's latest snapshot puts it. */
export interface DemoPlayer {
  id: string;
  name: string;
  x: number;
  y: number;
  me: boolean;
  score: number;
}

/** `window.heartlineDemo`, the demo page's test hook. */
export interface DemoHook {
  /** This page's player id; "" until it has joined. */
  me: string;
  /** Everyone in the latest snapshot, at the server's positions. */
  players(): DemoPlayer[];
  /** Who is here: the presence of the arena's channel, this page first. */
  here(): Array<{ client: string; name: string; me: boolean }>;
  /** Where this page predicts its own player is. */
  local(): { x: number; y: number };
  /** Where the others are drawn right now. */
  view(): Array<{ id: string; x: number; y: number }>;
  pickups(): Array<{ id: number; x: number; y: number }>;
  score(): number;
  /** Moves the server answered with `corrected: true`. */
  corrections(): number;
  session(): { id: string; secret: string } | null;
  transport(): string | null;
  state(): string;
  latency(): number;
  /** Jumps the page's own player (a cheat when far); the next move claims it. */
  move(dx: number, dy: number): { x: number; y: number };
  walkTo(x: number, y: number): void;
  client: {
    publish(channel: string, data: unknown): Promise<unknown>;
    rpc(method: string, params?: unknown): Promise<unknown>;
  };
}

/** `window.heartlineDashboard`, the dashboard's test hook. */
export interface DashboardHook {
  /** The channels table as last read (null counts: the channel tracks no presence). */
  channels(): Array<{ channel: string; subscribers: number; clients: number | null; users: number | null }>;
  channelReads(): number;
  samples(): number;
  /** chart id → series label → the latest value. */
  latest(): Record<string, Record<string, number | null>>;
}

declare global {
  interface Window {
    heartlineDemo: DemoHook;
    heartlineDashboard: DashboardHook;
  }
}

/** One player of the demo: a page in its own context (its own storage, like another person's browser). */
export interface Seat {
  page: Page;
  errors: string[];
  /** The player's id, known once the demo is open. */
  id: string;
  name: string;
}

export async function seat(browser: Browser, name: string): Promise<Seat> {
  const context = await newContext(browser);
  const page = await context.newPage();
  return { page, errors: recordPageErrors(page), id: "", name };
}

/** Opens the demo at `url` (with `?name=`), forcing `transport`; resolves when connected over it and joined. */
export async function playDemo(player: Seat, url: string, transport: string): Promise<void> {
  await player.page.goto(`${url}/?name=${player.name}&transport=${transport}`);
  await waitInPage(player.page, (t) => window.heartlineDemo.transport() === t, transport, `${player.name}'s ${transport} connection`);
  player.id = await waitInPage(player.page, () => window.heartlineDemo.me, null, `${player.name} to join the arena`);
}

/** Waits until `page` knows the player `id`. */
export const sees = (page: Page, id: string, what: string) =>
  waitInPage(page, (pid) => window.heartlineDemo.players().find((p) => p.id === pid), id, what);

/** Waits until `page` has received, in a snapshot, exactly the position `at` for player `id`. */
export const seesAt = (page: Page, id: string, at: { x: number; y: number }, what: string) =>
  waitInPage(
    page,
    ({ pid, x, y }) => window.heartlineDemo.players().some((p) => p.id === pid && Math.abs(p.x - x) < 0.11 && Math.abs(p.y - y) < 0.11),
    { pid: id, x: at.x, y: at.y },
    what,
  );

/** The page's own player, where the server's latest snapshot puts it. */
export const myself = (page: Page) => waitInPage(page, () => window.heartlineDemo.players().find((p) => p.me), null, "the page's own player in a snapshot");

/**
 * The page's own player once it stands still and the server agrees: the
 * page's position and the snapshot's the same for 300 ms.
 */
export async function standing(page: Page, timeoutMs = 10_000): Promise<DemoPlayer> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  let since = Date.now();
  for (;;) {
    const { me, local } = await page.evaluate(() => ({ me: window.heartlineDemo.players().find((p) => p.me), local: window.heartlineDemo.local() }));
    const key = me ? JSON.stringify([me.x, me.y, Math.round(local.x * 10) / 10, Math.round(local.y * 10) / 10]) : "";
    if (key !== last) {
      last = key;
      since = Date.now();
    } else if (me && Date.now() - since >= 300 && Math.abs(me.x - local.x) < 0.06 && Math.abs(me.y - local.y) < 0.06) {
      return me;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for the player to stand still where the server says (${last})`);
    await sleep(50);
  }
}

/** A position as the demo sends it (one decimal). */
export const sent = (p: { x: number; y: number }) => ({ x: Math.round(p.x * 10) / 10, y: Math.round(p.y * 10) / 10 });

/** A Heartline serving the demo with its referee, as `npm start` does (an API key, `game:*` open to clients but for the arena's channel, presence on the arena's channel). */
export async function startArena(options: Partial<ArenaOptions> = {}): Promise<{ s: TestServer; arena: Arena; close(): Promise<void> }> {
  let s: TestServer | undefined;
  const arena = new Arena({ clock: systemClock, publish: (channel, data) => s!.hl.publish(channel, data), ...options });
  s = await startServer({ apiKey: "demo-key", clientPublish: ["game:*"], presence: [ARENA_CHANNEL] }, { hooks: arenaHooks(arena, { clientPublish: ["game:*"] }) });
  const server = s;
  return {
    s: server,
    arena,
    close: async () => {
      arena.close();
      await server.close();
    },
  };
}
