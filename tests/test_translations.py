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


def _settings_with(data_dir: Path, toml: str):  # type: ignore[no-untyped-def]
    """Settings read from a real guwah.toml (what an operator writes)."""
    from app.settings import load_settings

    data_dir.mkdir(mode=0o700, exist_ok=True)
    (data_dir / "guwah.toml").write_text(toml, encoding="utf-8")
    return load_settings(data_dir)


def test_self_check_prints_each_language_status(tmp_path):
    from app.server_cli import main as server_main

    directory = _po_catalog(tmp_path, "kk", "draft — needs review by a native speaker")
    settings = _settings_with(tmp_path / "data", "")
    lines = dict(server_main.language_report(settings, directory))
    assert lines == {
        "language en (English) (default): source language": False,
        "language kk (қазақша): draft — needs review by a native speaker": True,
    }


def test_self_check_prints_only_enabled_languages(tmp_path):
    from app.server_cli import main as server_main

    settings = _settings_with(tmp_path / "data",
                              'languages = ["ug", "ru"]\ndefault_language = "ug"\n')
    lines = [line for line, _ in server_main.language_report(settings)]
    assert [line.split(":")[0] for line in lines] == [
        "language ug (ئۇيغۇرچە) (default)", "language ru (русский)"]
    # the real command, on a real data dir: the same two languages and nothing else
    cli = Path(sys.executable).with_name("guwah")
    result = subprocess.run([str(cli), "self-check", "--data-dir", str(tmp_path / "data")],
                            capture_output=True, text=True, env={"TMPDIR": str(tmp_path),
                                                                 "PATH": "/usr/bin:/bin"})
    shown = re.findall(r"language (\w+) \(", result.stdout)
    assert shown == ["ug", "ru"], result.stdout + result.stderr


@pytest.mark.parametrize(("toml", "error"), [
    ('languages = ["ug", "xx"]\n', "unknown language 'xx'"),
    ('languages = ["ug", "ru"]\n', "default_language 'en' is not an enabled language"),
    ('default_language = "fr"\n', "default_language 'fr'"),
])
def test_operator_language_mistakes_are_one_sentence(tmp_path, toml, error):
    from app.settings import SettingsError
    from app.web.i18n import catalogs_for

    settings = _settings_with(tmp_path / "data", toml)
    with pytest.raises(SettingsError, match=re.escape(error)):
        catalogs_for(settings)


def _client_for(settings, store, toml: str):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from app.settings import load_settings
    from app.web.app import create_app

    (settings.data_dir / "guwah.toml").write_text(toml, encoding="utf-8")
    configured = load_settings(settings.data_dir, database_url=settings.database_url)
    return TestClient(create_app(configured, store=store), raise_server_exceptions=False)


def _html_lang(page: str) -> str:
    found = re.search(r'<html lang="([^"]+)" dir="(\w+)">', page)
    assert found, page[:200]
    return found.group(1)


def test_operator_sets_enabled_languages_and_default(settings, store, desk, private_tmpdir):
    client = _client_for(settings, store,
                         'languages = ["en", "ru", "ug"]\ndefault_language = "ru"\n')
    home = client.get("/")
    assert home.status_code == 200 and _html_lang(home.text) == "ru"
    # the picker offers exactly the enabled languages; the default has no prefix
    picker = re.search(r'<nav class="langs".*?</nav>', home.text, re.S)
    assert picker is not None
    assert sorted(set(re.findall(r' lang="([^"]+)"', picker.group(0)))) == ["en", "ru", "ug-Arab"]
    assert 'href="/en/"' in picker.group(0) and 'href="/ug/"' in picker.group(0)
    assert 'action="/submit"' in client.get("/submit").text  # the default: no prefix
    english = client.get("/en/submit").text
    assert _html_lang(english) == "en" and 'action="/en/submit"' in english
    assert 'href="/en/return"' in english  # every link keeps the language
    # a disabled language behaves like an unknown one: the default, never a 404
    for path in ("/kk/submit", "/tr/", "/zh_Hans/return", "/submit?lang=kk", "/?lang=xx"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert _html_lang(response.text) == "ru", path
    assert "қазақша" not in home.text and "Türkçe" not in home.text


def test_all_shipped_languages_by_default(settings, store, desk, private_tmpdir):
    client = _client_for(settings, store, "")
    page = client.get("/").text
    assert _html_lang(page) == "en"
    for code in KNOWN:
        prefix = "" if code == "en" else "/" + code
        assert f'href="{prefix}/"' in page, code
        assert _html_lang(client.get(prefix + "/").text) == KNOWN[code].tag


def test_plural_forms_follow_cldr(web_client):
    """Counts the script computes are worded by CLDR category: Russian has three integer
    forms, Chinese one; each form rendered for the script is translated."""
    from app.web.i18n import plural_samples

    assert plural_samples("ru") == [("few", 2), ("many", 0), ("one", 1)]
    assert plural_samples("zh_Hans") == [("other", 0)]
    assert plural_samples("en") == [("one", 1), ("other", 0)]
    page = web_client.get("/ru/submit").text
    assert 'data-text-one="Приложен {n} файл."' in page
    assert 'data-text-few="Приложено {n} файла."' in page
    assert 'data-text-many="Приложено {n} файлов."' in page
    assert "около {minutes} минуты" in page and "около {minutes} минут " in page
    english = web_client.get("/submit").text
    assert 'data-text-one="{n} file was attached."' in english
    assert 'data-text-other="{n} files were attached."' in english
    assert "data-text-one" not in web_client.get("/zh_Hans/submit").text


def test_inserted_values_are_isolated(web_client):
    """A size, a date or a desk name inside a right-to-left sentence sits in <bdi>."""
    page = web_client.get("/ug/submit").text
    assert re.search(r"<bdi>\d+(\.\d)? GB</bdi>", page)
    assert re.search(r"<bdi>[^<]+</bdi>", page.split('class="desk-one"')[1])
    assert re.search(r'<label for="files">[^<]*<bdi>\d+</bdi>', page)  # a count, too


def test_tor_guidance_page_in_every_language(web_client):
    for lang in KNOWN.values():
        prefix = "" if lang.code == "en" else "/" + lang.code
        landing = web_client.get(prefix + "/").text
        assert f'href="{prefix}/tor"' in landing, lang.code
        response = web_client.get(prefix + "/tor")
        assert response.status_code == 200
        page = response.text
        assert f'<html lang="{lang.tag}" dir="{lang.dir}">' in page
        for needed in ("Snowflake", "obfs4", "gettor@torproject.org", "bridges@torproject.org",
                       "Safest", "<bdi>torproject.org</bdi>"):
            assert needed in page, (lang.code, needed)
        # guidance only: nothing on this page is fetched from another origin
        fetched = re.findall(r'(?:src|href)="([^"]*)"', page)
        assert fetched and all(url.startswith("/") and not url.startswith("//")
                               for url in fetched), fetched


def test_witness_text_fields_take_their_direction_from_the_text():
    """What a witness types (in any script) sits in dir="auto" fields on every page."""
    templates = Path(__file__).resolve().parents[1] / "templates"
    fields = []
    for path in templates.glob("*.html"):
        text = path.read_text(encoding="utf-8")
        fields += [(path.name, tag) for tag in re.findall(r"<textarea[^>]*>|<input[^>]*>", text)
                   if ("<textarea" in tag or 'type="text"' in tag)
                   and 'name="website"' not in tag]  # the honeypot: no witness types there
    assert fields
    assert [f for f in fields if 'dir="auto"' not in f[1]] == []
