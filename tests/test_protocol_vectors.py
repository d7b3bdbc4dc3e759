"""The protocol vectors the browser code is checked against are current, true and met by it.

tests/make_protocol_vectors.py writes tests/vectors/testimony.json and age-sizes.json from
their Python owners (app/protocol/testimony.py, app/crypto/stream.py + padding.py). Here:
the committed files are what the generator writes now; the sizes are those of real age files;
and the browser modules (app/web/js/padding.js, upload-client.js), run under node, compute the
same sizes and serialize the testimony documents to the same bytes.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from app.crypto import Encryptor, X25519Identity, decrypt
from app.crypto.header import parse_header
from app.protocol import testimony as tm
from tests import make_protocol_vectors as gen

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "js" / "protocol-vectors.mjs"


def test_committed_vectors_are_what_the_generator_writes() -> None:
    for path, data in ((gen.TESTIMONY, gen.testimony_vectors()), (gen.SIZES, gen.size_vectors())):
        assert path.read_text("utf-8") == gen.render(data), (
            f"{path.name} is stale: run .venv/bin/python tests/make_protocol_vectors.py"
        )


def test_testimony_vectors_hold_both_verdicts() -> None:
    docs = json.loads(gen.TESTIMONY.read_text("utf-8"))["documents"]
    assert sum(d["valid"] for d in docs) >= 8 and sum(not d["valid"] for d in docs) >= 25
    for d in docs:
        if d["valid"]:
            parsed = tm.Testimony.parse(d["document"])
            assert parsed.to_json() == d["parsed"]
            assert tm.Testimony.from_bytes(parsed.padded()) == parsed  # padding comes off again
        else:
            with pytest.raises(tm.TestimonyError) as caught:
                tm.Testimony.parse(d["document"])
            assert str(caught.value) == d["error"]


@pytest.mark.parametrize("plain", [0, 1, 255, 256, 257, 65535, 65536, 65537, 200_000])
def test_sizes_are_those_of_real_age_files(plain: int) -> None:
    """Encrypt a padded plaintext for real: header plus the vector's payload is its length."""
    identity = X25519Identity.generate()
    (vector,) = [v for v in gen.size_vectors()["sizes"] if v["plaintext"] == plain]
    padded = b"x" * plain + b"\0" * (vector["padded"] - plain)
    out = io.BytesIO()
    with Encryptor([identity.recipient()], out) as enc:
        enc.write(padded)
    data = out.getvalue()
    src = io.BytesIO(data)
    _, rest = parse_header(src)
    header = src.tell() - len(rest)
    assert len(data) - header == vector["payload"]
    assert decrypt(data, [identity]) == padded


def test_payload_lengths_invert_the_sizes() -> None:
    sizes = gen.size_vectors()
    for v in sizes["sizes"]:
        payloads = [p for p in sizes["payloads"] if p["payload"] == v["payload"]]
        for p in payloads:
            assert p["plaintext"] == v["padded"] and p["padded"]
    refused = [p for p in sizes["payloads"] if p["plaintext"] is None]
    assert len(refused) >= 5


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Debian: apt-get install nodejs)")
    return node


def test_browser_modules_agree_with_the_vectors() -> None:
    proc = subprocess.run([_node(), str(RUNNER)], capture_output=True, timeout=60, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    got = json.loads(proc.stdout)
    for v, js in zip(gen.size_vectors()["sizes"], got["sizes"], strict=True):
        assert js == {"plaintext": v["plaintext"], "padded": v["padded"],
                      "padding": v["padded"] - v["plaintext"], "ciphertext": v["ciphertext"]}
    valid = [d for d in json.loads(gen.TESTIMONY.read_text("utf-8"))["documents"] if d["valid"]]
    for v, js in zip(valid, got["testimony"], strict=True):
        assert js == {"name": v["name"], "json": v["json"], "json_bytes": v["json_bytes"],
                      "padded_bytes": v["padded_bytes"]}
