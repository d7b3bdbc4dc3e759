"""The C2SP CCTV age test vectors: every one must give exactly its expected result.

Vectors in tests/vectors/age-cctv, copied from the C2SP CCTV repository, age/testdata, commit 1e3d286;
licence 0BSD OR CC0-1.0 OR Unlicense).
"""

import hashlib
import io
import zlib
from pathlib import Path

import pytest

from app.crypto import (
    AgeError,
    ArmorError,
    HeaderError,
    MacMismatchError,
    NoIdentityMatchError,
    PayloadError,
    ScryptIdentity,
    decrypt,
    decrypt_stream,
    parse_identity,
)

VECTORS = Path(__file__).parent / "vectors" / "age-cctv"
NAMES = sorted(p.name for p in VECTORS.iterdir())


def load(name: str) -> tuple[dict[str, list[str]], bytes]:
    raw = (VECTORS / name).read_bytes()
    head, _, body = raw.partition(b"\n\n")
    meta: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        meta.setdefault(key, []).append(value)
    if meta.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    return meta, body


def test_all_143_vectors_present() -> None:
    assert len(NAMES) == 143


EXPECTED = {
    "header failure": HeaderError,
    "HMAC failure": MacMismatchError,
    "no match": NoIdentityMatchError,
    "payload failure": PayloadError,
    "armor failure": ArmorError,
}


@pytest.mark.parametrize("name", NAMES)
def test_vector(name: str) -> None:
    meta, body = load(name)
    identities = [parse_identity(i) for i in meta.get("identity", [])]
    identities += [ScryptIdentity(p) for p in meta.get("passphrase", [])]
    armored = meta.get("armored") == ["yes"]
    expect = meta["expect"][0]
    if expect == "success":
        plaintext = decrypt(body, identities, armor=armored)
        assert hashlib.sha256(plaintext).hexdigest() == meta["payload"][0]
        streamed = io.BytesIO()
        decrypt_stream(io.BytesIO(body), streamed, identities, armor=armored)
        assert streamed.getvalue() == plaintext
        return
    with pytest.raises(AgeError) as info:
        decrypt(body, identities, armor=armored)
    # the parallel whole-file path must refuse the same way
    with pytest.raises(type(info.value)):
        decrypt_stream(io.BytesIO(body), io.BytesIO(), identities, armor=armored)
    kind = EXPECTED[expect]
    assert isinstance(info.value, kind), f"{name}: expected {expect}, got {info.value!r}"
    if expect == "header failure":
        assert not isinstance(info.value, MacMismatchError)
    assert str(info.value)  # a sentence a person can read
