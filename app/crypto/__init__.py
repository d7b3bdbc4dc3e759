"""age v1 for Guwah: the one ciphertext format (age-encryption.org/v1, C2SP).

No web imports here: the offline editor tool installs this package without the server stack.
See docs/formats.md for everything Guwah builds on top of age.
"""

from .age import Decryptor, Encryptor, decrypt, decrypt_stream, encrypt, encrypt_stream, read_header
from .errors import (
    AgeError,
    ArmorError,
    HeaderError,
    KeyFormatError,
    MacMismatchError,
    NoIdentityMatchError,
    NotAgeFileError,
    PayloadError,
)
from .fingerprint import fingerprint
from .header import Header, Stanza
from .hybrid import HybridIdentity, HybridRecipient
from .keys import Identity, Recipient, parse_identity, parse_identity_file, parse_recipient
from .padding import padme
from .passphrase import ScryptIdentity, ScryptRecipient
from .x25519 import X25519Identity, X25519Recipient

__all__ = [
    "AgeError",
    "ArmorError",
    "Decryptor",
    "Encryptor",
    "Header",
    "HeaderError",
    "HybridIdentity",
    "HybridRecipient",
    "Identity",
    "KeyFormatError",
    "MacMismatchError",
    "NoIdentityMatchError",
    "NotAgeFileError",
    "PayloadError",
    "Recipient",
    "ScryptIdentity",
    "ScryptRecipient",
    "Stanza",
    "X25519Identity",
    "X25519Recipient",
    "decrypt",
    "decrypt_stream",
    "encrypt",
    "encrypt_stream",
    "fingerprint",
    "padme",
    "parse_identity",
    "parse_identity_file",
    "parse_recipient",
    "read_header",
]
