"""Encrypting and decrypting age v1 files: one-shot, streaming and incremental.

Everything streams in 64 KiB chunks so that files of many GiB use constant memory; the web
server feeds :class:`Encryptor` directly from the request body, so no plaintext is buffered
beyond one chunk.
"""

import io
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from .armor import BEGIN, WHITESPACE, ArmorReader, ArmorWriter
from .byteio import Buffer, Sink, Source
from .errors import HeaderError, NoIdentityMatchError
from .header import Header, encode_header, parse_header
from .keys import Identity, Recipient, check_recipient_mix
from .stream import (
    NONCE_SIZE,
    Progress,
    StreamReader,
    StreamWriter,
    payload_key,
    seal_stream,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class _Sink:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.count = 0

    def write(self, data: Buffer) -> int:
        self.sink.write(data)
        self.count += len(data)
        return len(data)


class Encryptor:
    """Incremental encryptor: the header is written at once, then ``write`` and ``close``."""

    def __init__(
        self,
        recipients: Sequence[Recipient],
        sink: Sink,
        *,
        armor: bool = False,
        background: bool = False,
    ) -> None:
        """``background=True``: seal on one helper thread, write on another (see StreamWriter)."""
        recipients = list(recipients)
        check_recipient_mix(recipients)
        self._armor = ArmorWriter(sink) if armor else None
        self._out = _Sink(self._armor or sink)
        file_key = os.urandom(16)
        stanzas = [s for r in recipients for s in r.wrap(file_key)]
        nonce = os.urandom(NONCE_SIZE)
        self._out.write(encode_header(stanzas, file_key) + nonce)
        self._key = payload_key(file_key, nonce)
        self._stream = StreamWriter(self._key, self._out.write, background=background)
        self.bytes_in = 0

    @property
    def bytes_out(self) -> int:
        return self._out.count

    def write(self, data: Buffer) -> int:
        """Encrypt ``data``: a large view of ``bytes`` is sealed from where it lies, anything
        else is copied at once (StreamWriter says why)."""
        self._stream.write(data)
        self.bytes_in += len(data)
        return len(data)

    def write_all(self, src: Source, progress: Progress | None = None) -> int:
        """Encrypt everything left in ``src`` and close: the fast, multi-core path."""
        if self.bytes_in or self._stream.started:
            raise ValueError("write_all must be the only write to an Encryptor")
        self._stream.close_unused()
        self.bytes_in = seal_stream(self._key, src, self._out.write, progress)
        if self._armor:
            self._armor.close()
            self._armor = None
        return self.bytes_in

    def close(self) -> None:
        self._stream.close()
        if self._armor:
            self._armor.close()
            self._armor = None

    def abort(self) -> None:
        """Stop without finishing the file (its partial output is to be discarded)."""
        self._stream.abort()

    def __enter__(self) -> "Encryptor":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _start(src: Source, armor: bool | None) -> tuple[Source, bytes]:
    """Detect (or force) armor; return the binary source and bytes already read from it."""
    if armor is False:
        return src, b""
    first = src.read(len(b"age-encryption.org/"))
    if armor is None:
        first = _past_leading_whitespace(src, first)
        if not first.lstrip(WHITESPACE).startswith(BEGIN[:5]):
            return src, first
    return ArmorReader(src, first), b""


def _past_leading_whitespace(src: Source, first: bytes) -> bytes:
    """``first`` plus what follows, until 5 bytes past any leading whitespace (or EOF).

    Linear: each chunk is looked at once. (Re-stripping everything read so far after every
    1 KiB made 8 MiB of spaces take most of a minute.)
    """
    chunks = [first]
    text = len(first.lstrip(WHITESPACE))  # bytes after the whitespace, in what was read
    while text < 5:
        more = src.read(64 * 1024)
        if not more:
            break
        chunks.append(more)
        text += len(more) if text else len(more.lstrip(WHITESPACE))
    return b"".join(chunks)


class Decryptor(io.RawIOBase):
    """A readable of the plaintext; only authenticated chunks are ever returned."""

    def __init__(
        self, src: Source, identities: Sequence[Identity], *, armor: bool | None = None
    ) -> None:
        super().__init__()
        source, first = _start(src, armor)
        header, rest = parse_header(source, first)
        self.header: Header = header
        file_key = _unwrap(header, identities)
        header.verify_mac(file_key)
        rest_and_nonce = bytearray(rest)
        while len(rest_and_nonce) < NONCE_SIZE:
            more = source.read(NONCE_SIZE - len(rest_and_nonce))
            if not more:
                # age counts the nonce as part of the header: a file cut here has no payload
                raise HeaderError("the encrypted file is truncated: its payload nonce is missing")
            rest_and_nonce += more
        nonce = bytes(rest_and_nonce[:NONCE_SIZE])
        self._reader = StreamReader(
            payload_key(file_key, nonce), source, bytes(rest_and_nonce[NONCE_SIZE:])
        )
        self._buf = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1, /) -> bytes:
        if n is None or n < 0:
            parts = [self._buf[self._pos :]]
            self._buf, self._pos = b"", 0
            while (chunk := self._reader.next_chunk()) is not None:
                parts.append(chunk)
            return b"".join(parts)
        while self._pos >= len(self._buf):
            chunk = self._reader.next_chunk()
            if chunk is None:
                return b""
            self._buf, self._pos = chunk, 0
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def readinto(self, buffer: "WriteableBuffer", /) -> int:
        with memoryview(buffer).cast("B") as view:
            data = self.read(len(view))
            view[: len(data)] = data
        return len(data)

    def read_all_into(
        self, write: "Callable[[bytes], object]", progress: Progress | None = None
    ) -> int:
        """Decrypt the rest of the file into ``write`` (multi-core); return bytes written."""
        total = 0

        def counted(data: bytes) -> None:
            nonlocal total
            write(data)
            total += len(data)

        if self._pos < len(self._buf):
            counted(self._buf[self._pos :])
            self._buf, self._pos = b"", 0
        self._reader.drain(counted, progress)
        return total

    def chunks(self) -> Iterator[bytes]:
        """Yield authenticated plaintext chunks (fast path for copying)."""
        if self._pos < len(self._buf):
            yield self._buf[self._pos :]
            self._buf, self._pos = b"", 0
        while (chunk := self._reader.next_chunk()) is not None:
            yield chunk


