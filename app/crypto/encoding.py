"""Canonical unpadded base64 (age's header encoding) and HKDF-SHA-256.

age rejects non-canonical base64 so that a header has exactly one byte representation and
cannot be altered without breaking the MAC; Python's decoder is lenient, so we re-encode and
compare.
"""

import base64
import binascii
import hashlib
import hmac

from .errors import HeaderError


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str, what: str = "value") -> bytes:
    """Decode canonical, unpadded standard base64 or raise HeaderError."""
    if "=" in text or "\n" in text or "\r" in text:
        raise HeaderError(f"the age header has a non-canonical base64 {what}")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HeaderError(f"the age header has an invalid base64 {what}") from exc
    if b64encode(data) != text:
        raise HeaderError(f"the age header has a non-canonical base64 {what}")
    return data


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with SHA-256 (stdlib only, so the editor tool needs nothing extra)."""
    prk = hmac.new(salt or b"\x00" * 32, ikm, hashlib.sha256).digest()
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]
