// Checks the shape of src/ (run by `npm test`): fails on an import cycle, on a
// transport that imports a broker, and on an import that points back up a
// layer, and on module-level mutable state; warns about files over the size
// limit. Relative imports only, type
// imports included: a cycle through types is still a cycle for a reader.
// Plain Node, no dependency.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(ROOT, "src");
const MAX_LINES = 450;

/**
 * The layers, lowest first. A module may import from its own layer and the
 * layers below it, never from one above. Files at the top of src/ are placed
 * by what they import (see `rankOf`): a dependency-free module such as
 * wire.ts or channel-rules.ts sits below every layer, server.ts above all.
 */
const LAYERS = ["broker", "hub", "auth", "hooks", "http", "transports", "server"];
/**
 * Imports that break a rule and are known, each with what removes it. Listed
 * here they are warnings; an entry that no longer matches an import fails the
 * check, so the list cannot outlive its reasons.
 */
const KNOWN = new Map([]);

/**
 * Module-level mutable state allowed in src/ (outside the browser client),
 * each with why. State belongs to an instance the server owns (through its
 * context or a transport's constructor), so two servers in one process, or
 * one test after another, share nothing. An entry that no longer matches
 * fails the check.
 */
const MUTABLE_ALLOWED = new Map([]);

/** The browser client: its own tree, which may take only dependency-free top-level modules. */
const CLIENT = "client";

function walk(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (/\.(ts|mts|js|mjs)$/.test(e.name) && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** Strips comments so that an import in a doc comment is not read as one. Strings are kept. */
function stripComments(text) {
  let out = "";
  for (let i = 0; i < text.length; ) {
    const c = text[i];
    if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end < 0 ? text.length : end + 2;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

// `import … from "x"`, `import type … from "x"`, `export … from "x"`, `import "x"`, `import("x")`.
const IMPORT_RE = /(?:^|[;\s}])(?:import|export)\s+(?:type\s+)?(?:[^;"'`]*?\sfrom\s*)?["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)/g;

function importsOf(file) {
  const text = stripComments(readFileSync(file, "utf8"));
  const found = new Set();
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2];
    if (!spec || !spec.startsWith(".")) continue;
    const target = resolveImport(file, spec);
    if (target) found.add(target);
  }
  return [...found];
}

function resolveImport(from, spec) {
  const base = resolve(dirname(from), spec);
  const candidates = [base, base.replace(/\.js$/, ".ts"), base.replace(/\.mjs$/, ".mts"), base + ".ts", join(base, "index.ts")];
  for (const c of candidates) if (files.has(c)) return c;
  return undefined;
}

const rel = (f) => relative(ROOT, f).split(sep).join("/");
/** `hub` for src/hub/hub.ts, "" for a file at the top of src/. */
const dirOf = (f) => {
  const parts = relative(SRC, f).split(sep);
  return parts.length > 1 ? parts[0] : "";
};

const files = new Set(walk(SRC));
const graph = new Map();
for (const f of files) graph.set(f, importsOf(f));

const failures = [];
const warnings = [];

// (a) Import cycles: every strongly connected component of more than one file
// (or a file importing itself), each shown as one concrete cycle.
{
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const components = [];
  const strong = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || graph.get(v).includes(v)) components.push(comp);
    }
  };
  for (const f of [...files].sort()) if (!idx.has(f)) strong(f);
  for (const comp of components) {
    const inComp = new Set(comp);
    const start = comp.sort()[0];
    // Shortest way back to `start` inside the component.
    const prev = new Map([[start, null]]);
    const queue = [start];
    let end;
    while (queue.length > 0 && end === undefined) {
      const v = queue.shift();
      for (const w of graph.get(v)) {
        if (w === start) {
          end = v;
          break;
        }
        if (inComp.has(w) && !prev.has(w)) {
          prev.set(w, v);
          queue.push(w);
        }
      }
    }
    const path = [];
    for (let v = end; v !== null && v !== undefined; v = prev.get(v)) path.unshift(v);
    path.push(start);
    failures.push(`import cycle: ${path.map(rel).join(" → ")}` + (comp.length > path.length - 1 ? ` (and ${comp.length - path.length + 1} more files in the same cycle)` : ""));
  }
}

