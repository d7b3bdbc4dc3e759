"""The browser's upload client (app/web/js/upload-client.js) agrees with the Python owners.

Run under node through tests/js/upload-client-check.mjs:
- ``ciphertextSize(header, n)``, which the browser announces as the tus Upload-Length before
  the first byte is sent, equals the length of a real age file (app.crypto) of ``n``
  plaintext bytes padded with padme, for X25519 and hybrid recipients, at the 64 KiB chunk
  edges; ``payloadSize`` is the STREAM arithmetic of the age spec;
- ``testimonyDocument`` builds what the editor's validator (``check_testimony``) accepts, with
  the fields of docs/formats.md §5;
- when the generated vectors exist (tests/vectors/age-sizes.json, tests/vectors/testimony.json,
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
from app.editor.layout import check_testimony

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
    assert check_testimony(doc) is doc
    assert set(doc) == DOC_KEYS
    assert doc["format"] == "guwah-testimony/1" and doc["protection"] == "browser-encrypted"
    assert doc["parent_id"] is None  # the server links follow-ups; the browser never knows
    assert doc["answers"] == fields["answers"]
    assert doc["files"] == [{k: v for k, v in fields["files"][0].items() if k != "upload"}]
    assert doc["reply_recipient"] == "age1qqqq" and doc["testimony"] == fields["testimony"]


def _cases(name: str) -> list[dict[str, Any]]:
    path = VECTORS / name
    if not path.is_file():
        pytest.skip(f"tests/vectors/{name} is not generated yet")
    data = json.loads(path.read_text("utf-8"))
    return list(data["cases"] if isinstance(data, dict) else data)


def test_generated_size_vectors() -> None:
    """Cases {"plaintext": n, "payload": bytes} from app.crypto's payload_size."""
    cases = _cases("age-sizes.json")
    answer = run_client({"payload": [c["plaintext"] for c in cases]})
    assert answer["payload"] == [c["payload"] for c in cases]


def test_generated_testimony_vectors() -> None:
    """Cases {"fields": testimonyDocument's input, "document": the Python owner's document}."""
    cases = [c for c in _cases("testimony.json") if "fields" in c]
    answer = run_client({"documents": [c["fields"] for c in cases]})
    assert answer["documents"] == [c["document"] for c in cases]
