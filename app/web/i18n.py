"""Languages: gettext catalogs (Babel) under app/web/translations, chosen by a link.

Tor Browser hides the browser's language, and witnesses should not need cookies, so the
language comes from the URL: a path prefix (``/ug/submit``) or ``?lang=ug``.  English is the
source language.  A language is offered once its compiled catalog exists
(``translations/<code>/LC_MESSAGES/messages.mo``, or the ``.po`` compiled at start-up).
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from pathlib import Path

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"
DEFAULT = "en"


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
        self.available: list[Language] = [KNOWN[c] for c in KNOWN if c in self._by_code]

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def get(self, code: str) -> gettext.NullTranslations:
        return self._by_code.get(code) or self._by_code[DEFAULT]

    def pick(self, *candidates: str | None) -> Language:
        """The first candidate that names an available language, else English."""
        for candidate in candidates:
            if candidate and candidate in self._by_code:
                return KNOWN[candidate]
        return KNOWN[DEFAULT]


def _load(directory: Path, code: str) -> gettext.NullTranslations | None:
    base = directory / code / "LC_MESSAGES"
    mo, po = base / f"{DOMAIN}.mo", base / f"{DOMAIN}.po"
    if mo.is_file():
        with mo.open("rb") as fh:
            return gettext.GNUTranslations(fh)
    if po.is_file():  # a fresh checkout without compiled catalogs still works
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        with po.open("rb") as fh:
            catalog = read_po(fh, locale=code)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        return gettext.GNUTranslations(buf)
    return None
