"""app.crypto beyond the CCTV vectors: round trips, streaming, limits and error messages."""

import io
import os
import random
import threading

import pytest

import app.crypto.stream as stream
from app.crypto import (
    AgeError,
    Decryptor,
    Encryptor,
    HeaderError,
    HybridIdentity,
    KeyFormatError,
    NoIdentityMatchError,
    NotAgeFileError,
    PayloadError,
    ScryptIdentity,
    ScryptRecipient,
    X25519Identity,
    decrypt,
    decrypt_stream,
    encrypt,
    encrypt_stream,
    fingerprint,
    padme,
    parse_identity,
    parse_identity_file,
    parse_recipient,
    read_header,
)
from app.crypto.stream import CHUNK

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17]


@pytest.fixture(scope="module")
def x25519() -> X25519Identity:
    return X25519Identity.generate()


@pytest.fixture(scope="module")
def hybrid() -> HybridIdentity:
    return HybridIdentity.generate()


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_sizes(size: int, x25519: X25519Identity, hybrid: HybridIdentity) -> None:
    data = os.urandom(size)
    for ident in (x25519, hybrid):
        sealed = encrypt(data, [ident.recipient()])
        assert decrypt(sealed, [ident]) == data
        # ciphertext size: header + 16-byte nonce + 16-byte tag per chunk
        chunks = max(1, -(-size // CHUNK))
        assert len(sealed) - len(read_header(io.BytesIO(sealed)).mac_input) > size + 16 * chunks


def test_incremental_encryptor_any_write_sizes(x25519: X25519Identity) -> None:
    rng = random.Random(7)
    data = os.urandom(5 * CHUNK + 999)
    out = io.BytesIO()
    enc = Encryptor([x25519.recipient()], out)
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 7, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK])
        enc.write(data[pos : pos + n])
        pos += n
    enc.close()
    assert enc.bytes_in == len(data) and enc.bytes_out == len(out.getvalue())
    assert decrypt(out.getvalue(), [x25519]) == data
    # byte-at-a-time reads from the Decryptor
    reader = Decryptor(io.BytesIO(out.getvalue()), [x25519])
    got = b"".join(iter(lambda: reader.read(4093), b""))
    assert got == data


def test_streaming_multiple_recipients_and_armor(x25519: X25519Identity) -> None:
    other = X25519Identity.generate()
    data = os.urandom(CHUNK * 2 + 5)
    dst = io.BytesIO()
    assert encrypt_stream(io.BytesIO(data), dst, [x25519.recipient(), other.recipient()],
                          armor=True) == len(data)
    text = dst.getvalue()
    assert text.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert all(len(line) <= 64 for line in text.splitlines())
    for ident in (x25519, other):
        plain = io.BytesIO()
        assert decrypt_stream(io.BytesIO(b"\n \t\n" + text + b"\r\n"), plain, [ident]) == len(data)
        assert plain.getvalue() == data


def test_scrypt_passphrase() -> None:
    sealed = encrypt(b"secret", [ScryptRecipient("a long passphrase", work_factor=10)])
    assert decrypt(sealed, [ScryptIdentity("a long passphrase")]) == b"secret"
    with pytest.raises(NoIdentityMatchError, match="passphrase is wrong"):
        decrypt(sealed, [ScryptIdentity("wrong")])
    with pytest.raises(HeaderError, match="higher than"):
        decrypt(sealed, [ScryptIdentity("a long passphrase", max_work_factor=9)])


def test_recipient_mixing_is_refused(x25519: X25519Identity, hybrid: HybridIdentity) -> None:
    with pytest.raises(KeyFormatError, match="can't be mixed"):
        encrypt(b"x", [x25519.recipient(), hybrid.recipient()])
    with pytest.raises(KeyFormatError, match="passphrase"):
        encrypt(b"x", [ScryptRecipient("p", 10), x25519.recipient()])
    with pytest.raises(KeyFormatError):
        encrypt(b"x", [])


def test_key_strings_round_trip(x25519: X25519Identity, hybrid: HybridIdentity) -> None:
    for ident in (x25519, hybrid):
        assert str(parse_identity(str(ident))) == str(ident)
        assert str(parse_recipient(str(ident.recipient()))) == str(ident.recipient())
        assert str(ident).startswith("AGE-SECRET-KEY-")
        assert "secret" in repr(ident) and str(ident) not in repr(ident)
    text = f"# comment\n\n{x25519}\n{hybrid}\n"
    assert [str(i) for i in parse_identity_file(text)] == [str(x25519), str(hybrid)]


@pytest.mark.parametrize(
    "bad", ["", "age1", "age1qqqq", "nope", "AGE-SECRET-KEY-1QQQQ", "age1pq1abc"]
)
def test_bad_key_strings(bad: str) -> None:
    with pytest.raises(KeyFormatError):
        parse_recipient(bad)
    with pytest.raises(KeyFormatError):
        parse_identity(bad)


def test_checksum_catches_a_typo(x25519: X25519Identity) -> None:
    text = str(x25519.recipient())
    typo = text[:-3] + ("q" if text[-3] != "q" else "p") + text[-2:]
    with pytest.raises(KeyFormatError, match="checksum"):
        parse_recipient(typo)


