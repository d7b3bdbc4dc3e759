"""One exception family for everything that can go wrong reading or writing age files.

Callers (the editor CLI, the web server) catch :class:`AgeError` and show ``str(exc)`` to a
person, so every message says what is wrong and, where possible, what to do about it.
"""


class AgeError(Exception):
    """Base class: any failure to parse, authenticate or decrypt an age file."""


class HeaderError(AgeError):
    """The age header is malformed or uses something this implementation refuses."""


class NotAgeFileError(HeaderError):
    """The input does not start like an age file at all."""


class MacMismatchError(HeaderError):
    """The header MAC does not verify: the header was altered after encryption."""


class NoIdentityMatchError(AgeError):
    """None of the given identities can open this file (wrong key or wrong passphrase)."""


class PayloadError(AgeError):
    """The encrypted payload is truncated, altered or has data after its end."""


class ArmorError(AgeError):
    """The ASCII armor (-----BEGIN AGE ENCRYPTED FILE-----) is not strict PEM."""


class KeyFormatError(AgeError):
    """A recipient or identity string is not a valid age key."""
