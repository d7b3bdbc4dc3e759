"""Which submission a follow-up links to: the first submission of its mailbox.

A mailbox is the set of submissions that share a token hash. Its first submission is the one
that links to no other (``parent_id`` is None), else the first listed; follow-ups link to it
and go to its desk. One rule for the JavaScript-off follow-up (app/web/sealing.py), the
browser's commit (app/web/routers/commit.py) and the reply page (app/web/mailbox.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Linked(Protocol):
    @property
    def parent_id(self) -> str | None: ...


S = TypeVar("S", bound=Linked)


def first_submission(mailbox: Sequence[S]) -> S | None:
    """The first submission of a mailbox's submissions (in the store's order), or None."""
    firsts = [s for s in mailbox if s.parent_id is None] or list(mailbox)
    return firsts[0] if firsts else None