def test_decryptor_never_releases_unauthenticated_chunks(x25519: X25519Identity) -> None:
    data = os.urandom(3 * CHUNK)
    sealed = bytearray(encrypt(data, [x25519.recipient()]))
    sealed[-CHUNK // 2] ^= 0x80  # damage the last chunk only
    reader = Decryptor(io.BytesIO(bytes(sealed)), [x25519])
    assert reader.read(CHUNK) == data[:CHUNK]  # first chunk verified
    assert reader.read(CHUNK) == data[CHUNK : 2 * CHUNK]
    with pytest.raises(PayloadError):
        reader.read(CHUNK)


def test_errors_are_typed_and_readable(x25519: X25519Identity) -> None:
    sealed = encrypt(b"hello", [x25519.recipient()])
    cases = [
        (b"", NotAgeFileError),
        (b"%PDF-1.7 not age", NotAgeFileError),
        (b"age-encryption.org/v2\n", HeaderError),
        (sealed[:40], HeaderError),
        (sealed[:-1], PayloadError),
        (sealed + b"x", PayloadError),
    ]
    for blob, kind in cases:
        with pytest.raises(kind) as info:
            decrypt(blob, [x25519])
        assert isinstance(info.value, AgeError) and len(str(info.value)) > 15
    with pytest.raises(NoIdentityMatchError, match="X25519"):
        decrypt(sealed, [X25519Identity.generate()])


def test_header_size_is_bounded() -> None:
    huge = b"age-encryption.org/v1\n-> X25519 " + b"A" * (2 << 20)
    with pytest.raises(HeaderError, match="too large"):
        read_header(io.BytesIO(huge))


def test_padme_properties() -> None:
    prev = 0
    for n in [0, 1, 255, 256, 257, 1000, 4096, 10**6, 3 * 10**9 + 7]:
        p = padme(n)
        assert p >= n and p >= prev
        assert p - n <= max(256, n * 0.12)
        prev = p
    # sizes in one bucket are indistinguishable
    assert padme(1_000_001) == padme(1_000_100)


def test_fingerprint_is_short_and_stable() -> None:
    fp = fingerprint(b"some key")
    assert fp == fingerprint(b"some key") and fp != fingerprint(b"some kez")
    assert len(fp) == 24 and fp.count("-") == 4


def test_background_encryptor_seals_what_was_written_from_a_reused_buffer(
    x25519: X25519Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that reuses one buffer (a readinto loop) overwrites it as soon as ``write``
    returns; the sealing thread, held here until then, must still seal what was written."""
    data = os.urandom(2 * stream.BATCH * CHUNK + 5)
    written = threading.Event()
    real = stream._seal_batch

    def held(*args: object) -> list[bytes]:
        assert written.wait(10), "the writer never let the sealing thread go"
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(stream, "_seal_batch", held)
    out = io.BytesIO()
    enc = Encryptor([x25519.recipient()], out, background=True)
    buf = bytearray(data)
    enc.write(memoryview(buf))  # two whole batches go to the sealing thread, 5 bytes stay
    buf[:] = bytes(len(buf))  # the caller reuses its buffer at once
    written.set()
    enc.close()
    assert decrypt(out.getvalue(), [x25519]) == data


@pytest.mark.parametrize("background", [False, True])
def test_encryptor_holds_views_of_bytes_and_copies_mutable_buffers(
    x25519: X25519Identity, background: bool
) -> None:
    """The web server's writes: views into the pieces it received (held, not copied, so a
    chunk may span two of them), empty views, and now and then a reused ``bytearray`` that
    is changed as soon as ``write`` returns. The sealed file must hold exactly what was
    written, in order."""
    rng = random.Random(11)
    pieces = [os.urandom(rng.choice([1, 5000, CHUNK - 3, CHUNK, 700_001, (1 << 20) + 17]))
              for _ in range(30)]
    out = io.BytesIO()
    enc = Encryptor([x25519.recipient()], out, background=background)
    reused = bytearray(40_000)
    expected = bytearray()
    for piece in pieces:
        cut = rng.randrange(len(piece) + 1)
        for part in (memoryview(piece)[:cut], memoryview(piece)[cut:cut], memoryview(piece)[cut:]):
            enc.write(part)
            expected += part
        if rng.random() < 0.3:
            reused[:] = os.urandom(len(reused))
            enc.write(memoryview(reused)[: rng.randrange(1, len(reused))])
            expected += reused[: enc.bytes_in - len(expected)]
            reused[:] = bytes(len(reused))  # the caller reuses it at once
    enc.close()
    assert enc.bytes_in == len(expected)
    assert decrypt(out.getvalue(), [x25519]) == bytes(expected)


def test_encryptor_copies_tiny_writes_together(x25519: X25519Identity) -> None:
    """Tiny writes, each a view of ``bytes``, are copied into one buffer rather than held one
    by one (each held view would cost far more memory than its byte)."""
    data = os.urandom(3 * stream.BATCH * CHUNK + 5)
    out = io.BytesIO()
    enc = Encryptor([x25519.recipient()], out, background=True)
    view = memoryview(data)
    most = 0
    for i in range(0, len(data), 7):
        enc.write(view[i : i + 7])
        most = max(most, len(enc._stream._held))
    enc.close()
    assert most <= 2
    assert decrypt(out.getvalue(), [x25519]) == data


def test_background_encryptor_matches_and_propagates_errors(x25519: X25519Identity) -> None:
    data = os.urandom(40 * CHUNK + 3)
    out = io.BytesIO()
    enc = Encryptor([x25519.recipient()], out, background=True)
    for i in range(0, len(data), 300_001):
        enc.write(data[i : i + 300_001])
    enc.close()
    assert decrypt(out.getvalue(), [x25519]) == data

    class Full(io.BytesIO):
        def write(self, b):  # a disk that fills up mid-stream
            if self.tell() > 3 * CHUNK:
                raise OSError(28, "No space left on device")
            return super().write(b)

    enc = Encryptor([x25519.recipient()], Full(), background=True)
    with pytest.raises(OSError, match="No space"):
        for _ in range(40):
            enc.write(os.urandom(CHUNK))
        enc.close()
    enc.abort()
    # an aborted encryptor leaves no thread behind
    assert not [t for t in threading.enumerate() if t.name.startswith("age-seal")]
