// Bundles every widget module (src/*.ts) into one ES module and one stylesheet per widget:
// widgets/static/dist/<name>.js and <name>.css, which the Python widgets load (widgets/_frontend.py).
// `node build.mjs --tests` bundles test/*.test.ts into .test-build/ for `node --test` instead;
// `node build.mjs --watch` rebuilds on every change (re-import the widget, or restart the kernel, to see it).

import { readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const tests = process.argv.includes("--tests");
const folder = join(here, tests ? "test" : "src");
const suffix = tests ? ".test.ts" : ".ts";
const entries = readdirSync(folder).filter((f) => f.endsWith(suffix) && !f.endsWith(".d.ts"))
  .map((f) => join(folder, f));
const outdir = tests ? join(here, ".test-build") : join(here, "..", "static", "dist");

rmSync(outdir, { recursive: true, force: true });
const options = {
  entryPoints: entries,
  outdir,
  bundle: true,
  format: "esm",
  target: tests ? "node20" : "es2020",
  platform: tests ? "node" : "browser",
  outExtension: tests ? { ".js": ".mjs" } : {},
  packages: tests ? "external" : undefined, // tests import happy-dom from node_modules at run time
  legalComments: "none",
  logLevel: "warning",
};
const what = `${entries.length} ${tests ? "test files" : "widget modules"} into ${outdir}`;
if (process.argv.includes("--watch")) {
  await (await esbuild.context({ ...options, logLevel: "info" })).watch();
  console.log(`watching: bundling ${what} on every change`);
} else {
  await esbuild.build(options);
  console.log(`bundled ${what}`);
}
