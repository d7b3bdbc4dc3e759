"""Hand decrypted buffers to a second thread that hashes and writes them.

Why: ``age -d`` reads, decrypts and writes on separate cores. Here the AEAD already runs in a
small pool (``app.crypto.stream``); without this hand-off the thread that reads the ciphertext
also waits for every write (and the kernel's writeback throttling), so reading stops while the
disk is busy. hashlib and file writes release the GIL, so the two threads use both cores.

The queue is bounded (``DEPTH`` buffers of about 1 MiB): memory stays flat whatever the size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

DEPTH = 8

Work = Callable[[memoryview], object]


class Handoff:
    """Runs ``work`` on each buffer, in order, on one helper thread; ``finish()`` must follow.

    A failure of ``work`` stops further work and is raised by the next ``__call__`` or by
    ``finish()``; buffers handed over after it are dropped.
    """

    def __init__(self, work: Work, name: str = "guwah-write") -> None:
        self._work = work
        self._queue: queue.Queue[memoryview | None] = queue.Queue(maxsize=DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (buf := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._work(buf)
                except BaseException as exc:  # re-raised on the caller's thread
                    self._error = exc

    def __call__(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` (not copied: the caller must not change it afterwards)."""
        if self._error is not None:
            raise self._error
        if len(data):
            self._queue.put(memoryview(data))

    def finish(self) -> None:
        """Wait until every queued buffer was handled; raise the first failure."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Stop after an error elsewhere (what was queued is still handled, then dropped)."""
        if self._thread.is_alive():
            self._error = self._error or _Stopped()
            self._queue.put(None)
            self._thread.join()


@contextmanager
def handing_off(work: Work, name: str = "guwah-write") -> Iterator[Handoff]:
    """A :class:`Handoff` finished when the block succeeds, stopped when it raises."""
    handoff = Handoff(work, name)
    try:
        yield handoff
    except BaseException:
        handoff.stop()
        raise
    handoff.finish()


class _Stopped(Exception):
    """Marks a hand-off stopped from outside: nothing more is worked on."""
