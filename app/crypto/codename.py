"""The codename's written format: seven secret words, one check word, and a numeric form.

This module is the one owner of how a codename is written, parsed and checked
(docs/codename.md); app/web/js/mailbox-core.js mirrors it and tests/vectors/codename-format.json
(written by ``python -m tests.make_codename_vectors``) pins both.

- The secret is 7 indices into the 7,776-word EFF list (7 * log2(7776) = 90.5 bits).  Only
  these seven words, joined by single spaces, go into the mailbox KDF, exactly as before the
  check word existed: every mailbox and every test vector stays the same.
- An 8th *check word* is ``sum(WEIGHTS[i] * index[i]) mod 7776``.  Each weight is coprime to
  7776 = 2^5 * 3^5, so changing any single word (or the check word) always changes the sum: a
  one-word typo is caught every time, any other error with probability 7775/7776.  Why not a
  hash: a hash catches a single typo only with probability 7775/7776, the weighted sum always.
- The numeric form writes each of the 8 words as its 4-digit index (0000-7775), in 8 groups.
  Any keyboard can type it; Arabic-Indic, Persian and fullwidth digits are read as 0-9.
- Seven words without a check word are still accepted (codenames made before the check word),
  unchecked.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

SECRET_WORDS = 7
LIST_SIZE = 7776
WEIGHTS = (1, 5, 7, 11, 13, 17, 19)
GROUP_DIGITS = 4
# the same set as app/web/js/mailbox-core.js SEPARATORS: whitespace, dashes, phone hyphens
SEPARATORS = re.compile(r"[\s\x1c-\x1f\x85\u2010-\u2015\u2212\ufe58\ufe63\uff0d\ufeff-]+")
# NFKC already folds fullwidth digits; these two Arabic-script digit sets it leaves alone
_DIGITS = str.maketrans(
    "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
    "\u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7\u06f8\u06f9",
    "0123456789" * 2,
)
_ASCII_DIGITS = re.compile(r"[0-9]+")


class CodenameError(ValueError):
    """Text that is not a codename; ``code`` says why: count | word | number | check."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@cache
def words() -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("wordlist.txt").read_text("ascii")
    wordlist = tuple(w for w in text.split() if w)
    assert len(wordlist) == LIST_SIZE and len(set(wordlist)) == LIST_SIZE, "corrupt wordlist.txt"
    return wordlist


@cache
def _index() -> dict[str, int]:
    return {w: i for i, w in enumerate(words())}


def check_index(secret: tuple[int, ...]) -> int:
    """The check word's index for seven secret indices."""
    return sum(w * i for w, i in zip(WEIGHTS, secret, strict=True)) % LIST_SIZE


@dataclass(frozen=True, repr=False)
class Codename:
    """Seven secret word indices; every written form is computed from them."""

    secret: tuple[int, ...]

    def __repr__(self) -> str:
        return "Codename(…)"

    @property
    def kdf_input(self) -> str:
        """The seven secret words joined by one space: the only thing the KDF sees."""
        return " ".join(words()[i] for i in self.secret)

    @property
    def indices(self) -> tuple[int, ...]:
        return (*self.secret, check_index(self.secret))

    @property
    def as_words(self) -> str:
        return " ".join(words()[i] for i in self.indices)

    @property
    def as_numbers(self) -> str:
        return " ".join(f"{i:04d}" for i in self.indices)


def new() -> Codename:
    """A fresh codename from the operating system's CSPRNG."""
    return Codename(tuple(secrets.randbelow(LIST_SIZE) for _ in range(SECRET_WORDS)))


def _checked(indices: list[int]) -> Codename:
    secret = tuple(indices[:SECRET_WORDS])
    if len(indices) == SECRET_WORDS + 1 and indices[-1] != check_index(secret):
        raise CodenameError("check", "One of the words is wrong.")
    return Codename(secret)


def _from_numbers(parts: list[str]) -> Codename:
    digits = "".join(parts)
    if len(digits) != (SECRET_WORDS + 1) * GROUP_DIGITS:
        raise CodenameError("number", "A numeric codename has 8 groups of 4 digits.")
    indices = [int(digits[k:k + GROUP_DIGITS]) for k in range(0, len(digits), GROUP_DIGITS)]
    if any(i >= LIST_SIZE for i in indices):
        raise CodenameError("number", "One of the number groups is not part of a codename.")
    return _checked(indices)


def parse(text: str) -> Codename:
    """Read a codename typed as words or as numbers; CodenameError when it is not one."""
    cleaned = unicodedata.normalize("NFKC", text).lower().translate(_DIGITS)
    parts = [p for p in SEPARATORS.split(cleaned) if p]
    if parts and all(_ASCII_DIGITS.fullmatch(p) for p in parts):
        return _from_numbers(parts)
    index = _index()
    if any(p not in index for p in parts):
        raise CodenameError("word", "One of the words is not in the codename word list.")
    if len(parts) not in (SECRET_WORDS, SECRET_WORDS + 1):
        raise CodenameError("count", "A codename has 8 words.")
    return _checked([index[p] for p in parts])


def numbers_for(text: str) -> str:
    """The numeric form of a codename written in words (for the receipt)."""
    return parse(text).as_numbers
