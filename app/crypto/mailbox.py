"""Codenames and the mailbox they open (docs/formats.md, "Codename and mailbox").

A witness remembers one codename: 7 words drawn uniformly from the 7,776-word EFF large
wordlist (7 * log2(7776) = 90.5 bits), plus a check word (app/crypto/codename.py).  The
codename alone carries the security; the memory-hard KDF is defence in depth, so its cost is
kept affordable for Tor Browser at "Safer" (no JIT, no WebAssembly).
The browser (app/web/js/mailbox.js) and the server derive exactly the same values;
tests/vectors/mailbox.json pins both.

    out   = scrypt(P = utf8(the 7 secret words), S = "guwah.org/v1/mailbox",
                   N = 2^12, r = 8, p = 1, dkLen = 64)
    token = out[0:32]                       -> the server stores only SHA-256(label || token)
    seed  = out[32:64]                      -> the witness's age reply identity
"""

import hashlib
from dataclasses import dataclass
from typing import TypedDict

from . import codename
from .codename import CodenameError, words
from .hybrid import TYPE as HYBRID
from .hybrid import HybridIdentity
from .x25519 import TYPE as X25519
from .x25519 import X25519Identity

CODENAME_WORDS = codename.SECRET_WORDS  # secret words; the written codename adds a check word
class KdfParams(TypedDict):
    """The scrypt parameters of the mailbox derivation (the browser holds the same)."""

    name: str
    salt: str
    log_n: int
    r: int
    p: int
    dklen: int


KDF_PARAMS: KdfParams = {
    "name": "scrypt",
    "salt": "guwah.org/v1/mailbox",
    "log_n": 12,
    "r": 8,
    "p": 1,
    "dklen": 64,
}
_TOKEN_LABEL = b"guwah.org/v1/token"
__all__ = ["CodenameError", "words"]  # re-exported: older callers import them from here


def new_codename() -> str:
    """A fresh codename as the witness writes it: 7 secret words and the check word."""
    return codename.new().as_words


def normalize_codename(text: str) -> str:
    """The KDF input for a codename typed as words or numbers (app/crypto/codename.py).

    Seven secret words joined by single spaces; the check word is validated and dropped, so
    the KDF sees exactly what it saw before the check word existed.
    """
    return codename.parse(text).kdf_input


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
    n = 1 << p["log_n"]
    return hashlib.scrypt(
        normalized.encode("utf-8"),
        salt=p["salt"].encode(),
        n=n,
        r=p["r"],
        p=p["p"],
        dklen=p["dklen"],
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
