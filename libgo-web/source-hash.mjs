// The hash of everything the web build is made from. The build writes it to
// libgo-http/web/source-hash; libgo-http's `web_assets` test computes the same hash and fails when
// they differ, i.e. when a source changed and `bash scripts/web.sh build` was not run.
// The same walk is implemented in libgo-http/tests/web_assets.rs: keep them together.
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
export const SOURCES = [
  "index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts",
  "source-hash.mjs", "src", "public", "../libgo-http/openapi.json",
];

function walk(path, out) {
  let st;
  try { st = statSync(path); } catch { return; }
  if (st.isDirectory()) {
    for (const name of readdirSync(path)) walk(join(path, name), out);
  } else {
    out.push(path);
  }
}

export function sourceHash(root = here) {
  const files = [];
  for (const s of SOURCES) walk(join(root, s), files);
  const rel = files.map((f) => relative(root, f).split("\\").join("/")).sort();
  const h = createHash("sha256");
  for (const f of rel) {
    const body = readFileSync(join(root, f));
    h.update(`${f}\0${body.length}\0`);
    h.update(body);
  }
  return h.digest("hex");
}

export function sourceHashPlugin() {
  return {
    name: "libgo-source-hash",
    apply: "build",
    writeBundle(options) {
      writeFileSync(join(options.dir, "source-hash"), sourceHash() + "\n");
    },
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(sourceHash());
}
