#!/usr/bin/env node
// Runs the browser's upload-client.js (the one owner of the testimony document and the
// ciphertext size arithmetic in JavaScript) under node on what tests send on stdin, so that
// Python can check its answers against app.crypto and the editor's validator:
//
//   stdin:  {"payload": [plaintext, ...], "ciphertext": [[header, plaintext], ...],
//            "documents": [fields, ...]}     (fields: see testimonyDocument)
//   stdout: {"payload": [bytes, ...], "ciphertext": [bytes, ...], "documents": [doc, ...]}

import { ciphertextSize, payloadSize, testimonyDocument } from "../../app/web/js/upload-client.js";

let input = "";
process.stdin.setEncoding("utf8");
for await (const part of process.stdin) input += part;
const ask = JSON.parse(input);
const out = {
  payload: (ask.payload ?? []).map((n) => payloadSize(n)),
  ciphertext: (ask.ciphertext ?? []).map(([header, n]) => ciphertextSize(header, n)),
  documents: (ask.documents ?? []).map((fields) => testimonyDocument(fields)),
};
process.stdout.write(`${JSON.stringify(out)}\n`);
