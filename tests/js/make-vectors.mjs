#!/usr/bin/env node
// Write the shared codename/mailbox test vectors from the JavaScript implementation
// (app/web/js/mailbox-core.js), so the Python side (app/crypto/mailbox.py) and the
// browser are checked against the very same numbers and can never drift apart.
//
//   node tests/js/make-vectors.mjs            (rewrites tests/vectors/*.json)
//
// Rerun after any change to KDF_PARAMS or the word list, and commit the result.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { KDF_PARAMS, KINDS, makeMailboxApi, parseWordlist } from "../../app/web/js/mailbox-core.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const OUT = join(ROOT, "tests", "vectors");

// Inputs as a witness might type them; `normalized` in the output is the canonical form.
const CODENAMES = [
  "justify deepness confirm porridge entertain undermine provoke",
  "chafe copy cavity charcoal skydiver starter marsupial",
  "residence unroll lent aflutter ammonium fastness wrist",
  "abacus zoom tshirt yolk dropdown felttip yoyo", // list ends + the four changed words
  "  Justify-DEEPNESS\tconfirm--porridge \n entertain\u2013undermine\u00a0provoke ", // = #1
  "\uff41\uff42\uff41\uff43\uff55\uff53 ZOOM TShirt yolk dropdown\u2011FELTTIP\u2010Yoyo", // = #4
];

// Inputs that must be refused (code: "count" | "word"), or accepted with this form.
const NORMALIZATION = [
  ["abacus zoom tshirt yolk dropdown felttip yoyo", "abacus zoom tshirt yolk dropdown felttip yoyo"],
  ["ABACUS-ZOOM-TSHIRT-YOLK-DROPDOWN-FELTTIP-YOYO", "abacus zoom tshirt yolk dropdown felttip yoyo"],
  ["abacus\u3000zoom\u2028tshirt\u2003yolk\u2212dropdown\uff0dfelttip\ufe63yoyo", "abacus zoom tshirt yolk dropdown felttip yoyo"],
  ["\u212a\u0131ng", null], // Kelvin sign -> "k", dotless i stays: not a word, and 1 word
  ["abacus zoom tshirt yolk dropdown felttip", "count"],
  ["abacus zoom tshirt yolk dropdown felttip yoyo zoom", "check"], // 8th word is not the check word
  ["abacus zoom tshirt yolk dropdown felttip yoyo zoom zoom", "count"],
  ["", "count"],
  [" - -- ", "count"],
  ["abacus zoom t shirt yolk dropdown felttip yoyo", "word"], // "t" is not a word
  ["abacus zoom t-shirt yolk drop-down felt-tip yo-yo", "word"], // hyphens split words
  ["abacus zoom tshirt yolk dropdown felttip yoyó", "word"],
  ["abacus_zoom tshirt yolk dropdown felttip yoyo zoom", "word"],
];

async function main() {
  const words = parseWordlist(readFileSync(join(ROOT, "app", "crypto", "wordlist.txt"), "utf8"));
  const api = makeMailboxApi(words);
  const kdf = {
    N: KDF_PARAMS.N,
    r: KDF_PARAMS.r,
    p: KDF_PARAMS.p,
    dklen: KDF_PARAMS.dkLen,
    salt: KDF_PARAMS.salt,
  };
  const vectors = [];
  for (const codename of CODENAMES) {
    for (const kind of KINDS) {
      const m = await api.deriveMailbox(codename, kind);
      vectors.push({
        codename,
        normalized: m.codename,
        kind,
        token_hash: m.tokenHash,
        reply_recipient: m.replyRecipient,
        reply_identity: m.replyIdentity,
        token: Buffer.from(m.token).toString("hex"),
        kdf,
      });
    }
  }
  const norm = NORMALIZATION.map(([input, expect]) => {
    let result;
    try {
      result = { input, normalized: api.normalizeCodename(input), error: null };
    } catch (e) {
      result = { input, normalized: null, error: e.code };
    }
    const want = expect === null ? "word" : expect;
    const got = result.error ?? result.normalized;
    if (got !== want) throw new Error(`normalization vector ${JSON.stringify(input)}: ${got}`);
    return result;
  });
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, "mailbox.json"), `${JSON.stringify(vectors, null, 2)}\n`);
  writeFileSync(join(OUT, "codename-normalization.json"), `${JSON.stringify(norm, null, 2)}\n`);
  process.stdout.write(`wrote ${vectors.length} mailbox vectors, ${norm.length} normalization vectors\n`);
}

main().catch((err) => {
  process.stderr.write(`make-vectors: ${String(err?.message ?? err).split("\n")[0]}\n`);
  process.exitCode = 1;
});