def _unwrap(header: Header, identities: Sequence[Identity]) -> bytes:
    if not identities:
        raise NoIdentityMatchError("no identity was given to decrypt with")
    for identity in identities:
        file_key = identity.unwrap(header.stanzas)
        if file_key is not None:
            return file_key
    types = sorted({s.type for s in header.stanzas})
    if types == ["scrypt"] and all(i.type == "scrypt" for i in identities):
        raise NoIdentityMatchError("the passphrase is wrong")
    raise NoIdentityMatchError(
        "none of your keys can open this file (it was encrypted to: "
        + ", ".join(types)
        + "): use the identity of a recipient it was encrypted to"
    )


def encrypt_stream(
    src: Source,
    dst: Sink,
    recipients: Sequence[Recipient],
    *,
    armor: bool = False,
    progress: Progress | None = None,
) -> int:
    enc = Encryptor(recipients, dst, armor=armor)
    return enc.write_all(src, progress)


def decrypt_stream(
    src: Source,
    dst: Sink,
    identities: Sequence[Identity],
    *,
    armor: bool | None = None,
    progress: Progress | None = None,
) -> int:
    dec = Decryptor(src, identities, armor=armor)
    return dec.read_all_into(dst.write, progress)


def encrypt(plaintext: bytes, recipients: Sequence[Recipient], *, armor: bool = False) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(plaintext), out, recipients, armor=armor)
    return out.getvalue()


def decrypt(data: bytes, identities: Sequence[Identity], *, armor: bool | None = None) -> bytes:
    return Decryptor(io.BytesIO(data), identities, armor=armor).read()


def read_header(src: Source) -> Header:
    """Parse only the header (the server checks uploaded files' stanzas without any key)."""
    return parse_header(src)[0]
