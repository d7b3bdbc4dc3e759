"""The browser's upload client (app/web/js/upload-client.js) agrees with the Python owners.

Run under node through tests/js/upload-client-check.mjs:
- ``ciphertextSize(header, n)``, which the browser announces as the tus Upload-Length before
  the first byte is sent, equals the length of a real age file (app.crypto) of ``n``
  plaintext bytes padded with padme, for X25519 and hybrid recipients, at the 64 KiB chunk
  edges; ``payloadSize`` is the STREAM arithmetic of the age spec;
- ``testimonyDocument`` builds what the one validator (``app.protocol.testimony``) accepts, with
  the fields of docs/formats.md §5;
- against the generated vectors (tests/vectors/age-sizes.json, tests/vectors/testimony.json,
  written from the Python owners), every case in them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.crypto import HybridIdentity, X25519Identity, encrypt, padme
from app.protocol import testimony

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "tests" / "js" / "upload-client-check.mjs"
VECTORS = ROOT / "tests" / "vectors"
SIZES = [0, 1, 255, 256, 257, 65535, 65536, 65537, 2 * 65536, (1 << 20) + 3, 5_000_001]
DOC_KEYS = {"format", "protection", "day", "desk", "lang", "testimony", "answers", "files",
            "reply_recipient", "parent_id"}


def run_client(ask: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Debian: apt-get install nodejs npm)")
    if not (ROOT / "node_modules" / "age-encryption").is_dir():
        pytest.fail("node_modules is missing: run npm ci in the repository root")
    done = subprocess.run([node, str(CHECK)], input=json.dumps(ask), capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def header_length(age_file: bytes) -> int:
    end = age_file.index(b"\n--- ")
    return age_file.index(b"\n", end + 1) + 1


@pytest.mark.parametrize("kind", ["X25519", "mlkem768x25519"])
def test_announced_size_is_the_real_ciphertext_size(kind: str) -> None:
    identity = X25519Identity.generate() if kind == "X25519" else HybridIdentity.generate()
    real = []
    for n in SIZES:
        padded = bytes(n) + bytes(padme(n) - n)
        age_file = encrypt(padded, [identity.recipient()])
        real.append((header_length(age_file), n, len(age_file)))
    answer = run_client({"ciphertext": [[h, n] for h, n, _ in real]})
    assert answer["ciphertext"] == [size for _, _, size in real]


def test_payload_size_follows_the_age_stream() -> None:
    answer = run_client({"payload": SIZES})
    for n, size in zip(SIZES, answer["payload"], strict=True):
        chunks = max(1, -(-n // 65536))
        assert size == 16 + n + 16 * chunks, n


def test_testimony_document_passes_the_editors_check() -> None:
    fields = {
        "day": "2026-03-01", "desk": "Newsroom", "lang": "ug", "testimony": "ئۇلار كەلدى\nline 2",
        "answers": {"where": "market", "when": "", "consent": "yes", "never_name": "A."},
        "files": [{"role": "file-1", "name": "photo.jpg", "content_type": "image/jpeg",
                   "size": 1234, "sha256": "ab" * 32, "upload": "must-not-appear"}],
        "replyRecipient": "age1qqqq",
    }
    [doc] = run_client({"documents": [fields]})["documents"]
    assert testimony.Testimony.parse(doc).to_json() == doc  # the one validator (app.protocol) accepts it, unchanged
    assert set(doc) == DOC_KEYS
    assert doc["format"] == "guwah-testimony/1" and doc["protection"] == "browser-encrypted"
    assert doc["parent_id"] is None  # the server links follow-ups; the browser never knows
    assert doc["answers"] == fields["answers"]
    assert doc["files"] == [{k: v for k, v in fields["files"][0].items() if k != "upload"}]
    assert doc["reply_recipient"] == "age1qqqq" and doc["testimony"] == fields["testimony"]


def _vectors(name: str) -> dict[str, Any]:
    """A vector file written by tests/make_protocol_vectors.py from the Python owners."""
    return dict(json.loads((VECTORS / name).read_text("utf-8")))


def test_generated_size_vectors() -> None:
    """tests/vectors/age-sizes.json (app.crypto.stream's payload_size of each padded length):
    the browser's payloadSize gives the same bytes, and ciphertextSize the same total."""
    sizes = _vectors("age-sizes.json")["sizes"]
    answer = run_client({
        "payload": [c["padded"] for c in sizes],
        "ciphertext": [[c["header"], c["plaintext"]] for c in sizes],
    })
    assert answer["payload"] == [c["payload"] for c in sizes]
    assert answer["ciphertext"] == [c["ciphertext"] for c in sizes]


def test_generated_testimony_vectors() -> None:
    """Every valid browser-encrypted document of tests/vectors/testimony.json (app.protocol's
    validator) is exactly what testimonyDocument builds from its fields."""
    docs = [v["parsed"] for v in _vectors("testimony.json")["documents"]
            if v["valid"] and v["parsed"].get("protection") == "browser-encrypted"
            and v["parsed"].get("parent_id") is None]
    assert docs, "the vectors hold browser-encrypted documents"
    fields = [{"day": d["day"], "desk": d["desk"], "lang": d["lang"], "testimony": d["testimony"],
               "answers": d["answers"], "files": d["files"],
               "replyRecipient": d["reply_recipient"]} for d in docs]
    answer = run_client({"documents": fields})
    assert answer["documents"] == docs
