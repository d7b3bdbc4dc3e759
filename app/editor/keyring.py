"""The editor's keyring: one passphrase-protected age file plus a public key file.

Layout of a keyring folder (0700, files 0600):

- ``identity.age`` — an age file encrypted to a scrypt (passphrase) recipient.  Its plaintext
  is an ordinary age identity file: comment lines, then the ``AGE-SECRET-KEY-…`` line.  The
  Ed25519 signing seed rides along in a ``# guwah-ed25519-seed:`` comment, so in an emergency
  ``age -d identity.age > key.txt`` followed by ``age -d -i key.txt`` still works.
- ``editor.pub`` — what the operator needs: name, age recipient, Ed25519 public key and the
  fingerprint to read aloud (app/protocol/editorkey.py owns its format).
"""

import base64
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from app.crypto import (
    HybridIdentity,
    ScryptIdentity,
    ScryptRecipient,
    X25519Identity,
    decrypt,
    encrypt,
    parse_identity,
)
from app.durable import write_new_file
from app.protocol.editorkey import EditorKey, EditorKeyError
from app.protocol.utcday import today

from .errors import EditorError

IDENTITY_FILE = "identity.age"
PUBLIC_FILE = "editor.pub"
_SEED_PREFIX = "# guwah-ed25519-seed: "
MIN_PASSPHRASE = 12


def default_keyring() -> Path:
    """GUWAH_KEYRING, else the user's data dir (XDG), so keys never land in a project folder."""
    if env := os.environ.get("GUWAH_KEYRING"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "guwah-editor"


@dataclass(frozen=True, repr=False)
class Keyring:
    name: str
    identity: X25519Identity | HybridIdentity
    signing_key: SigningKey

    def __repr__(self) -> str:
        return f"Keyring({self.name!r})"

    @property
    def public(self) -> EditorKey:
        return EditorKey(
            self.name, str(self.identity.recipient()), bytes(self.signing_key.verify_key)
        )

    def identity_text(self) -> str:
        """The plaintext of identity.age: a valid age identity file."""
        created = today().isoformat()
        seed = base64.b64encode(bytes(self.signing_key)).decode()
        return (
            f"# Guwah editor identity: {self.name}\n"
            f"# created: {created}\n"
            f"# public key: {self.identity.recipient()}\n"
            f"{_SEED_PREFIX}{seed}\n"
            f"{self.identity}\n"
        )

    @classmethod
    def from_identity_text(cls, text: str) -> "Keyring":
        name = "editor"
        seed = None
        identity = None
        for line in text.splitlines():
            if line.startswith("# Guwah editor identity: "):
                name = line.split(": ", 1)[1]
            elif line.startswith(_SEED_PREFIX):
                seed = base64.b64decode(line[len(_SEED_PREFIX) :])
            elif line.strip() and not line.startswith("#"):
                identity = parse_identity(line)
        if identity is None or seed is None or len(seed) != 32:
            raise EditorError("the keyring's identity file is incomplete (no key or no seed)")
        return cls(name, identity, SigningKey(seed))

    @classmethod
    def generate(cls, name: str, post_quantum: bool = True) -> "Keyring":
        identity = HybridIdentity.generate() if post_quantum else X25519Identity.generate()
        return cls(name, identity, SigningKey.generate())


def check_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE:
        raise EditorError(
            f"the passphrase is too short: use at least {MIN_PASSPHRASE} characters "
            "(several random words are best)"
        )


def create_keyring(directory: Path, keyring: Keyring, passphrase: str, work_factor: int) -> None:
    check_passphrase(passphrase)
    if (directory / IDENTITY_FILE).exists():
        raise EditorError(
            f"a keyring already exists in {directory}: choose another --keyring folder"
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(directory.stat().st_mode) & 0o077:
        os.chmod(directory, 0o700)
    sealed = encrypt(keyring.identity_text().encode(), [ScryptRecipient(passphrase, work_factor)])
    write_new_file(directory / IDENTITY_FILE, sealed)
    write_new_file(directory / PUBLIC_FILE, keyring.public.to_text().encode())
    os.chmod(directory / PUBLIC_FILE, 0o644)


def open_keyring(directory: Path, passphrase: str) -> Keyring:
    path = directory / IDENTITY_FILE
    if not path.exists():
        raise EditorError(f"no keyring in {directory}: run 'guwah-editor keygen' or pass --keyring")
    return Keyring.from_identity_text(
        decrypt(path.read_bytes(), [ScryptIdentity(passphrase)]).decode("utf-8")
    )


def read_public(directory: Path) -> EditorKey:
    path = directory / PUBLIC_FILE
    if not path.exists():
        raise EditorError(f"no public key in {directory}: run 'guwah-editor keygen' first")
    try:
        return EditorKey.from_text(path.read_text("utf-8"))
    except EditorKeyError as exc:
        raise EditorError(str(exc)) from None
