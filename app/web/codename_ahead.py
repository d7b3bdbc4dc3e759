"""The codename exists before the testimony is sent, and sending twice makes one submission.

Why: over Tor an answer is often lost.  If the codename were made only while storing the
submission, a lost answer would lose it, and sending the form again could only say "already
sent".  So the codename is shown *before* the final Send (docs/codename.md, "Before Send"):

- JavaScript off: the codename is derived from the form token's random nonce with a key only
  the server holds, ``HMAC(key, nonce)`` -> seven word indices (90.5 bits, the same KDF and
  mailbox derivation as any codename).  The submit page shows it with a required "I have
  written it down or memorised it" box; the POST of that form stores under exactly that
  codename.  A second POST with the same token is answered with the same receipt: the
  codename is derived again, and the submission is the one already stored under its mailbox
  (nothing new is kept to answer it: the mailbox's token hash is already in the database).
- JavaScript on: the browser makes the codename when the page loads and derives the mailbox
  from it.  A commit sent again after a lost answer, with the same form token, the same
  mailbox and the same uploads, is answered with the same receipt; anything else reusing a
  used token is refused.  To recognise it, this process keeps, for the token's lifetime and
  in memory only, a digest of the first commit and the answer it got (a random submission
  id and the desk) under a hash of the token's nonce: nothing about the witness.

No cookie is set: the token in the form is the only thing that ties the two requests.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from app.crypto.codename import LIST_SIZE, SECRET_WORDS, Codename
from app.crypto.mailbox import kdf, token_hash
from app.protocol.followup import first_submission
from app.store import Store, SubmissionInfo

from .errors import N_
from .forms import TOKEN_LIFETIME_HOURS, FormTokens

CONFIRM_FIELD = "kept_codename"
CONFIRM_VALUE = "yes"
_MAX_COMMITS = 200_000
AGAIN_WAIT_STEPS = 60  # a first request of the same form still being stored: wait 30 s
AGAIN_WAIT_SECONDS = 0.5
TWIN_WAIT_STEPS = 4
# 2-byte draws below this bound are uniform modulo 7776 (8 * 7776 = 62208)
_UNIFORM_BELOW = (1 << 16) // LIST_SIZE * LIST_SIZE

AMSG = {
    "confirm": N_(
        "Please write down or memorise your codename, then tick the box that says you have. "
        "Nothing was sent yet."
    ),
    "again": N_(
        "This form had already been sent: this is the receipt for what arrived the first "
        "time. If you changed something since, open your mailbox with your codename and send "
        "the change from there as a follow-up."
    ),
}


@dataclass(frozen=True)
class _Commit:
    hour: int
    digest: bytes
    answer: dict[str, Any]


class Ahead:
    """Codenames derived from form tokens, and the memory of commits already answered."""

    def __init__(self, tokens: FormTokens) -> None:
        self._tokens = tokens
        self._key = tokens.subkey(b"guwah.org/v1/codename-ahead")
        self._commits: OrderedDict[bytes, _Commit] = OrderedDict()
        self._lock = threading.Lock()

    def codename(self, nonce: bytes) -> Codename:
        """The codename a form token's nonce stands for: uniform indices by rejection."""
        indices: list[int] = []
        counter = 0
        while len(indices) < SECRET_WORDS:
            block = hmac.new(self._key, nonce + counter.to_bytes(4, "big"),
                             hashlib.sha256).digest()
            for k in range(0, len(block), 2):
                value = int.from_bytes(block[k:k + 2], "big")
                if value < _UNIFORM_BELOW and len(indices) < SECRET_WORDS:
                    indices.append(value % LIST_SIZE)
            counter += 1
        return Codename(tuple(indices))

    def words_for(self, nonce: bytes) -> str:
        return self.codename(nonce).as_words

    def page(self, token: str) -> dict[str, str]:
        """Template values for the submit page: the codename its token stands for."""
        nonce = self._tokens.check(token)
        if nonce is None:  # a token this process just issued is always genuine
            return {}
        codename = self.codename(nonce)
        return {"ahead_codename": codename.as_words, "ahead_numbers": codename.as_numbers}

    def token_again(self, kept: dict[str, str]) -> tuple[str, bool]:
        """The token for a refused form shown again, and whether it is new: the same token
        while it is still good, so the codename the witness wrote down stays."""
        token = kept.pop("csrf", "")
        nonce = self._tokens.check(token)
        if nonce is None or self._tokens.is_spent(nonce):
            return self._tokens.issue(), True
        return token, False

    # -------------------------------------------------------------- browser commits
    @staticmethod
    def digest(data: dict[str, Any]) -> bytes:
        """What makes a commit the same commit: its desk, mailbox and uploads."""
        parts = [data["desk"], data["token_hash"], data.get("mailbox_token") or "",
                 data["message_upload"], *(f["upload"] for f in data.get("files", []))]
        return hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()

    def remember(self, nonce: bytes, data: dict[str, Any], answer: dict[str, Any]) -> None:
        key = _key(nonce)
        with self._lock:
            self._commits.setdefault(key, _Commit(_hour(), self.digest(data), answer))
            cutoff = _hour() - TOKEN_LIFETIME_HOURS - 1
            while self._commits and (len(self._commits) > _MAX_COMMITS
                                     or next(iter(self._commits.values())).hour < cutoff):
                self._commits.popitem(last=False)

    def repeated(self, nonce: bytes, data: dict[str, Any]) -> dict[str, Any] | None:
        """The first answer when this is the same commit again; None otherwise."""
        with self._lock:
            seen = self._commits.get(_key(nonce))
        if seen is None or not hmac.compare_digest(seen.digest, self.digest(data)):
            return None
        return seen.answer


