"""The X25519 recipient type (age spec, "The X25519 recipient type").

Interoperable with every age implementation, including Debian's ``age`` 1.1.
"""

import os
from dataclasses import dataclass

from nacl.bindings import (
    crypto_core_ed25519_is_valid_point,
    crypto_scalarmult,
    crypto_scalarmult_base,
)
from nacl.exceptions import CryptoError
from nacl.exceptions import RuntimeError as NaclRuntimeError

from . import bech32
from .encoding import b64decode, b64encode, hkdf_sha256
from .errors import HeaderError, KeyFormatError
from .header import Stanza
from .wrap import unwrap_file_key, wrap_file_key

TYPE = "X25519"
_INFO = b"age-encryption.org/v1/X25519"
RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"


@dataclass(frozen=True)
class X25519Recipient:
    public_key: bytes
    type: str = TYPE

    @classmethod
    def from_string(cls, text: str) -> "X25519Recipient":
        hrp, data = bech32.decode(text)
        if hrp != RECIPIENT_HRP or len(data) != 32:
            raise KeyFormatError("not an age X25519 recipient (age1…)")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode(RECIPIENT_HRP, self.public_key)

    def wrap(self, file_key: bytes) -> list[Stanza]:
        ephemeral = os.urandom(32)
        share = crypto_scalarmult_base(ephemeral)
        shared = crypto_scalarmult(ephemeral, self.public_key)
        key = hkdf_sha256(shared, share + self.public_key, _INFO)
        return [Stanza(TYPE, [b64encode(share)], wrap_file_key(key, file_key))]


@dataclass(frozen=True, repr=False)
class X25519Identity:
    secret: bytes
    type: str = TYPE

    def __repr__(self) -> str:  # never print a secret by accident
        return "X25519Identity(<secret>)"

    @classmethod
    def generate(cls) -> "X25519Identity":
        return cls(os.urandom(32))

    @classmethod
    def from_secret(cls, secret: bytes) -> "X25519Identity":
        if len(secret) != 32:
            raise KeyFormatError("an X25519 identity is 32 bytes")
        return cls(bytes(secret))

    @classmethod
    def from_string(cls, text: str) -> "X25519Identity":
        hrp, data = bech32.decode(text)
        if hrp != IDENTITY_HRP or len(data) != 32:
            raise KeyFormatError("not an age X25519 identity (AGE-SECRET-KEY-1…)")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode(IDENTITY_HRP, self.secret, upper=True)

    def recipient(self) -> X25519Recipient:
        return X25519Recipient(crypto_scalarmult_base(self.secret))

    def unwrap(self, stanzas: list[Stanza]) -> bytes | None:
        public = crypto_scalarmult_base(self.secret)
        for stanza in stanzas:
            if stanza.type != TYPE:
                continue
            if len(stanza.args) != 1:
                raise HeaderError("an X25519 stanza has the wrong number of arguments")
            share = b64decode(stanza.args[0], "X25519 share")
            if len(share) != 32:
                raise HeaderError("an X25519 stanza has a share of the wrong length")
            if len(stanza.body) != 32:
                raise HeaderError("an X25519 stanza has a body of the wrong length")
            try:
                shared = crypto_scalarmult(self.secret, share)
            except (NaclRuntimeError, CryptoError):
                shared = b"\x00" * 32
            if shared == b"\x00" * 32:
                raise HeaderError("an X25519 stanza has a low-order share (a malicious file)")
            key = hkdf_sha256(shared, share + public, _INFO)
            file_key = unwrap_file_key(key, stanza.body)
            if file_key is not None:
                return file_key
        return None


_P = 2**255 - 19


def is_generated_share(share: bytes) -> bool:
    """Whether ``share`` can be an X25519 public key made the usual way: a canonical
    u-coordinate (below p, so the top bit is clear) of a point in the prime-order subgroup.

    Why: an ephemeral share is ``clamp(e)·G``, and a clamped scalar is a multiple of the
    cofactor, so every honest share passes; 32 random bytes pass about one time in 32 (top
    bit, curve or twist, subgroup). It needs no key, so the server can refuse junk headers with
    it. Checked on the Edwards form, y = (u - 1) / (u + 1), with libsodium.
    """
    if len(share) != 32:
        return False
    u = int.from_bytes(share, "little")
    if u >= _P or (u + 1) % _P == 0:
        return False
    y = (u - 1) * pow(u + 1, _P - 2, _P) % _P
    return bool(crypto_core_ed25519_is_valid_point(y.to_bytes(32, "little")))
