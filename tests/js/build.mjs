#!/usr/bin/env node
// Deterministic build of the browser bundles: app/web/js/*.js -> app/web/static/js/.
//
//   node tests/js/build.mjs [--outdir DIR]        (also: npm run build)
//
// Reproducible by construction: fixed esbuild version (package-lock.json) and options,
// no timestamps, no source maps, paths in comments relative to the repository root,
// no network. Not minified, so that anyone can read what their browser runs. Licence
// comments of the bundled libraries (/*! ... */) are kept inline where they appear
// (legalComments: "inline"). Also writes SRI.json: {"file.js": "sha384-..."} for the
// templates' integrity= attributes. tests/test_bundle_reproducible.py rebuilds and
// compares byte for byte.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

// The worker's age-encryption runs its ChaCha20-Poly1305 through app/web/js/chacha20poly1305.js
// (written for engines without a JIT: Tor Browser "Safer"); the other bundles keep noble's.
const JITLESS_AEAD = { "@noble/ciphers/chacha.js": "./app/web/js/chacha20poly1305.js" };

const ENTRIES = [
  // [source in app/web/js, output name, format, module substitutions]
  ["mailbox.js", "mailbox.js", "esm", {}],
  ["submit.js", "submit.js", "esm", {}],
  ["landing.js", "landing.js", "esm", {}], // home page: a live note on the protection in use
  ["return.js", "return.js", "esm", {}], // returning witness: opens the mailbox in the browser
  ["worker.js", "worker.js", "iife", JITLESS_AEAD], // classic worker script: every browser
  ["hash-worker.js", "hash-worker.js", "iife", {}], // started by worker.js: SHA-256 on its own core
];

const BANNER =
  "/* Guwah witness-site bundle. Built from app/web/js with tests/js/build.mjs;\n" +
  "   dependencies pinned in package-lock.json (age-encryption, @noble, @scure: MIT).\n" +
  "   Rebuild and compare: pytest tests/test_bundle_reproducible.py */";

function parseOutdir(argv) {
  const i = argv.indexOf("--outdir");
  if (i < 0) return join(ROOT, "app", "web", "static", "js");
  if (i + 1 >= argv.length) throw new Error("--outdir needs a directory");
  return resolve(argv[i + 1]);
}

async function main() {
  const outdir = parseOutdir(process.argv.slice(2));
  mkdirSync(outdir, { recursive: true });
  const sri = {};
  for (const [src, out, format, alias] of ENTRIES) {
    const result = await esbuild.build({
      absWorkingDir: ROOT,
      entryPoints: [join("app", "web", "js", src)],
      bundle: true,
      write: false,
      outfile: join(outdir, out),
      format,
      platform: "browser",
      target: ["es2022"],
      charset: "utf8",
      legalComments: "inline",
      sourcemap: false,
      minify: false,
      treeShaking: true,
      alias,
      loader: { ".txt": "text" },
      banner: { js: BANNER },
      logLevel: "warning",
    });
    if (result.outputFiles.length !== 1) throw new Error(`unexpected outputs for ${src}`);
    const bytes = result.outputFiles[0].contents;
    writeFileSync(join(outdir, out), bytes);
    sri[out] = `sha384-${createHash("sha384").update(bytes).digest("base64")}`;
  }
  const sorted = Object.fromEntries(Object.entries(sri).sort(([a], [b]) => (a < b ? -1 : 1)));
  writeFileSync(join(outdir, "SRI.json"), `${JSON.stringify(sorted, null, 2)}\n`);
  for (const [f, h] of Object.entries(sorted)) {
    const size = readFileSync(join(outdir, f)).length;
    process.stdout.write(`${f}\t${size}\t${h}\n`);
  }
}

main().catch((err) => {
  process.stderr.write(`build: ${String(err?.message ?? err).split("\n")[0]}\n`);
  process.exitCode = 1;
});
