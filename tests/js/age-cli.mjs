#!/usr/bin/env node
// Tiny CLI around the npm `age-encryption` package (the library the browser bundle
// uses), so the Python tests can check interoperability with real JS crypto.
//
//   node tests/js/age-cli.mjs encrypt -r RECIPIENT [-r ...] [--armor] < in > out
//   node tests/js/age-cli.mjs decrypt -i IDENTITYFILE [-i ...]      < in > out
//   node tests/js/age-cli.mjs keygen [--pq]   (age-keygen style: "# public key: age1..." then the
//                                             identity line; usable as an -i identity file)
//   node tests/js/age-cli.mjs mailbox CODENAME --kind X25519|mlkem768x25519   (JSON line)
//   node tests/js/age-cli.mjs codename             (a fresh random codename)
//   node tests/js/age-cli.mjs recipient -i IDENTITYFILE   (one recipient line per identity)
//   node tests/js/age-cli.mjs padme N [N ...]      (Padme lengths, app/web/js/padding.js)
//
// Errors: one line on stderr, exit status 1.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";

import {
  Decrypter,
  Encrypter,
  armor,
  generateHybridIdentity,
  generateX25519Identity,
  identityToRecipient,
} from "age-encryption";

import { makeMailboxApi, parseWordlist } from "../../app/web/js/mailbox-core.js";
import { padme } from "../../app/web/js/padding.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----";

class UsageError extends Error {}

/** Parse `args` into {flags: {name: [values]}, positional: []}. */
function parseArgs(args, valued, boolean) {
  const flags = {};
  const positional = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (valued.includes(a)) {
      if (i + 1 >= args.length) throw new UsageError(`${a} needs a value`);
      (flags[a] ??= []).push(args[++i]);
    } else if (boolean.includes(a)) {
      flags[a] = [true];
    } else if (a.startsWith("-") && a !== "-") {
      throw new UsageError(`unknown option ${a}`);
    } else {
      positional.push(a);
    }
  }
  return { flags, positional };
}

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return new Uint8Array(Buffer.concat(chunks));
}

async function writeStdout(stream) {
  await stream.pipeTo(Writable.toWeb(process.stdout));
}

async function cmdEncrypt(args) {
  const { flags, positional } = parseArgs(args, ["-r"], ["--armor", "-a"]);
  if (positional.length) throw new UsageError("encrypt reads stdin; no file arguments");
  const recipients = flags["-r"] ?? [];
  if (!recipients.length) throw new UsageError("encrypt needs at least one -r RECIPIENT");
  const e = new Encrypter();
  for (const r of recipients) e.addRecipient(r);
  if (flags["--armor"] || flags["-a"]) {
    const ct = await e.encrypt(await readStdin());
    process.stdout.write(armor.encode(ct));
    return;
  }
  const input = Readable.toWeb(process.stdin);
  // Node's web stream yields Buffers; age-encryption wants plain Uint8Arrays.
  const plain = input.pipeThrough(
    new TransformStream({ transform: (c, ctl) => ctl.enqueue(new Uint8Array(c)) }),
  );
  await writeStdout(await e.encrypt(plain));
}

function readIdentityFile(path) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new Error(`cannot read identity file ${path}`);
  }
  const ids = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  if (!ids.length) throw new Error(`no identity found in ${path}`);
  return ids;
}

async function cmdDecrypt(args) {
  const { flags, positional } = parseArgs(args, ["-i"], []);
  if (positional.length) throw new UsageError("decrypt reads stdin; no file arguments");
  const files = flags["-i"] ?? [];
  if (!files.length) throw new UsageError("decrypt needs at least one -i IDENTITYFILE");
  const d = new Decrypter();
  for (const f of files) for (const id of readIdentityFile(f)) d.addIdentity(id);
  let data = await readStdin();
  const head = new TextDecoder().decode(data.subarray(0, 64)).trimStart();
  if (head.startsWith(ARMOR_BEGIN)) data = armor.decode(new TextDecoder().decode(data));
  process.stdout.write(await d.decrypt(data));
}

async function cmdKeygen(args) {
  const { flags, positional } = parseArgs(args, [], ["--pq"]);
  if (positional.length) throw new UsageError("keygen takes no arguments");
  const id = flags["--pq"] ? await generateHybridIdentity() : await generateX25519Identity();
  process.stdout.write(`# public key: ${await identityToRecipient(id)}\n${id}\n`);
}

function mailboxApi() {
  const text = readFileSync(join(ROOT, "app", "crypto", "wordlist.txt"), "utf8");
  return makeMailboxApi(parseWordlist(text));
}

async function cmdMailbox(args) {
  const { flags, positional } = parseArgs(args, ["--kind"], []);
  if (positional.length !== 1) throw new UsageError("mailbox needs one CODENAME argument");
  const kind = (flags["--kind"] ?? ["X25519"]).at(-1);
  const m = await mailboxApi().deriveMailbox(positional[0], kind);
  const out = {
    codename: m.codename,
    kind: m.kind,
    token_hash: m.tokenHash,
    reply_recipient: m.replyRecipient,
    reply_identity: m.replyIdentity,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

async function cmdCodename(args) {
  if (args.length) throw new UsageError("codename takes no arguments");
  process.stdout.write(`${mailboxApi().newCodename()}\n`);
}

async function cmdRecipient(args) {
  const { flags, positional } = parseArgs(args, ["-i"], []);
  if (positional.length || !flags["-i"]) throw new UsageError("recipient needs -i IDENTITYFILE");
  for (const f of flags["-i"]) {
    for (const id of readIdentityFile(f)) process.stdout.write(`${await identityToRecipient(id)}\n`);
  }
}

async function cmdPadme(args) {
  if (!args.length) throw new UsageError("padme needs at least one length");
  for (const a of args) {
    if (!/^[0-9]+$/.test(a)) throw new UsageError(`not a length: ${a}`);
    process.stdout.write(`${padme(Number(a))}\n`);
  }
}

const COMMANDS = {
  recipient: cmdRecipient,
  padme: cmdPadme,
  encrypt: cmdEncrypt,
  decrypt: cmdDecrypt,
  keygen: cmdKeygen,
  mailbox: cmdMailbox,
  codename: cmdCodename,
};

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  const fn = COMMANDS[cmd];
  if (!fn) throw new UsageError(`usage: age-cli.mjs ${Object.keys(COMMANDS).join("|")} ...`);
  await fn(rest);
}

main().catch((err) => {
  const msg = String(err?.message ?? err).split("\n")[0];
  process.stderr.write(`age-cli: ${msg}\n`);
  process.exitCode = 1;
});
