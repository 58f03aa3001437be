// Bundles the browser client (src/client/browser.ts) into one minified ES
// module at web/build/heartline.js, prints its size minified and gzipped, and
// fails above the budget. `--measure <package>` measures a package's browser
// build the same way (esbuild bundle, terser, gzip level 9) for comparison.
//
// esbuild bundles and minifies; terser then compresses once more. Its output
// is barely shorter, but it names and orders things so that gzip finds more
// repeats: about 200 B less min+gzip on this client.
import { build } from "esbuild";
import { minify } from "terser";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

export const BUDGET = 7680;
const INTERNAL_PROPS = /^(openTimer|upgrade|got|subs|timer|alive|subscribed|reply|hold|base|channels|linker|cur|att|best|order|env|ms|resume|lost|setState|stopAll|retryNow|using|clk|tok|st|cfg|attempt|deliver|subscribedAt|resetTo|setCursor|answer|positions|pend|settle|lose|entry|cid|present|ended|roster|membersOf|dg|rep)$/;
const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Bundles `entry` (a file, or code given as `stdin`) and returns the minified bytes. */
export async function bundle({ entry, stdin }) {
  const result = await build({
    entryPoints: entry ? [entry] : undefined,
    stdin: stdin ? { contents: stdin, resolveDir: root, loader: "js" } : undefined,
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    legalComments: "none",
    logLevel: "silent",
    // Short names for properties that never leave the bundle: the client's
    // internal records and the transport interface. Nothing public, nothing
    // on the wire (string keys are left alone), no message operation name.
    mangleProps: entry ? INTERNAL_PROPS : undefined,
  });
  const { code } = await minify(result.outputFiles[0].text, { module: true, ecma: 2022, compress: { passes: 2 } });
  return Buffer.from(code);
}

export function sizes(bytes) {
  return { min: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}

async function main() {
  const args = process.argv.slice(2);
  const m = args.indexOf("--measure");
  if (m >= 0) {
    const pkg = args[m + 1];
    const s = sizes(await bundle({ stdin: `export * from ${JSON.stringify(pkg)};` }));
    console.log(`${pkg}: ${s.min} bytes minified, ${s.gzip} bytes min+gzip`);
    return;
  }
  const bytes = await bundle({ entry: join(root, "src/client/browser.ts") });
  const out = join(root, "web/build/heartline.js");
  mkdirSync(dirname(out), { recursive: true });
  // Written aside and renamed: a server reading the file never sees half of it.
  writeFileSync(out + ".tmp", bytes);
  renameSync(out + ".tmp", out);
  const s = sizes(bytes);
  console.log(`web/build/heartline.js: ${s.min} bytes minified, ${s.gzip} bytes min+gzip (budget ${BUDGET})`);
  if (s.gzip > BUDGET) {
    console.error(`the browser client is over its budget: ${s.gzip} > ${BUDGET} bytes min+gzip`);
    process.exit(1);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
