"""Reading an editor's public key file (``editor.pub``, written by ``guwah-editor keygen``).

The format belongs to the editor tool (app/editor/keyring.py, docs/formats.md "Editor public key
file"): ``name:``, ``age-recipient:``, ``ed25519:`` (base64) and ``fingerprint:`` lines. The
server reuses that parser so there is one definition, and additionally *requires* the
fingerprint line: the operator compares it aloud with the editor before adding the key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from app.editor.errors import EditorError
from app.editor.keyring import PublicKey

MAX_KEY_FILE = 64 * 1024


class KeyFileError(Exception):
    """The key file cannot be used; one sentence."""


@dataclass(frozen=True)
class EditorPublicKey:
    name: str
    age_recipient: str
    ed25519_public: str  # base64
    fingerprint: str


def read_editor_key(path: Path) -> EditorPublicKey:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large to be an editor public key file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not a text file") from None
    declared = None
    for line in text.splitlines():
        if line.strip().lower().startswith("fingerprint:"):
            declared = line.partition(":")[2].strip()
    if not declared:
        raise KeyFileError(
            f"{path} has no 'fingerprint:' line: ask the editor for the file written by "
            "guwah-editor keygen"
        )
    try:
        key = PublicKey.from_text(text)
    except EditorError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    if key.fingerprint != declared:  # from_text checks it too; keep the server's own check
        raise KeyFileError(f"{path}: the fingerprint does not match the keys: it was altered")
    return EditorPublicKey(
        key.name,
        key.age_recipient,
        base64.b64encode(key.ed25519_public).decode("ascii"),
        key.fingerprint,
    )
