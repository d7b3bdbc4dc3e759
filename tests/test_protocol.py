"""app/protocol: the formats and rules server, editor and browser share, each with one owner."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from nacl.signing import SigningKey

from app.crypto import HybridIdentity, X25519Identity, padme
from app.protocol import editorkey
from app.protocol import testimony as tm
from app.protocol.followup import first_submission
from app.protocol.ids import FILE_ROLE, ROLE, is_a

DIGEST = "ab" * 32


def _doc(**changes: object) -> tm.Testimony:
    fields: dict = {"protection": tm.SERVER_SEALED, "desk": "default", "day": "2026-11-29",
                    "lang": "ug", "testimony": "يېزىق\n", "answers": {"where": "Kashgar"},
                    "files": (tm.DescribedFile("file-1", "p.png", "image/png", 5, DIGEST),),
                    "reply_recipient": str(X25519Identity.generate().recipient())}
    fields.update(changes)
    return tm.Testimony(**fields)


def test_built_document_is_padded_json_that_parses_back() -> None:
    doc = _doc(parent_id="Zr4_kq-9XvTq0B1cYw3mAA")
    body = doc.padded()
    assert len(body) == padme(len(doc.to_bytes())) and body.endswith(b" ")
    assert body.startswith(b'{"format":"guwah-testimony/1","protection":"server-sealed",')
    assert "يېزىق".encode() in body  # UTF-8, not \\u escapes
    assert tm.Testimony.from_bytes(body) == doc


@pytest.mark.parametrize("changes", [
    {"desk": None},
    {"answers": {"where": 1}},
    {"files": (tm.DescribedFile("file-1", "a", "", 1, DIGEST),) * 2},
    {"files": [tm.DescribedFile("file-1", "a", "", 1, DIGEST)]},
    {"parent_id": "not/an/id"},
])
def test_building_a_wrong_document_is_refused_like_reading_one(changes: dict) -> None:
    with pytest.raises(tm.TestimonyError):
        _doc(**changes)


@pytest.mark.parametrize("entry", [("message", 1, DIGEST), ("file-0", 1, DIGEST),
                                   ("file-1", -1, DIGEST), ("file-1", True, DIGEST),
                                   ("file-1", 1, DIGEST.upper())])
def test_described_file_checks(entry: tuple) -> None:
    role, size, digest = entry
    with pytest.raises(tm.TestimonyError, match="malformed"):
        tm.DescribedFile(role, "", "", size, digest)


def test_not_json_is_one_clear_reason() -> None:
    for body in (b"\xff\xfe", b"{", b"[" * 30000):
        with pytest.raises(tm.TestimonyError, match="not UTF-8 JSON"):
            tm.Testimony.from_bytes(body)


def test_file_role_is_the_attachment_part_of_role() -> None:
    assert is_a(FILE_ROLE, "file-12") and not is_a(FILE_ROLE, "message")
    assert is_a(ROLE, "message") and ROLE.fullmatch("file-12").group(1) == "12"
    assert not is_a(FILE_ROLE, "file-1\n")


# ------------------------------------------------------------------ editor public key file


def _key() -> editorkey.EditorKey:
    return editorkey.EditorKey("Dilnur", str(HybridIdentity.generate().recipient()),
                               bytes(SigningKey.generate().verify_key))


def test_editor_key_file_round_trip() -> None:
    key = _key()
    text = key.to_text()
    assert f"fingerprint: {key.fingerprint}\n" in text
    assert editorkey.EditorKey.from_text(text) == key


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda t: t.replace("name:", "nom:"), "no 'name' line"),
    (lambda t: t.replace("ed25519: ", "ed25519: !"), "not base64"),
    (lambda t: t.replace("age-recipient: age1", "age-recipient: age2"), "age-recipient"),
    (lambda t: t.replace("fingerprint: ", "fingerprint: x"), "altered"),
    (lambda t: t + "just a line\n", "without 'field: value'"),
])
def test_editor_key_file_errors(edit: object, reason: str) -> None:
    with pytest.raises(editorkey.EditorKeyError, match=reason):
        editorkey.EditorKey.from_text(edit(_key().to_text()))  # type: ignore[operator]


# ------------------------------------------------------------------ a mailbox's first submission


@dataclass
class Sub:
    id: str
    parent_id: str | None


def test_first_submission_is_the_one_linking_to_none() -> None:
    assert first_submission([]) is None
    mailbox = [Sub("b", "a"), Sub("a", None), Sub("c", "a")]
    assert first_submission(mailbox).id == "a"
    # a mailbox whose first submission was deleted: the first listed
    assert first_submission([Sub("b", "a"), Sub("c", "a")]).id == "b"
