"""Write the protocol vectors for the browser code from their Python owners.

    .venv/bin/python tests/make_protocol_vectors.py

- tests/vectors/testimony.json, from app/protocol/testimony.py: testimony documents, each
  with the validator's verdict (``valid``, ``error``: the one-line reason) and, when valid,
  the document as parsed (``parsed``), its compact UTF-8 JSON (``json``, what
  ``JSON.stringify(parsed)`` must write too) and the length after padding with spaces.
- tests/vectors/age-sizes.json, from app/crypto/stream.py and app/crypto/padding.py: the
  Padmé size, the STREAM payload size and the whole age file size (for a given header length)
  of plaintexts of many sizes, and the plaintext length of payload sizes, or null where no
  age payload has that size.

tests/test_protocol_vectors.py checks that the committed files equal what this writes, that
the sizes match real encryption, and runs the browser modules (app/web/js) against both.
Rerun and commit after any change to the document's rules or to the size arithmetic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.crypto.header import MAX_HEADER_BYTES
from app.crypto.padding import MIN_PADDED, padme
from app.crypto.stream import CHUNK, NONCE_SIZE, TAG, payload_size, plaintext_length
from app.protocol.testimony import FORMAT, Testimony, TestimonyError

VECTORS = Path(__file__).resolve().parent / "vectors"
TESTIMONY = VECTORS / "testimony.json"
SIZES = VECTORS / "age-sizes.json"

DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
ANSWERS = {"where": "", "when": "", "consent": "", "never_name": ""}


def _browser(**changes: Any) -> dict[str, Any]:
    """A document as the witness's browser builds it, with ``changes`` applied."""
    doc: dict[str, Any] = {
        "format": FORMAT, "protection": "browser-encrypted", "day": "2026-11-29",
        "desk": "default", "lang": "en", "testimony": "I saw it.", "answers": dict(ANSWERS),
        "files": [], "reply_recipient": RECIPIENT, "parent_id": None,
    }
    doc.update(changes)
    return doc


def _file(role: str = "file-1", **changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": role, "name": "photo.jpg", "content_type": "image/jpeg",
                             "size": 123456, "sha256": DIGEST}
    entry.update(changes)
    return entry


def _without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in keys}


VALID: list[tuple[str, object]] = [
    ("browser, no files", _browser()),
    ("browser, two files", _browser(files=[_file(), _file("file-2", name="a.pdf", size=0,
                                                           content_type="application/pdf")])),
    ("server-sealed, answers filled", _browser(
        protection="server-sealed", lang="ug",
        answers={"where": "Kashgar", "when": "2017", "consent": "ask", "never_name": "x"})),
    ("follow-up linked by the server", _browser(parent_id="Zr4_kq-9XvTq0B1cYw3mAA")),
    ("text that JSON must escape", _browser(
        testimony='quote " backslash \\ newline \n tab \t bell \u0007 del \u007f '
                  "line-sep \u2028 para-sep \u2029 end")),
    ("text in other scripts", _browser(
        testimony="يېزىق — Қазақша — русский — 中文 — Türkçe — 🕊️", desk="desk-2",
        files=[_file(name="رەسىم 1.jpg")])),
    ("file number 9999", _browser(files=[_file("file-9999")])),
    ("earlier server-sealed shape: no format, text in the answers, unknown keys ignored", {
        "guwah": 1, "protection": "server-sealed", "day": "2026-11-26", "desk": "default",
        "answers": {"testimony": "the sealed text", "where": "Kashgar"},
        "files": [_file()], "reply_recipient": RECIPIENT}),
    ("no field at all (every field has a default)", {}),
    ("file entry without name or content type", _browser(
        files=[_without(_file(), "name", "content_type")])),
]

