"""The scrypt (passphrase) recipient type (age spec, "The scrypt recipient type").

Used for the editor's keyring file, so that in an emergency ``age -d`` opens it.  A scrypt
stanza must be the only stanza in a header (it implies authentication by the passphrase).
"""

import hashlib
import os
import re
from dataclasses import dataclass

from .encoding import b64decode, b64encode
from .errors import HeaderError
from .header import Stanza
from .wrap import unwrap_file_key, wrap_file_key

TYPE = "scrypt"
_SALT_LABEL = b"age-encryption.org/v1/scrypt"
DEFAULT_WORK_FACTOR = 18  # as age: about a second on a laptop
MAX_WORK_FACTOR = 22  # as age: refuse files that would take minutes and GiBs to open
_DECIMAL = re.compile(r"[1-9][0-9]{0,1}")


def _scrypt(passphrase: bytes, salt: bytes, log_n: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        passphrase,
        salt=_SALT_LABEL + salt,
        n=n,
        r=8,
        p=1,
        dklen=32,
        maxmem=128 * 8 * n + (32 << 20),
    )


def _bytes(passphrase: str | bytes) -> bytes:
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase


@dataclass(frozen=True, repr=False)
class ScryptRecipient:
    passphrase: bytes
    work_factor: int = DEFAULT_WORK_FACTOR
    type: str = TYPE

    def __init__(self, passphrase: str | bytes, work_factor: int = DEFAULT_WORK_FACTOR) -> None:
        object.__setattr__(self, "passphrase", _bytes(passphrase))
        object.__setattr__(self, "work_factor", work_factor)
        object.__setattr__(self, "type", TYPE)

    def wrap(self, file_key: bytes) -> list[Stanza]:
        salt = os.urandom(16)
        key = _scrypt(self.passphrase, salt, self.work_factor)
        return [
            Stanza(TYPE, [b64encode(salt), str(self.work_factor)], wrap_file_key(key, file_key))
        ]


@dataclass(frozen=True, repr=False)
class ScryptIdentity:
    passphrase: bytes
    max_work_factor: int = MAX_WORK_FACTOR
    type: str = TYPE

    def __init__(self, passphrase: str | bytes, max_work_factor: int = MAX_WORK_FACTOR) -> None:
        object.__setattr__(self, "passphrase", _bytes(passphrase))
        object.__setattr__(self, "max_work_factor", max_work_factor)
        object.__setattr__(self, "type", TYPE)

    def unwrap(self, stanzas: list[Stanza]) -> bytes | None:
        for stanza in stanzas:
            if stanza.type != TYPE:
                continue
            if len(stanzas) != 1:
                raise HeaderError("a passphrase-encrypted file must have exactly one stanza")
            if len(stanza.args) != 2:
                raise HeaderError("a scrypt stanza has the wrong number of arguments")
            salt = b64decode(stanza.args[0], "scrypt salt")
            if len(salt) != 16:
                raise HeaderError("a scrypt stanza has a salt of the wrong length")
            if not _DECIMAL.fullmatch(stanza.args[1]):
                raise HeaderError("a scrypt stanza has an invalid work factor")
            log_n = int(stanza.args[1])
            if log_n > self.max_work_factor:
                raise HeaderError(
                    f"the passphrase work factor 2^{log_n} is higher than the 2^"
                    f"{self.max_work_factor} this tool accepts"
                )
            if len(stanza.body) != 32:
                raise HeaderError("a scrypt stanza has a body of the wrong length")
            return unwrap_file_key(_scrypt(self.passphrase, salt, log_n), stanza.body)
        return None
