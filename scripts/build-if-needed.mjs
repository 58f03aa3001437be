// Builds dist/ and the browser bundle when missing or older than src/, so `npm start` works on a fresh clone.
import { execSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

const outputs = ["dist/cli.js", "dist/demo/main.js", "web/build/heartline.js"];
const stale = outputs.some((f) => !existsSync(f) || newest("src") > statSync(f).mtimeMs);
if (stale) execSync("npm run build", { stdio: "inherit" });
