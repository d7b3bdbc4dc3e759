"""Wrapping the 16-byte file key with ChaCha20-Poly1305 under a zero nonce.

Shared by the X25519 and scrypt stanzas (the spec fixes the nonce at zero: every wrap key is
fresh, derived from an ephemeral share or a random salt).
"""

from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

_ZERO_NONCE = b"\x00" * 12


def wrap_file_key(key: bytes, file_key: bytes) -> bytes:
    return crypto_aead_chacha20poly1305_ietf_encrypt(file_key, None, _ZERO_NONCE, key)


def unwrap_file_key(key: bytes, body: bytes) -> bytes | None:
    """Return the file key, or None when this key did not wrap it (not an error)."""
    try:
        return crypto_aead_chacha20poly1305_ietf_decrypt(body, None, _ZERO_NONCE, key)
    except CryptoError:
        return None
