"""Translated catalogs: complete, faithful to their placeholders, and honest about review.

Every catalog under app/web/translations is checked against messages.pot: a missing or empty
msgid, a fuzzy entry or a lost placeholder would put English, or a broken sentence, in front
of a witness who cannot read it.  Pages in a draft language say so; ``guwah self-check``
prints each language's review status.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

from app.web.i18n import KNOWN, TRANSLATIONS_DIR, Catalogs

POT = TRANSLATIONS_DIR / "messages.pot"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w+\}")
TRANSLATED = sorted(
    path.parent.parent.name
    for path in TRANSLATIONS_DIR.glob("*/LC_MESSAGES/messages.po")
    if path.parent.parent.name != "en"
)


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as fh:
        return read_po(fh, locale=locale)


def _forms(message: Message) -> list[str]:
    value = message.string
    return list(value) if isinstance(value, tuple) else [value]


def _ids(message: Message) -> list[str]:
    value = message.id
    return list(value) if isinstance(value, tuple) else [value]


def test_every_shipped_catalog_is_a_known_language():
    assert set(TRANSLATED) <= set(KNOWN)


@pytest.mark.parametrize("code", TRANSLATED)
def test_catalog_is_complete_and_keeps_placeholders(code: str):
    pot = {m.id: m for m in _read(POT) if m.id}
    catalog = _read(TRANSLATIONS_DIR / code / "LC_MESSAGES" / "messages.po", locale=code)
    entries = {m.id: m for m in catalog if m.id}
    assert set(entries) == set(pot), f"{code}: msgids differ from messages.pot"
    problems = []
    for msgid, message in entries.items():
        label = _ids(message)[0][:50]
        if message.fuzzy:
            problems.append(f"fuzzy: {label}")
        forms = _forms(message)
        if not all(form.strip() for form in forms):
            problems.append(f"untranslated: {label}")
            continue
        wanted = set().union(*(set(PLACEHOLDER.findall(i)) for i in _ids(message)))
        for form in forms:
            got = set(PLACEHOLDER.findall(form))
            # a plural form may leave the number out ("one file"), never invent a name
            if not got <= wanted or (len(forms) == 1 and got != wanted):
                problems.append(f"placeholders {sorted(got)} != {sorted(wanted)}: {label}")
        problems.extend(f"{label}: {err}" for err in message.check(catalog))
    assert not problems, f"{code}:\n" + "\n".join(problems)


@pytest.mark.parametrize("code", TRANSLATED)
def test_catalog_states_its_review_status(code: str):
    status = Catalogs().review_status(code)
    assert status.startswith("draft") or status.lower().startswith("reviewed by"), status


@pytest.mark.parametrize("code", TRANSLATED)
def test_catalog_compiles_with_gettext_checks(code: str, tmp_path: Path):
    result = subprocess.run(
        [str(Path(sys.executable).with_name("pybabel")), "-q", "compile", "--statistics",
         "-i", str(TRANSLATIONS_DIR / code / "LC_MESSAGES" / "messages.po"),
         "-o", str(tmp_path / "messages.mo"), "-l", code],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr


# ----------------------------------------------------------------------------- pages
def _po_catalog(tmp_path: Path, code: str, status: str | None) -> Path:
    """A one-string catalog for ``code`` whose header comment carries ``status``."""
    from babel.messages.pofile import write_po

    catalog = Catalog(locale=code, header_comment="# A test catalog.\n" + (
        f"# Review-Status: {status}" if status else "#"))
    catalog.add("Leave quickly", "تېز ئايرىلىش")
    target = tmp_path / "translations" / code / "LC_MESSAGES"
    target.mkdir(parents=True)
    with (target / "messages.po").open("wb") as fh:
        write_po(fh, catalog)
    return tmp_path / "translations"


DRAFT_NOTE = "This translation is a draft"


@pytest.mark.parametrize(("status", "draft"), [
    ("draft — needs review by a native speaker", True),
    (None, True),  # no status line: treated as a draft, never as reviewed
    ("reviewed by A. Reviewer, 2026-12-01", False),
])
def test_draft_language_pages_say_so(settings, store, desk, private_tmpdir, tmp_path,
                                     status, draft):
    from fastapi.testclient import TestClient

    from app.web.app import create_app

    directory = _po_catalog(tmp_path, "ug", status)
    client = TestClient(create_app(settings, store=store, translations_dir=directory))
    for path in ("/ug/", "/ug/submit", "/ug/return"):
        page = client.get(path).text
        assert "تېز ئايرىلىش" in page
        assert (DRAFT_NOTE in page) is draft, path
    assert DRAFT_NOTE not in client.get("/").text  # English is the source, never a draft
    catalogs = Catalogs(directory)
    assert catalogs.is_draft("ug") is draft
    assert catalogs.review_status("ug") == (status or "draft — no review status in the catalog")


@pytest.mark.parametrize("path", ["/ug//evil.example/x", "/ug/\\evil.example/x",
                                  "//evil.example/x", "/ug///evil.example"])
def test_language_links_never_leave_the_site(settings, store, desk, private_tmpdir, tmp_path,
                                             path):
    from fastapi.testclient import TestClient

    from app.web.app import create_app

    directory = _po_catalog(tmp_path, "ug", "draft — needs review by a native speaker")
    client = TestClient(create_app(settings, store=store, translations_dir=directory),
                        raise_server_exceptions=False)
    page = client.get(path).text
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert hrefs
    for href in hrefs:
        assert href.startswith("/") and not href.startswith(("//", "/\\")), href
        assert urlsplit(href.replace("\\", "/")).netloc == "", href


def test_self_check_prints_each_language_status(tmp_path):
    from app.server_cli import main as server_main

    directory = _po_catalog(tmp_path, "kk", "draft — needs review by a native speaker")
    lines = dict(server_main.language_report(directory))
    assert lines == {
        "language en (English): source language": False,
        "language kk (қазақша): draft — needs review by a native speaker": True,
    }
