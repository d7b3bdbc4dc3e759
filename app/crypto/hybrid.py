"""The post-quantum hybrid recipient type ``mlkem768x25519`` (X-Wing; age spec).

HPKE (RFC 9180) SealBase with the MLKEM768-X25519 KEM of draft-ietf-hpke-pq, HKDF-SHA256 and
ChaCha20-Poly1305, ``info = "age-encryption.org/mlkem768x25519"``.  ``cryptography`` does the
whole HPKE job; it is the only primitive we take from it.  The identity is a 32-byte seed
expanded with SHAKE256 to the ML-KEM-768 seed (64 bytes) and the X25519 secret (32 bytes), as
age 1.3 and npm ``age-encryption`` 0.3 do.
"""

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from nacl.bindings import crypto_scalarmult
from nacl.exceptions import CryptoError
from nacl.exceptions import RuntimeError as NaclRuntimeError

from . import bech32
from .encoding import b64decode, b64encode
from .errors import HeaderError, KeyFormatError
from .header import Stanza

TYPE = "mlkem768x25519"
_INFO = b"age-encryption.org/mlkem768x25519"
RECIPIENT_HRP = "age1pq"
IDENTITY_HRP = "age-secret-key-pq-"
_MLKEM_PK = 1184
_ENC = 1120
_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


@dataclass(frozen=True)
class HybridRecipient:
    public_key: bytes  # ML-KEM-768 encapsulation key (1184) || X25519 public key (32)
    type: str = TYPE

    @classmethod
    def from_string(cls, text: str) -> "HybridRecipient":
        hrp, data = bech32.decode(text)
        if hrp != RECIPIENT_HRP or len(data) != _MLKEM_PK + 32:
            raise KeyFormatError("not an age post-quantum recipient (age1pq1…)")
        try:
            cls._hpke_key(data)
        except ValueError:
            raise KeyFormatError("the post-quantum recipient holds an invalid key") from None
        return cls(data)

    @staticmethod
    def _hpke_key(data: bytes) -> hpke.MLKEM768X25519PublicKey:
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM_PK]),
            x25519.X25519PublicKey.from_public_bytes(data[_MLKEM_PK:]),
        )

    def __str__(self) -> str:
        return bech32.encode(RECIPIENT_HRP, self.public_key)

    def wrap(self, file_key: bytes) -> list[Stanza]:
        sealed = _SUITE.encrypt(file_key, self._hpke_key(self.public_key), info=_INFO)
        return [Stanza(TYPE, [b64encode(sealed[:_ENC])], sealed[_ENC:])]


@dataclass(frozen=True, repr=False)
class HybridIdentity:
    seed: bytes
    type: str = TYPE

    def __repr__(self) -> str:
        return "HybridIdentity(<secret>)"

    @classmethod
    def generate(cls) -> "HybridIdentity":
        return cls(os.urandom(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> "HybridIdentity":
        if len(seed) != 32:
            raise KeyFormatError("a post-quantum identity seed is 32 bytes")
        return cls(bytes(seed))

    @classmethod
    def from_string(cls, text: str) -> "HybridIdentity":
        hrp, data = bech32.decode(text)
        if hrp != IDENTITY_HRP or len(data) != 32:
            raise KeyFormatError("not an age post-quantum identity (AGE-SECRET-KEY-PQ-1…)")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode(IDENTITY_HRP, self.seed, upper=True)

    def _keys(self) -> tuple[mlkem.MLKEM768PrivateKey, x25519.X25519PrivateKey]:
        expanded = hashlib.shake_256(self.seed).digest(96)
        return (
            mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64]),
            x25519.X25519PrivateKey.from_private_bytes(expanded[64:]),
        )

    def recipient(self) -> HybridRecipient:
        m, x = self._keys()
        return HybridRecipient(
            m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
        )

    def unwrap(self, stanzas: list[Stanza]) -> bytes | None:
        private = None
        for stanza in stanzas:
            if stanza.type != TYPE:
                continue
            if len(stanza.args) != 1:
                raise HeaderError("a post-quantum stanza has the wrong number of arguments")
            enc = b64decode(stanza.args[0], "post-quantum encapsulated key")
            if len(enc) != _ENC:
                raise HeaderError(
                    "a post-quantum stanza has an encapsulated key of the wrong length"
                )
            if len(stanza.body) != 32:
                raise HeaderError("a post-quantum stanza has a body of the wrong length")
            if private is None:
                keys = self._keys()
                x_secret = keys[1].private_bytes_raw()
                private = hpke.MLKEM768X25519PrivateKey(*keys)
            # the X25519 half must not yield the all-zero shared secret (a malicious file)
            try:
                shared = crypto_scalarmult(x_secret, enc[-32:])
            except (NaclRuntimeError, CryptoError):
                shared = b"\x00" * 32
            if shared == b"\x00" * 32:
                raise HeaderError("a post-quantum stanza has a low-order X25519 share")
            try:
                return _SUITE.decrypt(enc + stanza.body, private, info=_INFO)
            except (InvalidTag, ValueError):
                continue
        return None
