"""The server's Ed25519 signing key: signs export bundles; editors pin its fingerprint.

Stored as one line of base64 (the 32-byte seed) in ``DATA_DIR/server-signing-key``, mode 0600.
Its fingerprint is ``app.crypto.fingerprint`` over the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from nacl.signing import SigningKey

from app.crypto import fingerprint
from app.durable import write_new_file


class ServerKeyError(Exception):
    """The key file is missing or damaged; the message says what to do."""


def create_server_key(path: Path) -> SigningKey:
    """Write a new key (0600, fsynced); refuses to overwrite an existing file."""
    key = SigningKey.generate()
    write_new_file(path, base64.b64encode(bytes(key)) + b"\n")
    return key


def load_server_key(path: Path) -> SigningKey:
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        raise ServerKeyError(f"no server signing key at {path}: run guwah init") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ServerKeyError(f"cannot read the server signing key {path}: {exc}") from None
    try:
        seed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise ServerKeyError(f"{path} is not a server signing key (base64 of 32 bytes)")
    return SigningKey(seed)


def public_key_bytes(key: SigningKey) -> bytes:
    return bytes(key.verify_key)


def server_fingerprint(key: SigningKey) -> str:
    return fingerprint(public_key_bytes(key))
