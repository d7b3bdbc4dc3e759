"""The server's Ed25519 signing key: signs export bundles; editors pin its fingerprint.

Stored as one line of base64 (the 32-byte seed) in ``DATA_DIR/server-signing-key``, mode 0600.
Its fingerprint is ``app.crypto.fingerprint`` over the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from nacl.signing import SigningKey

from app.crypto import fingerprint


class ServerKeyError(Exception):
    """The key file is missing or damaged; the message says what to do."""


def create_server_key(path: Path) -> SigningKey:
    """Write a new key; refuses to overwrite an existing file (O_EXCL)."""
    key = SigningKey.generate()
    data = base64.b64encode(bytes(key)).decode("ascii") + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
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
