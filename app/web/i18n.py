"""Languages: gettext catalogs (Babel) under app/web/translations, chosen by a link.

Tor Browser hides the browser's language, and witnesses should not need cookies, so the
language comes from the URL: a path prefix (``/ug/submit``) or ``?lang=ug``.  English is the
source language.  A language is offered once its compiled catalog exists
(``translations/<code>/LC_MESSAGES/messages.mo``, or the ``.po`` compiled at start-up).

Every translated ``.po`` carries its review status in a header comment line
``# Review-Status: draft — needs review by a native speaker`` until a native speaker signs off
(then ``# Review-Status: reviewed by <name>, <date>``).  Why a comment and not a header field:
Babel drops unknown header fields on ``pybabel update``, and keeps header comments.  Pages in a
draft language say so at the top, and ``guwah self-check`` prints each language's status: a
wrong word in safety guidance can hurt someone, so a witness is never shown an unchecked
translation as if it were checked.
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"
DEFAULT = "en"
STATUS_PREFIX = "Review-Status:"
SOURCE_STATUS = "source language"
MISSING_STATUS = "draft — no review status in the catalog"


@dataclass(frozen=True)
class Language:
    code: str  # the catalog directory and the URL prefix
    tag: str  # BCP 47 tag for <html lang>
    name: str  # the language's own name, shown in the language links
    rtl: bool = False

    @property
    def dir(self) -> str:
        return "rtl" if self.rtl else "ltr"


KNOWN: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("en", "en", "English"),
        Language("ug", "ug-Arab", "ئۇيغۇرچە", rtl=True),
        Language("kk", "kk", "қазақша"),
        Language("ru", "ru", "русский"),
        Language("zh_Hans", "zh-Hans", "简体中文"),
        Language("tr", "tr", "Türkçe"),
    )
}


class Catalogs:
    """The loaded catalogs; only languages with a catalog (and English) are offered."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or TRANSLATIONS_DIR
        self._by_code: dict[str, gettext.NullTranslations] = {}
        for code in KNOWN:
            translations = _load(self.directory, code)
            if translations is not None:
                self._by_code[code] = translations
        self._by_code.setdefault(DEFAULT, gettext.NullTranslations())
        self._status = {code: _review_status(self.directory, code) for code in self._by_code}
        self.available: list[Language] = [KNOWN[c] for c in KNOWN if c in self._by_code]

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def get(self, code: str) -> gettext.NullTranslations:
        return self._by_code.get(code) or self._by_code[DEFAULT]

    def review_status(self, code: str) -> str:
        """The catalog's ``Review-Status`` line; a catalog without one counts as a draft."""
        if code == DEFAULT:
            return SOURCE_STATUS
        return self._status.get(code, MISSING_STATUS)

    def is_draft(self, code: str) -> bool:
        """True until a native speaker has signed the catalog off."""
        status = self.review_status(code)
        return status != SOURCE_STATUS and not status.lower().startswith("reviewed by")

    def pick(self, *candidates: str | None) -> Language:
        """The first candidate that names an available language, else English."""
        for candidate in candidates:
            if candidate and candidate in self._by_code:
                return KNOWN[candidate]
        return KNOWN[DEFAULT]


def _review_status(directory: Path, code: str) -> str:
    """The ``# Review-Status:`` line of the ``.po`` header (read once, at start-up)."""
    po = directory / code / "LC_MESSAGES" / f"{DOMAIN}.po"
    try:
        with po.open(encoding="utf-8") as fh:
            for line, _ in zip(fh, range(40), strict=False):
                comment = line.removeprefix("#").strip()
                if line.startswith("#") and comment.startswith(STATUS_PREFIX):
                    return comment.removeprefix(STATUS_PREFIX).strip() or MISSING_STATUS
    except (OSError, UnicodeDecodeError):
        pass
    return MISSING_STATUS


def _load(directory: Path, code: str) -> gettext.NullTranslations | None:
    base = directory / code / "LC_MESSAGES"
    mo, po = base / f"{DOMAIN}.mo", base / f"{DOMAIN}.po"
    if mo.is_file():
        with mo.open("rb") as fh:
            return gettext.GNUTranslations(fh)
    if po.is_file():  # a fresh checkout without compiled catalogs still works
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=code)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        return gettext.GNUTranslations(buf)
    return None
