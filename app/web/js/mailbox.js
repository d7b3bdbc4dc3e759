// Browser entry point for codenames and mailboxes (built to static/js/mailbox.js, ESM).
// The word list is app/crypto/wordlist.txt, inlined at build time by esbuild's text
// loader, so the browser and the Python server read the very same file.

import { Decrypter, armor } from "age-encryption";
import wordlistText from "../../crypto/wordlist.txt";
import { makeMailboxApi, parseWordlist } from "./mailbox-core.js";

export { CODENAME_WORDS, CodenameError, KDF_PARAMS, KINDS } from "./mailbox-core.js";

const api = makeMailboxApi(parseWordlist(wordlistText));

/** The 7776 codename words, in list order. */
export const WORDS = api.WORDS;
/** (input: string) => string; throws CodenameError. */
export const normalizeCodename = api.normalizeCodename;
/** () => string: seven random words and the check word. */
export const newCodename = api.newCodename;
/** (input: string) => string: the codename as 8 groups of 4 digits; throws CodenameError. */
export const codenameNumbers = api.codenameNumbers;
/** (input: string) => string: the codename as 8 words; throws CodenameError. */
export const codenameWords = api.codenameWords;
/** (codename, kind, {onProgress}) => Promise<{codename, kind, token, tokenHash, replyIdentity, replyRecipient}> */
export const deriveMailbox = api.deriveMailbox;

/**
 * Open a reply (an age file, binary or ASCII-armored) with the mailbox's reply identity.
 * Resolves to the plaintext bytes; rejects if the file is not for this mailbox or was
 * tampered with (age authenticates every chunk).
 */
export async function decryptReply(file, replyIdentity) {
  let data = file;
  if (typeof data === "string") data = armor.decode(data);
  const d = new Decrypter();
  d.addIdentity(replyIdentity);
  return d.decrypt(data);
}
