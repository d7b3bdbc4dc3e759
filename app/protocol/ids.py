"""The shapes of names that cross a trust boundary: ids, roles, desk names, hex digests, days.

One owner for each pattern; the server, the bundles and the editor tool all import them from
here (standard library only). Always test with ``fullmatch``: ``re.match`` with ``^…$`` lets a
trailing newline through (``$`` also matches before a final ``\\n``), so ``"message\\n"`` would
pass for a role and a token hash with a newline for a hash. ``is_a`` does that, and refuses
anything that is not a ``str``.
"""

from __future__ import annotations

import re

ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # submission, reply and upload ids (token_urlsafe(16))
FILE_ROLE = re.compile(r"file-([1-9][0-9]{0,3})")  # an attachment; group 1: its number
ROLE = re.compile(rf"message|{FILE_ROLE.pattern}")  # group 1: the file number
DESK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
BUNDLE_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
HEX64 = re.compile(r"[0-9a-f]{64}")  # SHA-256 digests, mailbox tokens and their hashes
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # YYYY-MM-DD
MEMBER_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")  # a bundle member's path


def is_a(pattern: re.Pattern[str], value: object) -> bool:
    """Whether ``value`` is a str and ``pattern`` matches all of it."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None
