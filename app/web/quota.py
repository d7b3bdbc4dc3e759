"""Who holds which resumable upload: limits per form token, and rows that never receive a byte.

A tus ``POST /api/uploads`` costs a row and an empty file whatever its ``Upload-Length`` (0
included), so creation is limited here, checked and taken in one step under one lock:

* per form token: at most ``token_max_uploads`` live uploads, whose declared lengths add up to
  at most ``token_max_reserved_bytes`` (a witness's form needs one message and a few files);
* per process: at most ``max_open_uploads`` live uploads in all;
* an upload that receives no byte within ``upload_idle_seconds`` is removed by the
  housekeeping task (app/web/app.py) instead of living until ``upload_expiry_hours``.

The ledger lives in memory only (why: no precise creation time may reach the disk, and the
token is no one's identity).  After a restart, rows it does not know count against
``max_open_uploads`` and expire the normal way.  Committed uploads leave the ledger when the
housekeeping task resyncs it with the rows that still exist.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

from .errors import MSG


@dataclass
class _Entry:
    token: bytes
    declared: int
    born: float
    fed: bool = False


class QuotaExceeded(Exception):
    """A create the ledger refuses: 429 for one form's limits (that client asks too much),
    507 for the process-wide count (no room for anyone: the page offers the plain form);
    ``message`` is an untranslated msgid."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UploadLedger:
    """Per-token and per-process upload limits (see the module docstring)."""

    def __init__(self, *, per_token: int, bytes_per_token: int, max_open: int,
                 idle_seconds: float) -> None:
        self._lock = threading.Lock()
        self.per_token = per_token
        self.bytes_per_token = bytes_per_token
        self.max_open = max_open
        self.idle_seconds = idle_seconds
        self._entries: dict[str, _Entry] = {}
        self._foreign = 0  # live rows this process did not create (before a restart)
        self._placeholders = itertools.count()

    def admit(self, token: bytes, declared: int) -> str:
        """Take a slot for a new upload; returns a key to :meth:`bind` or :meth:`drop`."""
        with self._lock:
            mine = [e for e in self._entries.values() if e.token == token]
            if len(mine) >= self.per_token:
                raise QuotaExceeded(429, MSG["token_uploads"])
            if sum(e.declared for e in mine) + declared > self.bytes_per_token:
                raise QuotaExceeded(429, MSG["token_uploads"])
            if len(self._entries) + self._foreign >= self.max_open:
                raise QuotaExceeded(507, MSG["pending"])
            key = f"pending:{next(self._placeholders)}"
            self._entries[key] = _Entry(token, declared, time.monotonic())
            return key

    def bind(self, key: str, upload_id: str) -> None:
        """The upload for slot ``key`` now exists as ``upload_id``."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._entries[upload_id] = entry

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def fed(self, upload_id: str) -> None:
        """A byte of ``upload_id`` arrived: it is no longer an idle row."""
        with self._lock:
            entry = self._entries.get(upload_id)
            if entry is not None:
                entry.fed = True

    def idle(self, now: float | None = None) -> list[str]:
        """Uploads that received no byte within ``idle_seconds`` of their creation."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return [k for k, e in self._entries.items()
                    if not e.fed and not k.startswith("pending:")
                    and now - e.born >= self.idle_seconds]

    def resync(self, live: set[str]) -> None:
        """Forget uploads whose rows are gone; count live rows this process does not know."""
        with self._lock:
            for key in [k for k in self._entries if not k.startswith("pending:")]:
                if key not in live:
                    del self._entries[key]
            self._foreign = len(live - set(self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries) + self._foreign
