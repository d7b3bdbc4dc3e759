"""The codename's written format: check word, numeric form, same KDF input as before.

tests/vectors/codename-format.json is written by app/crypto/codename.py
(tests/make_codename_vectors.py); the browser module is checked against the same file in
tests/test_browser_bundle.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.crypto import codename
from app.crypto.codename import Codename, CodenameError
from app.crypto.mailbox import derive_mailbox, new_codename, normalize_codename
from app.web.errors import MSG

ROOT = Path(__file__).resolve().parent.parent
FORMAT = json.loads((ROOT / "tests" / "vectors" / "codename-format.json").read_text("utf-8"))
MAILBOX = json.loads((ROOT / "tests" / "vectors" / "mailbox.json").read_text("utf-8"))


@pytest.mark.parametrize("case", FORMAT, ids=lambda c: repr(c["input"])[:40])
def test_python_matches_the_format_vectors(case: dict) -> None:
    if case["error"] is None:
        c = codename.parse(case["input"])
        assert (c.kdf_input, c.as_words, c.as_numbers) == (
            case["kdf_input"], case["words"], case["numbers"])
    else:
        with pytest.raises(CodenameError) as info:
            codename.parse(case["input"])
        assert info.value.code == case["error"] and str(info.value)


def test_vectors_cover_every_outcome() -> None:
    assert {c["error"] for c in FORMAT} == {None, "check", "count", "number", "word"}
    assert any("\u0660" in c["input"] and c["error"] is None for c in FORMAT)
    assert any("\u06f0" in c["input"] and c["error"] is None for c in FORMAT)
    assert any("\uff10" in c["input"] and c["error"] is None for c in FORMAT)


def test_every_single_word_typo_is_caught() -> None:
    """Any one word replaced by any other word of the list: always refused as "check"."""
    c = codename.new()
    written = list(c.indices)
    wordlist = codename.words()
    for pos in range(8):
        for other in range(codename.LIST_SIZE):
            if other == written[pos]:
                continue
            typed = [wordlist[i] for i in written]
            typed[pos] = wordlist[other]
            with pytest.raises(CodenameError) as info:
                codename.parse(" ".join(typed))
            assert info.value.code == "check"


def test_random_errors_slip_through_about_once_in_7776() -> None:
    """Two wrong words at once: the check is a sum mod 7776, so ~1/7776 pass (measured)."""
    base = Codename((11, 22, 33, 44, 55, 66, 77))
    passed = 0
    trials = 0
    for a in range(0, codename.LIST_SIZE, 3):
        secret = (a, (a * 7) % codename.LIST_SIZE, 33, 44, 55, 66, 77)
        if secret == base.secret:
            continue
        trials += 1
        typed = " ".join(codename.words()[i] for i in (*secret, base.indices[7]))
        try:
            codename.parse(typed)
            passed += 1
        except CodenameError:
            pass
    assert passed <= trials * 3 / codename.LIST_SIZE + 2


def test_new_codenames_are_eight_words_and_90_bits_of_secret() -> None:
    seen = set()
    for _ in range(200):
        text = new_codename()
        parts = text.split(" ")
        assert len(parts) == 8
        c = codename.parse(text)
        assert c.as_words == text and len(c.secret) == 7
        seen.add(c.secret)
    assert len(seen) == 200
    assert 7 * (codename.LIST_SIZE.bit_length() - 1) >= 84  # 7 * log2(7776) = 90.5 bits


@pytest.mark.parametrize("v", MAILBOX[:4], ids=lambda v: v["kind"])
def test_the_kdf_input_is_unchanged(v: dict) -> None:
    """The check word and the numbers open the very same mailbox as the seven words."""
    c = codename.parse(v["codename"])
    arabic = c.as_numbers.translate(str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"))
    for typed in (v["codename"], c.as_words, c.as_numbers, arabic):
        assert normalize_codename(typed) == v["normalized"]
    assert derive_mailbox(arabic, v["kind"]).token_hash == v["token_hash"]


def test_numbers_are_four_digit_groups() -> None:
    c = Codename((0, 7775, 9, 99, 999, 1000, 5))
    assert re.fullmatch(r"(\d{4} ){7}\d{4}", c.as_numbers)
    assert c.as_numbers.startswith("0000 7775 0009 0099 0999 1000 0005 ")


# ------------------------------------------------------------------ the web pages


def _return(client, typed: str):
    page = client.get("/return")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/return", data={"csrf": csrf, "codename": typed})


@pytest.mark.database
def test_return_page_refuses_a_typo_and_answers_an_unused_codename_neutrally(web_client):
    c = codename.new()
    words = c.as_words.split()
    words[2] = codename.words()[(c.indices[2] + 1) % codename.LIST_SIZE]
    r = _return(web_client, " ".join(words))
    assert r.status_code == 422 and MSG["codename_check"] in r.text.replace("&#39;", "'")
    unused = _return(web_client, c.as_words)
    assert unused.status_code == 200 and 'id="no-replies"' in unused.text
    numbers = _return(web_client, c.as_numbers.translate(str.maketrans("0123456789",
                                                                       "\u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7\u06f8\u06f9")))
    assert numbers.status_code == 200 and 'id="no-replies"' in numbers.text
    r = _return(web_client, "7776 " * 8)
    assert r.status_code == 422 and MSG["codename_number"] in r.text


@pytest.mark.database
def test_receipt_shows_words_and_numbers_of_one_codename(web_client):
    page = web_client.get("/submit")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    parts = [("csrf", (None, csrf)), ("desk", (None, "default")), ("lang", (None, "en")),
             ("website", (None, "")), ("testimony", (None, "I saw it.")),
             ("kept_codename", (None, "yes"))]
    r = web_client.post("/submit", files=parts)
    assert r.status_code == 200
    words = re.search(r'id="codename"[^>]*>([^<]+)<', r.text).group(1)
    numbers = re.search(r'<bdi dir="ltr" id="codename-numbers">([^<]+)<', r.text).group(1)
    assert len(words.split()) == 8
    assert codename.parse(numbers) == codename.parse(words)
    assert "destroy the paper" in r.text
