"""The checks behind ``POST /api/submissions`` (app/web/routers/commit.py), made without keys.

The witness's browser sends JSON naming its uploads. Before anything becomes visible the
server reads each upload's age header (no key needed) and checks that it is a well-formed
age file for exactly this desk: one stanza per desk recipient, all of the desk's kind, with
the right argument and body sizes, and a payload whose length fits age's STREAM layout
(16-byte nonce, 64 KiB chunks each with a 16-byte tag, only the last one short), ephemeral
shares that a key generation can output, and a payload that looks like ciphertext. Plaintext,
another desk's file, a made-up header or a truncated upload is refused with a translated
sentence, and the uploads it named are removed (nothing kept). Then one store transaction
adopts the uploads (a rename per file, no copy) and the submission appears.

What no check without keys can catch — a well-formed file for another key of the desk's kind —
is quarantined by ``guwah-editor import`` (app/editor/layout.py). No answer here depends on
whether a mailbox was used before (``_mailbox`` in app/web/routers/commit.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from typing import BinaryIO

from app.crypto import AgeError, NotAgeFileError, padme
from app.crypto.header import Stanza, parse_header
from app.crypto.stream import plaintext_length
from app.crypto.x25519 import is_generated_share
from app.diskio import read_ahead
from app.store import Desk

from .errors import MSG, N_

READ = 1024 * 1024
SAMPLE = 64 * 1024  # of each payload, tested for looking like ciphertext
MIN_SAMPLE = 272  # the smallest payload after its nonce: 256 padded bytes + a 16-byte tag
PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n\r"
# stanza type -> (decoded size of its one argument, size of its body)
STANZA_SHAPES = {"X25519": (32, 32), "mlkem768x25519": (1120, 32)}

CMSG = {
    "not_age": N_(
        "A part of your submission did not arrive in the encrypted form that the editors' "
        "keys can open. Nothing was kept. Please reload the page and send again."
    ),
    "wrong_desk": N_(
        "A part of your submission was encrypted for other editors than the desk you chose. "
        "Nothing was kept. Please reload the page and send again."
    ),
    "truncated": N_(
        "A part of your submission arrived incomplete or damaged. Nothing was kept. "
        "Please reload the page and send again."
    ),
    "incomplete": N_(
        "Not all parts of your submission have finished uploading. Please wait for the "
        "upload to finish."
    ),
    "not_ciphertext": MSG["not_ciphertext"],
    "mailbox": N_("No earlier testimony belongs to this codename. Please check it."),
    "reply_key": MSG["reply_key"],
}


class Invalid(Exception):
    """An upload is not what the desk can accept; ``key`` names the sentence in CMSG."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _b64(arg: str) -> bytes | None:
    try:
        return base64.b64decode(arg + "=" * (-len(arg) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def stream_payload_ok(payload: int) -> bool:
    """Whether ``payload`` bytes (after the header) can be an age STREAM payload of a
    Padmé-padded plaintext (docs/formats.md §2: every Guwah plaintext is padded), so a cut
    anywhere but at another Padmé length is caught without any key."""
    plain = plaintext_length(payload)
    return plain is not None and padme(plain) == plain


def check_age_file(src: BinaryIO, size: int, desk: Desk) -> str:
    """Check an upload against ``desk``; return the SHA-256 of its bytes. Raises Invalid."""
    reader = _Hashing(src)
    try:
        header, rest = parse_header(reader)
    except NotAgeFileError:
        raise Invalid("not_age") from None
    except AgeError:
        raise Invalid("truncated") from None
    header_len = reader.consumed - len(rest)
    check_stanzas(header.stanzas, desk)
    if not stream_payload_ok(size - header_len):
        raise Invalid("truncated")
    sample = bytearray(rest[:SAMPLE])
    for chunk in read_ahead(src, READ):  # hashing this MiB while the next is read
        reader.add(chunk)
        if len(sample) < SAMPLE:
            sample += chunk[: SAMPLE - len(sample)]
    if reader.consumed != size:
        raise Invalid("truncated")
    if not looks_random(bytes(sample)):
        raise Invalid("not_ciphertext")
    return reader.digest.hexdigest()


def check_stanzas(stanzas: list[Stanza], desk: Desk) -> None:
    """One stanza per desk key, all of the desk's kind and shape, each with an ephemeral
    X25519 share that a key generation can output, no share twice. Raises Invalid."""
    kinds = {k.kind for k in desk.recipients}
    if len(stanzas) != len(desk.recipients) or kinds != {desk.kind}:
        raise Invalid("wrong_desk")
    shape = STANZA_SHAPES.get(desk.kind or "")
    shares = set()
    for stanza in stanzas:
        if stanza.type != desk.kind or shape is None or len(stanza.args) != 1:
            raise Invalid("wrong_desk")
        arg = _b64(stanza.args[0])
        if arg is None or len(arg) != shape[0] or len(stanza.body) != shape[1]:
            raise Invalid("wrong_desk")
        share = arg[-32:]  # X25519: the share; hybrid: ML-KEM ciphertext ‖ X25519 share
        if share in shares or not is_generated_share(share):
            raise Invalid("not_ciphertext")
        shares.add(share)


def looks_random(sample: bytes) -> bool:
    """Whether the start of a payload can be age ciphertext (a nonce, then ChaCha20-Poly1305
    output: indistinguishable from random bytes).

    Two tests, each failing for random bytes with probability below 2^-100 at the smallest
    Guwah payload (16 + 256 + 16 = 288 bytes): at most 88 % printable text (random: 38 %;
    Hoeffding gives e^(-2n·0.5²)), and zlib cannot shrink it by a tenth (at most 2^(8m+1) inputs
    compress to m bytes). So plain text, zeros or repeated blocks dressed in a header are
    refused; compressed or encrypted bytes of the sender's choosing are not (docs/threat-model.md).
    """
    if len(sample) < MIN_SAMPLE:
        return True
    printable = sum(sample.count(b) for b in PRINTABLE)
    if printable > 0.883 * len(sample):
        return False
    return len(zlib.compress(sample, 6)) >= 0.9 * len(sample)


class _Hashing:
    """A reader that hashes and counts everything read through it."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self.digest = hashlib.sha256()
        self.consumed = 0

    def read(self, n: int = 4096) -> bytes:
        out = self._src.read(4096 if n is None or n < 0 else n)
        self.add(out)
        return bytes(out)

    def add(self, data: bytes) -> None:
        """Hash and count bytes read past this reader (the read-ahead of the payload)."""
        self.digest.update(data)
        self.consumed += len(data)

    read1 = read