INVALID: list[tuple[str, object]] = [
    ("a list", [_browser()]),
    ("a string", "I saw it."),
    ("null", None),
    ("another format", _browser(format="guwah-testimony/2")),
    ("testimony not text", _browser(testimony=12)),
    ("testimony null", _browser(testimony=None)),
    ("protection null", _browser(protection=None)),
    ("desk a number", _browser(desk=1)),
    ("answers a list", _browser(answers=["Kashgar"])),
    ("an answer not text", _browser(answers={"where": 1})),
    ("files an object", _browser(files={"file-1": _file()})),
    ("files null", _browser(files=None)),
    ("a file entry not an object", _browser(files=["file-1"])),
    ("role message", _browser(files=[_file("message")])),
    ("role file-0", _browser(files=[_file("file-0")])),
    ("role file-01", _browser(files=[_file("file-01")])),
    ("role file-10000", _browser(files=[_file("file-10000")])),
    ("role with a trailing newline", _browser(files=[_file("file-1\n")])),
    ("no role", _browser(files=[_without(_file(), "role")])),
    ("a role twice", _browser(files=[_file(), _file()])),
    ("size negative", _browser(files=[_file(size=-1)])),
    ("size a boolean", _browser(files=[_file(size=True)])),
    ("size a fraction", _browser(files=[_file(size=1.5)])),
    ("size text", _browser(files=[_file(size="123456")])),
    ("no size", _browser(files=[_without(_file(), "size")])),
    ("sha256 upper case", _browser(files=[_file(sha256=DIGEST.upper())])),
    ("sha256 too short", _browser(files=[_file(sha256=DIGEST[:-1])])),
    ("no sha256", _browser(files=[_without(_file(), "sha256")])),
    ("name not text", _browser(files=[_file(name=None)])),
    ("parent_id a number", _browser(parent_id=7)),
    ("parent_id not an id", _browser(parent_id="../etc")),
]


def _case(name: str, doc: object) -> dict[str, Any]:
    try:
        parsed = Testimony.parse(doc)
    except TestimonyError as exc:
        return {"name": name, "document": doc, "valid": False, "error": str(exc)}
    body = parsed.to_bytes()
    return {"name": name, "document": doc, "valid": True, "error": None,
            "parsed": parsed.to_json(), "json": body.decode("utf-8"),
            "json_bytes": len(body), "padded_bytes": len(parsed.padded())}


def testimony_vectors() -> dict[str, Any]:
    return {
        "about": "Testimony documents (docs/formats.md section 5) with the verdict of "
                 "app/protocol/testimony.py; written by tests/make_protocol_vectors.py.",
        "format": FORMAT,
        "documents": [_case(n, d) for n, d in VALID + INVALID],
    }


PLAINTEXTS = [0, 1, 255, 256, 257, 1000, 4096, 65535, 65536, 65537, 65552, 131072, 200_000,
              1 << 20, (1 << 20) + 1, 10_000_000, 123_456_789, (1 << 31) - 1, 1 << 32,
              5 * 10**10, (1 << 40) + 3]
HEADERS = [150, 1205]  # one X25519 stanza; a typical hybrid header
PAYLOADS = [0, 15, 16, 31, 32, 33, 16 + 256 + 16, 16 + 65536 + 16, 16 + 65536 + 16 + 15,
            16 + 65536 + 16 + 16, 16 + 65536 + 16 + 17, 16 + 2 * (65536 + 16),
            payload_size(padme(1_000_000)), payload_size(padme(1_000_000)) - 1,
            payload_size(1_000_000)]


def size_vectors() -> dict[str, Any]:
    sizes = []
    for i, plain in enumerate(PLAINTEXTS):
        header = HEADERS[i % len(HEADERS)]
        padded = padme(plain)
        sizes.append({"plaintext": plain, "padded": padded, "payload": payload_size(padded),
                      "header": header, "ciphertext": header + payload_size(padded)})
    payloads = []
    for payload in PAYLOADS:
        plain = plaintext_length(payload)
        payloads.append({"payload": payload, "plaintext": plain,
                         "padded": plain is not None and padme(plain) == plain})
    return {
        "about": "age file sizes from app/crypto/stream.py and app/crypto/padding.py; "
                 "ciphertext = header + payload of the Padme-padded plaintext; written by "
                 "tests/make_protocol_vectors.py.",
        "constants": {"chunk": CHUNK, "tag": TAG, "nonce": NONCE_SIZE,
                      "max_header": MAX_HEADER_BYTES, "min_padded": MIN_PADDED},
        "sizes": sizes,
        "payloads": payloads,
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def main() -> None:
    TESTIMONY.write_text(render(testimony_vectors()), "utf-8")
    SIZES.write_text(render(size_vectors()), "utf-8")
    print(f"wrote {TESTIMONY.name} and {SIZES.name}")


if __name__ == "__main__":
    main()
