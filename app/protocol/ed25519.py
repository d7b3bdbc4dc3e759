"""An Ed25519 public key as every text format of Guwah carries it: base64 of 32 bytes.

The editor key files, the bundle manifests, the server's pinned key and the desks' editor keys
all write it so; every reader asks here, so "is this a key" has one answer.
"""

from __future__ import annotations

import base64
import binascii

ED25519_BYTES = 32


def public_key_from_b64(value: object) -> bytes | None:
    """The 32 key bytes of ``value``, or None when it is not base64 of exactly 32 bytes."""
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == ED25519_BYTES else None
