"""The age STREAM payload: ChaCha20-Poly1305 over 64 KiB chunks (age spec, "Payload").

Decryption releases a chunk only after its tag verifies, and reports truncation (no final
chunk), a final chunk that is not last (trailing data) and an empty non-first final chunk as
:class:`PayloadError`.  Encryption holds back one chunk until it knows whether more data
follows, because the last chunk carries the "final" flag in its nonce.
"""

from collections.abc import Callable
from typing import BinaryIO

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt as _open,
)
from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_encrypt as _seal,
)
from nacl.exceptions import CryptoError

from .encoding import hkdf_sha256
from .errors import PayloadError

CHUNK = 64 * 1024
TAG = 16
ENC_CHUNK = CHUNK + TAG
NONCE_SIZE = 16

Writer = Callable[[bytes], object]


def payload_key(file_key: bytes, nonce: bytes) -> bytes:
    return hkdf_sha256(file_key, nonce, b"payload")


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class StreamWriter:
    """Incrementally encrypts plaintext into age STREAM chunks passed to ``emit``."""

    def __init__(self, key: bytes, emit: Writer) -> None:
        self._key = key
        self._emit = emit
        self._buf = bytearray()
        self._counter = 0
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("write to a closed age encryptor")
        self._buf += data
        if len(self._buf) <= CHUNK:
            return
        full = (len(self._buf) - 1) // CHUNK  # keep at least one byte back: it may be last
        view = memoryview(self._buf)
        for i in range(full):
            self._seal(bytes(view[i * CHUNK : (i + 1) * CHUNK]), last=False)
        view.release()
        del self._buf[: full * CHUNK]

    def close(self) -> None:
        if self._closed:
            return
        self._seal(bytes(self._buf), last=True)
        self._buf = bytearray()
        self._closed = True

    def _seal(self, chunk: bytes, last: bool) -> None:
        self._emit(_seal(chunk, None, _nonce(self._counter, last), self._key))
        self._counter += 1


class StreamReader:
    """Reads and authenticates age STREAM chunks from ``src`` one at a time."""

    def __init__(self, key: bytes, src: BinaryIO, pending: bytes = b"") -> None:
        self._key = key
        self._src = src
        self._pending = bytearray(pending)
        self._counter = 0
        self._done = False

    def _fill(self, want: int) -> None:
        while len(self._pending) < want:
            more = self._src.read(want - len(self._pending))
            if not more:
                return
            self._pending += more

    def next_chunk(self) -> bytes | None:
        """Return the next authenticated plaintext chunk, or None after the final one."""
        if self._done:
            return None
        # one byte of look-ahead tells a full final chunk from a full non-final one
        self._fill(ENC_CHUNK + 1)
        if len(self._pending) > ENC_CHUNK:
            enc, last = bytes(self._pending[:ENC_CHUNK]), False
        else:
            enc, last = bytes(self._pending), True
        del self._pending[: len(enc)]
        if len(enc) < TAG + (1 if self._counter > 0 else 0):
            raise PayloadError(
                "the encrypted file is truncated: its last chunk is missing or too short"
            )
        try:
            plain = _open(enc, None, _nonce(self._counter, last), self._key)
        except CryptoError:
            if not last:
                try:
                    _open(enc, None, _nonce(self._counter, True), self._key)
                except CryptoError:
                    pass
                else:
                    raise PayloadError(
                        "the encrypted file has data after its final chunk"
                    ) from None
            raise PayloadError(
                "the encrypted file is damaged or truncated: a chunk failed authentication"
            ) from None
        if last and not plain and self._counter > 0:
            raise PayloadError("the encrypted file ends with an empty final chunk")
        self._counter += 1
        if last:
            self._done = True
        return plain
