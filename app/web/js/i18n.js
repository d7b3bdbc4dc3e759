/**
 * Words the scripts show come from the page (translated on the server), never from here.
 *
 * `plural(el, "slow", n)` picks the `data-slow-<category>` form the page rendered for each
 * CLDR plural category of its language (Intl.PluralRules uses the same CLDR rules as the
 * server's Babel). `fill(text, values)` puts values into `{name}` slots, each isolated with
 * U+2068/U+2069 (the text equivalent of <bdi>) so a file name or number keeps its own
 * direction inside a right-to-left sentence.
 */

const FSI = "\u2068";
const PDI = "\u2069";

export function fill(text, values) {
  return String(text ?? "").replace(/\{(\w+)\}/g, (_, k) => FSI + String(values[k] ?? "") + PDI);
}

export function plural(el, key, n) {
  const data = el?.dataset ?? {};
  let category = "other";
  try {
    category = new Intl.PluralRules(document.documentElement.lang || "en").select(n);
  } catch {
    // an unknown tag: the "other" form is always rendered
  }
  const name = (c) => key + c[0].toUpperCase() + c.slice(1);
  return data[name(category)] ?? data[name("other")] ?? "";
}
