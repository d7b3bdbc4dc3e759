"""Parsing recipients and identities from their standard string forms."""

from typing import Protocol

from .errors import KeyFormatError
from .header import Stanza
from .hybrid import HybridIdentity, HybridRecipient
from .x25519 import X25519Identity, X25519Recipient


class Recipient(Protocol):
    @property
    def type(self) -> str: ...

    def wrap(self, file_key: bytes) -> list[Stanza]: ...


class Identity(Protocol):
    @property
    def type(self) -> str: ...

    def unwrap(self, stanzas: list[Stanza]) -> bytes | None: ...


def parse_recipient(text: str) -> X25519Recipient | HybridRecipient:
    text = text.strip()
    if text.startswith("age1pq1"):
        return HybridRecipient.from_string(text)
    if text.startswith("age1"):
        return X25519Recipient.from_string(text)
    raise KeyFormatError(
        "not an age recipient: expected a key starting with age1 (X25519) or age1pq1 (post-quantum)"
    )


def parse_identity(text: str) -> X25519Identity | HybridIdentity:
    text = text.strip()
    if text.upper().startswith("AGE-SECRET-KEY-PQ-1"):
        return HybridIdentity.from_string(text)
    if text.upper().startswith("AGE-SECRET-KEY-1"):
        return X25519Identity.from_string(text)
    raise KeyFormatError("not an age identity: expected a line starting with AGE-SECRET-KEY-")


def parse_identity_file(text: str) -> list[X25519Identity | HybridIdentity]:
    """Parse an age identity file: one key per line, # comments and blank lines ignored."""
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(parse_identity(line))
        except KeyFormatError as exc:
            raise KeyFormatError(f"identity file line {number}: {exc}") from None
    if not identities:
        raise KeyFormatError("the identity file holds no AGE-SECRET-KEY- line")
    return identities


def check_recipient_mix(recipients: "list[Recipient]") -> None:
    """Refuse what the age spec forbids: scrypt with others, and hybrid mixed with X25519.

    Mixing a post-quantum recipient with a classical one would let a quantum adversary read
    the file through the classical stanza, silently losing the protection the hybrid key
    promised.
    """
    types = {r.type for r in recipients}
    if not recipients:
        raise KeyFormatError("at least one recipient is needed")
    if "scrypt" in types and len(recipients) > 1:
        raise KeyFormatError("a passphrase can't be combined with other recipients")
    if "mlkem768x25519" in types and len(types) > 1:
        raise KeyFormatError(
            "post-quantum (age1pq1…) and classical (age1…) recipients can't be mixed in one file"
        )
