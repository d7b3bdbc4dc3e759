#!/usr/bin/env node
// What the browser modules answer for the protocol vectors written by
// tests/make_protocol_vectors.py (tests/vectors/testimony.json, tests/vectors/age-sizes.json).
// Prints one JSON object; tests/test_protocol_vectors.py compares it with the vectors.
//
//   node tests/js/protocol-vectors.mjs

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { padme, paddingFor } from "../../app/web/js/padding.js";
import { ciphertextSize } from "../../app/web/js/upload-client.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const read = (name) => JSON.parse(readFileSync(join(ROOT, "tests", "vectors", name), "utf-8"));

const sizes = read("age-sizes.json").sizes.map((v) => ({
  plaintext: v.plaintext,
  padded: padme(v.plaintext),
  padding: paddingFor(v.plaintext),
  ciphertext: ciphertextSize(v.header, v.plaintext),
}));

// How the pages serialize a testimony document before padding it (submit.js, return.js).
const testimony = read("testimony.json")
  .documents.filter((v) => v.valid)
  .map((v) => {
    const json = JSON.stringify(v.parsed);
    const bytes = new TextEncoder().encode(json).length;
    return { name: v.name, json, json_bytes: bytes, padded_bytes: padme(bytes) };
  });

process.stdout.write(JSON.stringify({ sizes, testimony }));
