"""The checks POST /api/submissions makes without keys, on real ciphertext from real tools.

Every honest file must pass: from app.crypto (X25519 and hybrid), from Debian's ``age`` CLI, and
(tests/test_browser_json.py) from the browser's npm age-encryption. Made-up headers, repeated
shares and plaintext behind a header must not. The server-level attacks are
tests/hostile/test_junk_commit.py.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
from dataclasses import dataclass, field

import pytest
from nacl.bindings import crypto_scalarmult_base

from app.crypto import HybridIdentity, X25519Identity, encrypt, padme
from app.crypto.x25519 import is_generated_share
from app.web.commit import Invalid, check_age_file, looks_random


@dataclass
class _Key:
    kind: str


@dataclass
class _Desk:
    kind: str
    recipients: list[_Key] = field(default_factory=list)


def _desk(kind: str, n: int = 1) -> _Desk:
    return _Desk(kind, [_Key(kind) for _ in range(n)])


def _check(data: bytes, desk: _Desk) -> str:
    return check_age_file(io.BytesIO(data), len(data), desk)


def test_every_generated_share_passes_and_random_bytes_mostly_do_not() -> None:
    assert all(is_generated_share(crypto_scalarmult_base(os.urandom(32))) for _ in range(2000))
    passed = sum(is_generated_share(os.urandom(32)) for _ in range(8000))
    assert 100 < passed < 500  # about 1 in 32
    assert not is_generated_share(bytes(32))  # low order
    assert not is_generated_share(b"\xff" * 32)  # not canonical


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("size", [0, 1, 300, 65536, 200_000])
def test_honest_files_pass(n: int, size: int) -> None:
    plain = os.urandom(size) + bytes(padme(size) - size)
    x = [X25519Identity.generate().recipient() for _ in range(n)]
    _check(encrypt(plain, x), _desk("X25519", n))
    text = b'{"testimony": "words words words"}'
    _check(encrypt(text + b" " * (padme(len(text)) - len(text)), x), _desk("X25519", n))
    pq = [HybridIdentity.generate().recipient() for _ in range(n)]
    _check(encrypt(plain, pq), _desk("mlkem768x25519", n))


def test_files_from_the_age_cli_pass(tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = [X25519Identity.generate().recipient() for _ in range(2)]
    for size in (256, padme(70_000)):  # Guwah pads every plaintext
        src = tmp_path / "plain"
        src.write_bytes(os.urandom(size - 10) + bytes(10))
        args = [a for k in keys for a in ("-r", str(k))]
        data = subprocess.run(["age", *args, str(src)], capture_output=True, check=True).stdout
        _check(data, _desk("X25519", 2))


def test_repeated_share_and_made_up_headers_are_refused() -> None:
    keys = [X25519Identity.generate().recipient() for _ in range(2)]
    data = encrypt(bytes(256), keys)
    lines = data.split(b"\n")
    assert lines[1].startswith(b"-> X25519 ") and lines[3].startswith(b"-> X25519 ")
    lines[3] = lines[1]  # the second stanza repeats the first
    with pytest.raises(Invalid) as exc:
        _check(b"\n".join(lines), _desk("X25519", 2))
    assert exc.value.key == "not_ciphertext"
    share = bytearray(crypto_scalarmult_base(os.urandom(32)))
    share[31] |= 0x80
    fake = (b"age-encryption.org/v1\n-> X25519 " + base64.b64encode(bytes(share)).rstrip(b"=")
            + b"\n" + base64.b64encode(os.urandom(32)).rstrip(b"=") + b"\n--- "
            + base64.b64encode(os.urandom(32)).rstrip(b"=") + b"\n" + os.urandom(288))
    with pytest.raises(Invalid) as exc:
        _check(fake, _desk("X25519"))
    assert exc.value.key == "not_ciphertext"


def test_what_looks_random() -> None:
    for n in (288, 4096, 65536):
        assert all(looks_random(os.urandom(n)) for _ in range(200))
    assert not looks_random(b"The camp had four gates and a tower at each corner. " * 10)
    assert not looks_random(bytes(4096))
    assert not looks_random(os.urandom(64) * 100)  # repeated blocks
    assert not looks_random(bytes(range(256)) * 16)  # every value, evenly: still compressible
