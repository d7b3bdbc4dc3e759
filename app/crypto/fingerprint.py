"""Short fingerprints that two people can read aloud to each other and compare.

``fingerprint(data)`` = the first 100 bits of SHA-256("guwah.org/v1/fingerprint\\n" || data),
in Crockford-free RFC 4648 base32, as five groups of four characters (e.g. ``K7QF-2M4A-…``).
100 bits make a second preimage (an attacker's key with the same fingerprint) infeasible,
and 20 characters are short enough for a phone call.  docs/formats.md says what ``data`` is for
each key type.
"""

import base64
import hashlib

_LABEL = b"guwah.org/v1/fingerprint\n"


def fingerprint(data: bytes) -> str:
    digest = hashlib.sha256(_LABEL + data).digest()
    text = base64.b32encode(digest).decode("ascii")[:20]
    return "-".join(text[i : i + 4] for i in range(0, 20, 4))
