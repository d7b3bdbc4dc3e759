"""Interoperability of app.crypto with the reference ``age`` CLI (Debian's /usr/bin/age 1.1).

The promise of docs/formats.md: every stored X25519 submission opens with plain ``age -d``.
Debian's age 1.1 has no post-quantum hybrid, so only X25519 is checked here (the hybrid is
cross-checked against npm age-encryption in test_interop_node.py).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from app.crypto import (
    AgeError,
    Decryptor,
    Encryptor,
    X25519Identity,
    decrypt,
    encrypt,
    encrypt_stream,
    parse_identity_file,
    parse_recipient,
)

SIZES = [0, 1, 65535, 65536, 65537, (1 << 20) + 3]


@pytest.fixture(scope="module")
def age() -> str:
    """Fail (never skip): the interop promise is untested without the real CLI."""
    path = shutil.which("age") or ("/usr/bin/age" if Path("/usr/bin/age").exists() else None)
    if path is None:
        pytest.fail("the age CLI is not installed: apt-get install age")
    return path


@pytest.fixture(scope="module")
def age_keygen(age: str) -> str:
    path = shutil.which("age-keygen") or str(Path(age).with_name("age-keygen"))
    if not Path(path).exists():
        pytest.fail("age-keygen is not installed: apt-get install age")
    return path


def payload(size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"age-cli" + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def run(*args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(args), input=data, capture_output=True, timeout=120)


def write_identity(tmp_path: Path, identity: X25519Identity) -> Path:
    path = tmp_path / "py.key"
    path.write_text(f"# public key: {identity.recipient()}\n{identity}\n")
    return path


@pytest.mark.parametrize("size", SIZES)
def test_python_encrypts_age_decrypts(age: str, tmp_path: Path, size: int) -> None:
    identity = X25519Identity.generate()
    plain = payload(size)
    ct = encrypt(plain, [identity.recipient()])
    proc = run(age, "-d", "-i", str(write_identity(tmp_path, identity)), data=ct)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == plain


@pytest.mark.parametrize("size", SIZES)
def test_age_encrypts_python_decrypts(age: str, tmp_path: Path, size: int) -> None:
    identity = X25519Identity.generate()
    plain = payload(size)
    proc = run(age, "-e", "-r", str(identity.recipient()), data=plain)
    assert proc.returncode == 0, proc.stderr.decode()
    assert decrypt(proc.stdout, [identity]) == plain


def test_age_keygen_key_works_with_python(age: str, age_keygen: str, tmp_path: Path) -> None:
    """A key made by age-keygen: Python parses the file and both directions work."""
    key = tmp_path / "age.key"
    proc = run(age_keygen, "-o", str(key))
    assert proc.returncode == 0, proc.stderr.decode()
    text = key.read_text()
    public = next(
        line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("# public key:")
    )
    (identity,) = parse_identity_file(text)
    assert str(identity.recipient()) == public
    plain = payload(65537)
    ct = encrypt(plain, [parse_recipient(public)])
    proc = run(age, "-d", "-i", str(key), data=ct)
    assert proc.returncode == 0 and proc.stdout == plain
    proc = run(age, "-e", "-r", public, data=plain)
    assert decrypt(proc.stdout, [identity]) == plain


def test_several_recipients_and_armor(age: str, tmp_path: Path) -> None:
    a, b = X25519Identity.generate(), X25519Identity.generate()
    plain = payload(200_000)
    ct = encrypt(plain, [a.recipient(), b.recipient()], armor=True)
    assert ct.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    for ident in (a, b):
        proc = run(age, "-d", "-i", str(write_identity(tmp_path, ident)), data=ct)
        assert proc.returncode == 0 and proc.stdout == plain
    proc = run(age, "-e", "-a", "-r", str(a.recipient()), "-r", str(b.recipient()), data=plain)
    assert proc.stdout.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert decrypt(proc.stdout, [b]) == plain


def test_streaming_paths(age: str, tmp_path: Path) -> None:
    identity = X25519Identity.generate()
    plain = payload(5 * 65536 + 17)
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), out, [identity.recipient()])
    proc = run(age, "-d", "-i", str(write_identity(tmp_path, identity)), data=out.getvalue())
    assert proc.returncode == 0 and proc.stdout == plain
    proc = run(age, "-e", "-r", str(identity.recipient()), data=plain)
    assert Decryptor(io.BytesIO(proc.stdout), [identity]).read() == plain


def test_truncated_age_file_is_refused(age: str) -> None:
    identity = X25519Identity.generate()
    proc = run(age, "-e", "-r", str(identity.recipient()), data=payload(65536 * 2))
    with pytest.raises(AgeError):
        decrypt(proc.stdout[: -(65536 + 16)], [identity])  # drop the whole last chunk


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("size", [0, 65536, 16 * 65536, 16 * 65536 + 1, (3 << 20) + 5])
def test_incremental_encryptor_age_decrypts(
    age: str, tmp_path: Path, background: bool, size: int
) -> None:
    """The web server's path: ``Encryptor.write`` in uneven pieces, sealed inline or on its
    background thread, must give a file plain ``age -d`` opens to the same bytes."""
    identity = X25519Identity.generate()
    plain = payload(size)
    out = io.BytesIO()
    enc = Encryptor([identity.recipient()], out, background=background)
    pos, step = 0, 1
    while pos < size:
        enc.write(plain[pos : pos + step])
        pos += step
        step = step * 7 % 300_007 + 1
    enc.close()
    proc = run(age, "-d", "-i", str(write_identity(tmp_path, identity)), data=out.getvalue())
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == plain
