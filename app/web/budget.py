"""The byte budget of the witness site: one owner, one lock, charged only by bytes that arrived.

Every path that stores bytes a witness sends (the JavaScript-off ``POST /submit`` and the tus
``PATCH`` of the JavaScript-on path) takes its share here, chunk by chunk, *after* the chunk
was received: a ``Content-Length`` or ``Upload-Length`` header reserves nothing, so an idle
socket that announces 20 GB holds nothing.  Two limits are checked and taken in one step under
one lock (why not read a total, await, then add: two requests could both pass the check):

* ``max_pending_bytes``: bytes received and not yet committed (requests in progress, plus
  upload bytes on disk waiting for their commit);
* ``min_free_bytes``: the free disk space, minus what was taken but not yet written, minus
  what this chunk will need once sealed (ciphertext and padding: an eighth more at worst).

When the pending cap is full a request waits (it stops reading its socket, which slows the
sender through TCP) for up to ``budget_wait_seconds``; waiting holds no thread.  Requests that
each hold part of the cap and all wait for more would wait for ever, so the youngest of them
is refused (wait-die): its bytes are released and the older ones finish.  Free disk space does
not come back by waiting: a chunk that would cut into ``min_free_bytes`` is refused at once.

All methods are called from the event loop thread (the lock also guards the resync that the
housekeeping task runs there), except ``landed``, which only takes the lock: a PATCH's writing
thread reports each piece it wrote.
"""

from __future__ import annotations

import itertools
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import anyio

from app.settings import Settings

from .errors import MSG, Refusal

SEALING_OVERHEAD_DIVISOR = 8  # padme adds at most ~11 %, age 16 bytes per 64 KiB


class Ticket:
    """One request's share of the budget (or one PATCH's)."""

    __slots__ = ("doomed", "held", "seq", "unwritten", "upload", "waiting")

    def __init__(self, seq: int, upload: bool) -> None:
        self.seq = seq
        self.upload = upload  # a PATCH: what it wrote is in the uploads area already
        self.held = 0  # bytes charged to the pending cap
        self.unwritten = 0  # of those, bytes not yet known to be on disk
        self.waiting = False
        self.doomed = False


def _disk_need(n: int) -> int:
    return n + n // SEALING_OVERHEAD_DIVISOR


class Budget:
    """Pending bytes and free-disk headroom for one process (see the module docstring)."""

    def __init__(self, cap: int, min_free: int, free_bytes: Callable[[], int]) -> None:
        self._lock = threading.Lock()
        self.cap = cap
        self.min_free = min_free
        self._free_bytes = free_bytes
        self._stored = 0  # upload bytes on disk, not yet committed
        self._unwritten = 0
        self._tickets: set[Ticket] = set()
        self._seq = itertools.count()
        self._changed: anyio.Event | None = None

    # ------------------------------------------------------------------ figures
    @property
    def pending(self) -> int:
        """Bytes received and not yet committed or discarded (never above ``cap``)."""
        with self._lock:
            return self._stored + sum(t.held for t in self._tickets)

    def room(self) -> int:
        """How many more bytes the pending cap takes right now (a hint, not a reservation)."""
        return max(0, self.cap - self.pending)

    def disk_short(self, n: int = 0) -> bool:
        """True when ``n`` more bytes would cut into ``min_free_bytes``."""
        with self._lock:
            return self._disk_short_locked(n)

    def _disk_short_locked(self, n: int) -> bool:
        try:
            free = self._free_bytes()
        except OSError:
            return False
        return free - _disk_need(self._unwritten) - _disk_need(n) < self.min_free

    # ------------------------------------------------------------------ tickets
    def open(self, *, upload: bool = False) -> Ticket:
        """A new share; ``upload=True`` for a tus PATCH (its bytes land in the uploads area)."""
        with self._lock:
            ticket = Ticket(next(self._seq), upload)
            self._tickets.add(ticket)
            return ticket

    async def take(self, ticket: Ticket, n: int, wait: float) -> None:
        """Charge ``n`` received bytes to ``ticket``; Refusal 429 (pending) or 507 (disk)."""
        if n <= 0:
            return
        deadline = anyio.current_time() + wait
        try:
            while True:
                event = self._try_take(ticket, n)
                if event is None:
                    return
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    raise Refusal(429, MSG["pending"])
                with anyio.move_on_after(remaining):
                    await event.wait()
        finally:
            ticket.waiting = False

    def _try_take(self, ticket: Ticket, n: int) -> anyio.Event | None:
        """Take ``n`` now (None), or the event to wait on; raises when waiting cannot help."""
        with self._lock:
            if ticket.doomed:
                raise Refusal(429, MSG["pending"])
            if self._disk_short_locked(n):
                raise Refusal(507, MSG["disk"])
            held = self._stored + sum(t.held for t in self._tickets)
            if held + n <= self.cap:
                ticket.held += n
                ticket.unwritten += n
                self._unwritten += n
                return None
            ticket.waiting = True
            holders = [t for t in self._tickets if t.held > 0]
            if not holders:  # only committed-to-be uploads fill the cap: nothing will finish
                raise Refusal(429, MSG["pending"])
            if all(t.waiting for t in holders):  # nobody can progress: the youngest dies
                youngest = max(holders, key=lambda t: t.seq)
                youngest.doomed = True
                if youngest is ticket:
                    raise Refusal(429, MSG["pending"])
                self._notify_locked()
            if self._changed is None:
                self._changed = anyio.Event()
            return self._changed

    def landed(self, ticket: Ticket, n: int) -> None:
        """``n`` bytes of ``ticket`` are now on disk (free space counts them from here on)."""
        with self._lock:
            n = min(n, ticket.unwritten)
            ticket.unwritten -= n
            self._unwritten -= n

    def close(self, ticket: Ticket, keep: int = 0) -> None:
        """Release ``ticket``; ``keep`` of its bytes stay charged as stored upload bytes."""
        with self._lock:
            if ticket not in self._tickets:
                return
            self._tickets.discard(ticket)
            self._unwritten -= ticket.unwritten
            ticket.unwritten = 0  # a late landed() must not take it off twice
            self._stored += max(0, min(keep, ticket.held))
            self._notify_locked()

    # ------------------------------------------------------------------ stored uploads
    def release_stored(self, n: int) -> None:
        """Upload bytes left the pending state (deleted, expired or committed)."""
        with self._lock:
            self._stored = max(0, self._stored - n)
            self._notify_locked()

    def resync_stored(self, total: int) -> None:
        """Set the stored upload bytes to what the store counts (commits, other processes).

        Bytes that running PATCHes wrote are in ``total`` and still on their tickets: they
        are counted once, on the ticket, until the PATCH ends.
        """
        with self._lock:
            writing = sum(t.held - t.unwritten for t in self._tickets if t.upload)
            self._stored = max(0, total - writing)
            self._notify_locked()

    def _notify_locked(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None



def disk_path(settings: Settings) -> Path:
    """The directory whose file system holds the blobs (the data dir until it exists)."""
    path = settings.blob_path
    return path if path.exists() else Path(settings.data_dir)


def free_bytes(path: Path) -> int:
    """Free bytes on ``path``'s file system (unknown: as good as unlimited)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 1 << 62
