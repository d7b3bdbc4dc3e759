"""Codenames and the mailbox they open (docs/formats.md, "Codename and mailbox").

A witness remembers one codename: 7 words drawn uniformly from the 7,776-word EFF large
wordlist (7 * log2(7776) = 90.5 bits).  The codename alone carries the security; the
memory-hard KDF is defence in depth, so its cost is kept affordable for Tor Browser at
"Safer" (no JIT, no WebAssembly).  The browser (app/web/js/mailbox.js) and the server derive
exactly the same values; tests/vectors/mailbox.json pins both.

    out   = scrypt(P = utf8(normalized codename), S = "guwah.org/v1/mailbox",
                   N = 2^12, r = 8, p = 1, dkLen = 64)
    token = out[0:32]                       -> the server stores only SHA-256(label || token)
    seed  = out[32:64]                      -> the witness's age reply identity
"""

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .hybrid import TYPE as HYBRID
from .hybrid import HybridIdentity
from .x25519 import TYPE as X25519
from .x25519 import X25519Identity

CODENAME_WORDS = 7
KDF_PARAMS = {
    "name": "scrypt",
    "salt": "guwah.org/v1/mailbox",
    "log_n": 12,
    "r": 8,
    "p": 1,
    "dklen": 64,
}
_TOKEN_LABEL = b"guwah.org/v1/token"
_SEPARATORS = re.compile(r"[\s\x1c-\x1f\x85\u2010-\u2015\u2212\ufe58\ufe63\uff0d\ufeff-]+")


class CodenameError(ValueError):
    """The text entered is not a valid codename (a message a witness can act on)."""


@cache
def words() -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("wordlist.txt").read_text("ascii")
    wordlist = tuple(w for w in text.split() if w)
    assert len(wordlist) == 7776 and len(set(wordlist)) == 7776, "corrupt wordlist.txt"
    return wordlist


@cache
def _word_set() -> frozenset[str]:
    return frozenset(words())


def new_codename() -> str:
    """A fresh codename from the operating system's CSPRNG."""
    wordlist = words()
    return " ".join(secrets.choice(wordlist) for _ in range(CODENAME_WORDS))


def normalize_codename(text: str) -> str:
    """Canonical form: NFKC, lower case, words separated by single spaces.

    Any run of whitespace or dashes separates words (phones turn "--" into an en dash); the
    browser uses the same separator set (app/web/js/mailbox-core.js, SEPARATORS).
    """
    cleaned = unicodedata.normalize("NFKC", text).lower()
    parts = [p for p in _SEPARATORS.split(cleaned) if p]
    if len(parts) != CODENAME_WORDS:
        raise CodenameError(f"A codename has exactly {CODENAME_WORDS} words.")
    known = _word_set()
    if any(p not in known for p in parts):
        raise CodenameError("One of the words is not in the codename word list: check spelling.")
    return " ".join(parts)


def token_hash(token: bytes) -> str:
    return hashlib.sha256(_TOKEN_LABEL + token).hexdigest()


@dataclass(frozen=True, repr=False)
class Mailbox:
    token: bytes
    token_hash: str
    reply_identity: X25519Identity | HybridIdentity
    reply_recipient: str

    def __repr__(self) -> str:
        return f"Mailbox(token_hash={self.token_hash[:12]}…)"


def kdf(normalized: str) -> bytes:
    p = KDF_PARAMS
    n = 1 << int(p["log_n"])  # type: ignore[call-overload]
    return hashlib.scrypt(
        normalized.encode("utf-8"),
        salt=str(p["salt"]).encode(),
        n=n,
        r=int(p["r"]),  # type: ignore[call-overload]
        p=int(p["p"]),  # type: ignore[call-overload]
        dklen=int(p["dklen"]),  # type: ignore[call-overload]
        maxmem=128 * 8 * n + (16 << 20),
    )


def derive_mailbox(codename: str, kind: str) -> Mailbox:
    """Derive the mailbox for a codename; ``kind`` is the desk's key type."""
    out = kdf(normalize_codename(codename))
    token, seed = out[:32], out[32:64]
    identity: X25519Identity | HybridIdentity
    if kind == X25519:
        identity = X25519Identity.from_secret(seed)
    elif kind == HYBRID:
        identity = HybridIdentity.from_seed(seed)
    else:
        raise ValueError(f"unknown key type {kind!r}")
    return Mailbox(token, token_hash(token), identity, str(identity.recipient()))
