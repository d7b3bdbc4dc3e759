"""The testimony document (docs/formats.md §5): the witness's words and the list of their files.

One validator for both directions: the server builds a :class:`Testimony` for JavaScript-off
submissions (app/web/sealing.py), the editor tool parses what it decrypted with
:meth:`Testimony.parse` (app/editor/layout.py), and both run the same ``__post_init__`` checks.
The browser builds the same document; tests/vectors/testimony.json, written from this module
by tests/make_protocol_vectors.py, holds documents with this validator's verdict for its tests.

Reading is lenient where documents written by earlier versions differ (no ``format``, the text
inside ``answers``, keys this version does not know) and strict on what the editor relies on:
the file list (roles, sizes, digests), which must match the bundle exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.crypto.padding import padme

from .ids import FILE_ROLE, HEX64, ID, is_a

FORMAT = "guwah-testimony/1"
BROWSER_ENCRYPTED = "browser-encrypted"  # the witness's browser encrypted every part
SERVER_SEALED = "server-sealed"  # JavaScript was off: the server sealed each part in memory
CONSENT = ("", "yes", "no", "ask")  # the form's choices (the reader accepts any text)
TEXT_KEYS = ("protection", "desk", "day", "lang", "testimony", "reply_recipient")
FILL = b" "  # padding after the JSON: it stays valid JSON for plain ``age -d``


class TestimonyError(ValueError):
    """The document does not have the shape of §5; str() is one line saying which part."""


@dataclass(frozen=True)
class DescribedFile:
    """One attachment as the witness's side recorded it (size and SHA-256 before padding)."""

    role: str
    name: str
    content_type: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        ok = (
            is_a(FILE_ROLE, self.role)
            and isinstance(self.name, str) and isinstance(self.content_type, str)
            and isinstance(self.size, int) and not isinstance(self.size, bool)
            and self.size >= 0
            and is_a(HEX64, self.sha256)
        )
        if not ok:
            raise TestimonyError("the testimony describes a file in a malformed or repeated entry")

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "name": self.name, "size": self.size, "sha256": self.sha256,
                "content_type": self.content_type}


@dataclass(frozen=True)
class Testimony:
    """A testimony document; constructing one checks it (raises :class:`TestimonyError`)."""

    protection: str = ""
    desk: str = ""
    day: str = ""
    lang: str = ""
    testimony: str = ""
    answers: Mapping[str, str] = field(default_factory=dict)
    files: tuple[DescribedFile, ...] = ()
    reply_recipient: str = ""
    parent_id: str | None = None

    def __post_init__(self) -> None:
        for key in TEXT_KEYS:
            if not isinstance(getattr(self, key), str):
                raise TestimonyError(f"the testimony's {key!r} is not text")
        if not isinstance(self.answers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.answers.items()
        ):
            raise TestimonyError("the testimony's answers are not text")
        if not isinstance(self.files, tuple) or not all(
            isinstance(f, DescribedFile) for f in self.files
        ):
            raise TestimonyError("the testimony's file list is not a list")
        if len({f.role for f in self.files}) != len(self.files):
            raise TestimonyError("the testimony describes a file in a malformed or repeated entry")
        if self.parent_id is not None and not is_a(ID, self.parent_id):
            raise TestimonyError("the testimony's parent_id is not a submission id")

    @classmethod
    def parse(cls, doc: object) -> Testimony:
        """The testimony in a decoded JSON value; raises :class:`TestimonyError`."""
        if not isinstance(doc, dict):
            raise TestimonyError("the testimony is not a JSON object")
        if doc.get("format", FORMAT) != FORMAT:
            raise TestimonyError(f"unknown testimony format {str(doc.get('format'))[:40]!r}")
        answers = doc.get("answers", {})
        if not isinstance(answers, dict):
            raise TestimonyError("the testimony's answers are not text")
        text = doc.get("testimony", "")
        if "testimony" not in doc:  # written by earlier servers: the text inside the answers
            text = answers.get("testimony", "")
            text = text if isinstance(text, str) else ""
        files = doc.get("files", [])
        if not isinstance(files, list):
            raise TestimonyError("the testimony's file list is not a list")
        return cls(
            **{k: doc.get(k, "") for k in TEXT_KEYS if k != "testimony"},
            testimony=text,
            answers={k: v for k, v in answers.items() if k != "testimony"},
            files=tuple(_described(f) for f in files),
            parent_id=doc.get("parent_id"),
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> Testimony:
        """Parse the decrypted ``message`` (UTF-8 JSON, then the padding spaces)."""
        try:
            doc = json.loads(body.rstrip(FILL).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise TestimonyError("the testimony is not UTF-8 JSON") from None
        return cls.parse(doc)

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in the order the server has always written them."""
        return {
            "format": FORMAT, "protection": self.protection, "day": self.day,
            "desk": self.desk, "lang": self.lang, "testimony": self.testimony,
            "answers": dict(self.answers), "files": [f.to_json() for f in self.files],
            "reply_recipient": self.reply_recipient, "parent_id": self.parent_id,
        }

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON (what the browser's ``JSON.stringify`` writes too)."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")).encode()

    def padded(self) -> bytes:
        """The plaintext of the ``message`` blob: the JSON, then spaces up to its Padmé size."""
        body = self.to_bytes()
        return body + FILL * (padme(len(body)) - len(body))


def _described(entry: object) -> DescribedFile:
    if not isinstance(entry, dict):
        raise TestimonyError("the testimony describes a file in a malformed or repeated entry")
    # a missing role, size or digest gets a value the checks refuse
    return DescribedFile(entry.get("role", ""), entry.get("name", ""),
                         entry.get("content_type", ""), entry.get("size", -1),
                         entry.get("sha256", ""))
