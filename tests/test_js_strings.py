"""No sentence a witness can see is written in English inside the browser scripts.

Every word the scripts show comes from the page (translated on the server, ``data-*`` on
``#js-strings``, ``#return-msgs`` …) or from a server answer in the page's language. This scans
the sources in app/web/js for string literals that reach the screen — assigned to
``textContent``/``innerHTML``/``title``/``placeholder``/``aria-label``, passed to ``alert`` or
to the scripts' message functions (``say``, ``showError``, ``status``, ``Refused`` …) — and
then, as a second check that survives minification and code splitting, the built bundles in
app/web/static/js for the same sinks (property and DOM method names are never renamed).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "app" / "web" / "js").glob("*.js"))
BUNDLES = sorted((ROOT / "app" / "web" / "static" / "js").glob("*.js"))

LITERAL = r"""(?P<lit>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`)"""
# sinks that put text on the screen or in front of a screen reader
PROPERTY = r"\.(?:textContent|innerHTML|outerHTML|innerText|title|placeholder|ariaLabel|alt)"
SOURCE_SINKS = [
    re.compile(PROPERTY + r"\s*\+?=\s*" + LITERAL),
    re.compile(r"setAttribute\(\s*[\"'](?:aria-label|aria-description|title|placeholder|alt)"
               r"[\"']\s*,\s*" + LITERAL),
    re.compile(r"\b(?:alert|confirm|prompt|say|showError|status|Refused|createTextNode|append|"
               r"prepend|replaceChildren|before|after)\(\s*" + LITERAL),
    # el("p", { … }, "text"): the scripts' element helper, third argument is the text
    re.compile(r"\bel\(\s*[\"'][\w-]+[\"']\s*,\s*\{[^{}]*\}\s*,\s*" + LITERAL),
]
# in a minified bundle only DOM names survive; local helpers are renamed
BUNDLE_SINKS = [
    re.compile(PROPERTY + r"\s*\+?=\s*" + LITERAL),
    re.compile(r"setAttribute\(\s*[\"'](?:aria-label|aria-description|title|placeholder|alt)"
               r"[\"']\s*,\s*" + LITERAL),
    re.compile(r"\b(?:alert|confirm|prompt|createTextNode)\(\s*" + LITERAL),
]


def english(literal: str) -> bool:
    """A literal with a word in it: two Latin letters in a row, once ``${…}`` is removed."""
    body = re.sub(r"\$\{[^}]*\}", "", literal[1:-1])
    return re.search(r"[A-Za-z]{2,}", body) is not None


def findings(text: str, sinks: list[re.Pattern[str]]) -> list[str]:
    found = []
    for sink in sinks:
        for match in sink.finditer(text):
            if english(match.group("lit")):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"line {line}: {match.group(0)[:120]}")
    return found


def test_the_scanner_catches_what_it_is_for():
    source = (
        'p.textContent = "Sending…";\n'
        "say(`Could not send ${name}`, \"error\");\n"
        'bar.setAttribute("aria-label", "Progress");\n'
        'section.append(el("p", { id: "x" }, "Nothing here"));\n'
        'node.title = \'Close\';\n'
    )
    assert len(findings(source, SOURCE_SINKS)) == 5
    assert len(findings('a.textContent="Sending";alert("Oops")', BUNDLE_SINKS)) == 2
    # not text: empty strings, numbers and punctuation, and values from the page
    harmless = 'p.textContent = "";\nq.textContent = `${label} 0 %`;\nsay(msg("msgSent"));\n'
    assert findings(harmless, SOURCE_SINKS) == []


def test_scripts_exist():
    assert SOURCES and BUNDLES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_english_literal_reaches_the_screen_in_the_sources(path: Path):
    assert findings(path.read_text(encoding="utf-8"), SOURCE_SINKS) == []


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.name)
def test_no_english_literal_reaches_the_screen_in_the_bundles(path: Path):
    assert findings(path.read_text(encoding="utf-8"), BUNDLE_SINKS) == []


def test_error_messages_of_the_scripts_are_never_shown():
    """``Error``/``CodenameError`` messages are English, for developers: what the witness sees
    of a failure is a sentence from the page, or a ``Refused`` built from one."""
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for call in re.finditer(r"\b(?:showError|say|status)\(([^;]*)\);", text):
            argument = call.group(1)
            shown = re.sub(r"err instanceof Refused \? err\.message", "", argument)
            assert not re.search(r"\b(?:err|error|exc|e)\b(?:\?)?\.message|String\(err", shown), \
                (path.name, argument)
