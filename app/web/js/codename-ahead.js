// The codename before Send, JavaScript on (docs/codename.md, "Before Send").
//
// The page arrives with the codename the server derived from the form token (for the plain
// form). With JavaScript the browser encrypts, so the codename must be one the server never
// saw: it is made here when the page loads and replaces the server's in the box, before the
// witness writes it down and ticks "I have written it down". The submission is then stored
// under exactly this codename, so a lost answer never loses it.

import { codenameNumbers, newCodename } from "./mailbox.js";

/** Put a browser-made codename in the box; null when the page has no box. `restore()` puts
 * the server's codename back (for the plain form: the server stores under its own) and
 * clears the tick, returning false when it was already back. */
export function codenameAhead(doc) {
  const words = doc.getElementById("ahead-codename");
  const numbers = doc.getElementById("ahead-numbers");
  const tick = doc.getElementById("kept-codename");
  if (!words || !numbers || !tick) return null;
  const server = { words: words.textContent, numbers: numbers.textContent };
  const codename = newCodename();
  words.textContent = codename;
  numbers.textContent = codenameNumbers(codename);
  let restored = false;
  return {
    codename,
    restore() {
      if (restored) return false;
      restored = true;
      words.textContent = server.words;
      numbers.textContent = server.numbers;
      tick.checked = false;
      return true;
    },
  };
}