def confirmed(fields: dict[str, str]) -> bool:
    return fields.get(CONFIRM_FIELD) == CONFIRM_VALUE


def _key(nonce: bytes) -> bytes:
    return hashlib.sha256(b"guwah.org/v1/commit\x00" + nonce).digest()


def _hour() -> int:
    return int(time.time() // 3600)


async def repeated_soon(ahead: Ahead, nonce: bytes, data: dict[str, Any]) -> dict[str, Any] | None:
    """After a refused commit: the answer of a twin request with the same commit that was
    stored meanwhile (two sends of one commit racing), waited for briefly; else None."""
    for _ in range(TWIN_WAIT_STEPS):
        again = ahead.repeated(nonce, data)
        if again is not None:
            return again
        await anyio.sleep(AGAIN_WAIT_SECONDS)
    return None


# -------------------------------------------------------------- the JS-off receipt again
async def receipt_again(ahead: Ahead, store: Store, nonce: bytes) -> dict[str, Any] | None:
    """Receipt values for a form sent again: its codename and the submission stored under it.

    Found through the mailbox (the database already holds its token hash), so nothing is kept
    to answer; a first request still being stored is waited for, briefly.  None: nothing was
    stored under this token after all.
    """
    codename = ahead.codename(nonce)
    hashed = await anyio.to_thread.run_sync(_token_hash_of, codename)
    for _ in range(AGAIN_WAIT_STEPS):
        first = await anyio.to_thread.run_sync(_first_submission, store, hashed)
        if first is not None:
            desk = await anyio.to_thread.run_sync(store.get_desk, first.desk)
            files = sum(1 for f in first.files if f.role != "message")
            return {"codename": codename.as_words, "codename_numbers": codename.as_numbers,
                    "desk": desk, "files": files, "again": AMSG["again"]}
        await anyio.sleep(AGAIN_WAIT_SECONDS)
    return None


def _token_hash_of(codename: Codename) -> str:
    return token_hash(kdf(codename.kdf_input)[:32])


def _first_submission(store: Store, hashed: str) -> SubmissionInfo | None:
    return first_submission(store.list_submissions(token_hash=hashed))
