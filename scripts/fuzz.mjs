// Runs the fuzz suites (test/fuzz) far longer than `npm test` does.
//
//   node scripts/fuzz.mjs                 every property 50× its default run count
//   node scripts/fuzz.mjs --scale 200     … 200×
//   node scripts/fuzz.mjs --runs 5000     every property exactly 5000 runs
//   node scripts/fuzz.mjs --seed 123 test/fuzz/tokens.test.ts
//                                         replay a failure (fast-check prints seed and path;
//                                         pass the path as FUZZ_PATH=… in the environment)
//
// The same knobs work as environment variables (FUZZ_SCALE, FUZZ_RUNS, FUZZ_SEED)
// with the ordinary test runner.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const args = process.argv.slice(2);
const env = { ...process.env };
const files = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const value = () => {
    const v = args[++i];
    if (v === undefined || !/^-?\d+(\.\d+)?$/.test(v)) {
      console.error(`fuzz: ${a} needs a number`);
      process.exit(2);
    }
    return v;
  };
  if (a === "--scale") env.FUZZ_SCALE = value();
  else if (a === "--runs") env.FUZZ_RUNS = value();
  else if (a === "--seed") env.FUZZ_SEED = value();
  else if (a === "--help" || a === "-h") {
    console.log("usage: node scripts/fuzz.mjs [--scale N | --runs N] [--seed N] [test/fuzz/<file>.test.ts …]");
    process.exit(0);
  } else if (a.startsWith("-")) {
    console.error(`fuzz: unknown option ${a}`);
    process.exit(2);
  } else files.push(a);
}
if (!env.FUZZ_SCALE && !env.FUZZ_RUNS) env.FUZZ_SCALE = "50";
if (files.length === 0) {
  for (const e of readdirSync("test/fuzz")) if (e.endsWith(".test.ts")) files.push(join("test/fuzz", e));
  files.sort();
}
console.error(`fuzz: ${files.length} file(s), ${env.FUZZ_RUNS ? `${env.FUZZ_RUNS} runs per property` : `${env.FUZZ_SCALE}× the default runs`}${env.FUZZ_SEED ? `, seed ${env.FUZZ_SEED}` : ""}`);
// One file at a time: the live suites then do not compete for the CPU.
const r = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...files], { stdio: "inherit", env });
process.exit(r.status ?? 1);
