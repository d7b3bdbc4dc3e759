"""The editor public key file (``editor.pub``, docs/formats.md "Editor public key file").

``guwah-editor keygen`` writes it and the operator's ``guwah desk add-key`` reads it, so the
format lives here rather than in either tool: ``name:``, ``age-recipient:``, ``ed25519:``
(base64) and ``fingerprint:`` lines; ``#`` lines are comments. The fingerprint covers both
keys and is what the editor reads aloud to the operator.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from app.crypto import KeyFormatError, fingerprint, parse_recipient

from .ed25519 import public_key_from_b64


class EditorKeyError(ValueError):
    """The public key file cannot be used; str() is one sentence saying why."""


def key_fingerprint(age_recipient: str, ed25519_public: bytes) -> str:
    """Fingerprint of an editor public key: covers both the age and the signing key."""
    return fingerprint(age_recipient.encode("ascii") + b"\n" + ed25519_public)


@dataclass(frozen=True)
class EditorKey:
    """An editor's public keys: the age recipient to encrypt to, the Ed25519 key to verify."""

    name: str
    age_recipient: str
    ed25519_public: bytes

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.age_recipient, self.ed25519_public)

    def to_text(self) -> str:
        return (
            "# Guwah editor public key. Give this file to the server operator, and read the\n"
            "# fingerprint aloud to them so they can check it arrived unchanged.\n"
            f"name: {self.name}\n"
            f"age-recipient: {self.age_recipient}\n"
            f"ed25519: {base64.b64encode(self.ed25519_public).decode()}\n"
            f"fingerprint: {self.fingerprint}\n"
        )

    @classmethod
    def from_text(cls, text: str) -> EditorKey:
        """Parse the file; a ``fingerprint:`` line, when present, must match the keys."""
        fields = _fields(text)
        try:
            name, recipient, encoded = fields["name"], fields["age-recipient"], fields["ed25519"]
        except KeyError as exc:
            raise EditorKeyError(f"the public key file has no '{exc.args[0]}' line") from None
        public = public_key_from_b64(encoded)
        if public is None:
            raise EditorKeyError("the public key file's ed25519 line is not base64 of 32 bytes")
        try:
            parse_recipient(recipient)
        except KeyFormatError as exc:
            raise EditorKeyError(
                f"the public key file's age-recipient is invalid: {exc}"
            ) from None
        key = cls(name, recipient, public)
        if "fingerprint" in fields and fields["fingerprint"] != key.fingerprint:
            raise EditorKeyError(
                "the public key file's fingerprint does not match its keys: it was altered"
            )
        return key


def _fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, sep, value = line.partition(":")
            if not sep:
                raise EditorKeyError("the public key file has a line without 'field: value'")
            fields[key.strip()] = value.strip()
    return fields