// (e) Module-level mutable state, outside the browser client (one page, one
// client state). Read from the comment-free text, declarations at column 0
// (the code is formatted): any `let` or `var`, and a `const` holding a new
// Map, Set, WeakMap, WeakSet or array that the file then mutates (a method
// that changes it, or an element or `length` assignment). Deliberately
// simple: state hidden in a module-level object literal is not caught.
const MUTATORS = "set|add|delete|clear|push|pop|shift|unshift|splice|sort|reverse|fill|copyWithin";
const moduleState = new Set();
for (const f of [...files].sort()) {
  if (dirOf(f) === CLIENT) continue;
  const text = stripComments(readFileSync(f, "utf8"));
  const found = [];
  for (const m of text.matchAll(/^(?:export\s+)?(?:let|var)\s+([A-Za-z_$][\w$]*)/gm)) found.push([m[1], "a module-level `let`"]);
  for (const m of text.matchAll(/^(?:export\s+)?const\s+([A-Za-z_$][\w$]*)\s*(?::[^=\n]+)?=\s*(?:new\s+(?:Map|Set|WeakMap|WeakSet|Array)\b|\[)/gm)) {
    const name = m[1].replace(/\$/g, "\\$");
    const mutated = new RegExp(`(?<![\\w$.])${name}\\s*(?:\\.\\s*(?:${MUTATORS})\\s*\\(|\\[[^\\]]*\\]\\s*=[^=]|\\.length\\s*=[^=])`);
    if (mutated.test(text)) found.push([m[1], "a module-level collection that is mutated"]);
  }
  for (const [name, what] of found) {
    const key = `${rel(f)}: ${name}`;
    moduleState.add(key);
    if (MUTABLE_ALLOWED.has(key)) warnings.push(`allowed module state: ${key}: ${MUTABLE_ALLOWED.get(key)}`);
    else failures.push(`module-level mutable state: ${key} is ${what} (give it to an instance the server owns; see MUTABLE_ALLOWED)`);
  }
}
for (const key of MUTABLE_ALLOWED.keys()) {
  if (!moduleState.has(key)) failures.push(`allowed module state no longer found, remove it from MUTABLE_ALLOWED in scripts/check-structure.mjs: ${key}`);
}

// Ranks for the layer rule. A top-level file ranks just above the highest
// layer it reaches; a file in a layer directory ranks as that layer.
const rankMemo = new Map();
function rankOf(f, seen = new Set()) {
  const d = dirOf(f);
  if (LAYERS.includes(d)) return LAYERS.indexOf(d) + 1;
  if (d === CLIENT) return 0;
  if (d !== "") return LAYERS.length + 1; // cli/ and anything new outside the layers: an entry point
  if (rankMemo.has(f)) return rankMemo.get(f);
  if (seen.has(f)) return 0; // a cycle, reported above
  seen.add(f);
  let r = 0;
  for (const w of graph.get(f)) r = Math.max(r, rankOf(w, seen) + (dirOf(w) === "" ? 0 : 0.5));
  rankMemo.set(f, r);
  return r;
}

for (const f of [...files].sort()) {
  const d = dirOf(f);
  for (const w of graph.get(f)) {
    const dw = dirOf(w);
    // (b) Transports know the hub, never a broker.
    if (d === "transports" && dw === "broker") failures.push(`transport imports a broker: ${rel(f)} → ${rel(w)} (transports reach history through the hub)`);
    // The browser client takes only its own files and dependency-free top-level modules.
    if (d === CLIENT && dw !== CLIENT && !(dw === "" && graph.get(w).length === 0)) {
      failures.push(`the browser client imports a server module: ${rel(f)} → ${rel(w)} (only dependency-free top-level modules may be shared with it)`);
    }
    // (d) No import back up a layer.
    if (d !== CLIENT && d !== dw && rankOf(w) > rankOf(f)) {
      failures.push(`import points up a layer: ${rel(f)} → ${rel(w)} (layers, lowest first: top-level dependency-free modules, ${LAYERS.join(", ")}, then server and entry points)`);
    }
  }
  // (c) Size: a warning, not a failure.
  const lines = readFileSync(f, "utf8").split("\n").length - 1;
  if (lines > MAX_LINES) warnings.push(`${rel(f)} has ${lines} lines (limit ${MAX_LINES})`);
}

for (const [edge, why] of KNOWN) {
  const i = failures.findIndex((f) => f.includes(edge));
  if (i < 0) {
    failures.push(`known exception no longer needed, remove it from KNOWN in scripts/check-structure.mjs: ${edge}`);
    continue;
  }
  for (let j = failures.length - 1; j >= 0; j--) if (failures[j].includes(edge)) failures.splice(j, 1);
  warnings.push(`known exception: ${edge}: ${why}`);
}

for (const w of warnings) console.log(`check-structure: warning: ${w}`);
if (failures.length > 0) {
  for (const f of failures) console.error(`check-structure: ${f}`);
  console.error(`check-structure: ${failures.length} problem${failures.length === 1 ? "" : "s"} in src/`);
  process.exit(1);
}
console.log(`check-structure: ${files.size} files in src/, no import cycle, no transport importing a broker, no import up a layer, no module-level mutable state` + (KNOWN.size > 0 ? ` (${KNOWN.size} known exception${KNOWN.size === 1 ? "" : "s"} above)` : ""));
