"""Write a request body to disk on a worker thread while the event loop receives the rest.

A tus ``PATCH`` is received by the event loop, a piece at a time, and its bytes are written by
a worker thread (a write blocks; the event loop must not). :class:`WriteBehind` sits between
the two:

* the event loop ``put``\\ s each received piece; once ``WRITE_START`` bytes wait, a thread is
  taken (from the caller's limiter) and writes them, piece by piece, in order;
* while that thread writes, it also takes each piece the event loop adds meanwhile, straight
  from the queue, with no round trip through the event loop; when it finds the queue empty it
  goes back to the pool;
* ``drain`` writes what is left, waits for the thread and raises the first failed write.

Why a thread only while there is something to write, and not one thread per request: a client
that sends headers and then nothing, or goes quiet half-way, must hold no thread. Here it holds
at most ``WRITE_START`` bytes of memory and nothing else.

Why not hand the thread one batch at a time, each a thread hop, as this server did before:
each finished batch went back to the event loop, and the next one then waited for a thread to
wake. The disk sat idle through both hops: 1.2 ms of each 8 MiB ``PATCH``'s 10.7 ms, measured
with the disk the bottleneck (``bench/README.md``).

Memory: at most ``WRITE_AHEAD_MAX`` received bytes wait or are being written; past that,
``put`` waits for the thread (the socket is not read meanwhile, so TCP slows the sender).

After a failed write nothing more is written (the queue is dropped): where the bytes belong is
unknown, and the caller rolls back. ``abandon`` drops the queue the same way, when the caller
has refused the request for another reason.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

WRITE_START = 1024 * 1024  # bytes that wait before a thread is taken (or the body's end)
WRITE_AHEAD_MAX = 8 * 1024 * 1024  # received bytes not yet written, at most, per request


class WriteAbandoned(Exception):
    """The caller gave up on the body; what was not written yet never will be."""


class WriteBehind:
    """Pieces ``put`` on the event loop, written in order by ``write`` on a worker thread.

    ``write(piece)`` runs on the thread and may raise; ``written(n)`` runs on the thread after
    each piece that was written (it must be thread-safe). ``tg`` holds the thread's task, so
    the caller's task group ends only once no write is running.
    """

    def __init__(self, tg: TaskGroup, write: Callable[[bytes], None],
                 written: Callable[[int], None], limiter: anyio.CapacityLimiter) -> None:
        self._tg = tg
        self._write = write
        self._written = written
        self._limiter = limiter
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()  # guards every field below
        self._queue: deque[bytes] = deque()
        self._queued = 0  # bytes queued
        self._writing = 0  # bytes of the piece being written
        self._running = False  # a thread is taken, or asked for, to write the queue
        self._error: Exception | None = None
        self._room: anyio.Event | None = None  # the event loop waits for the thread
        self._idle = anyio.Event()  # the last thread's task has ended
        self._idle.set()

    @property
    def ahead(self) -> int:
        """Received bytes not yet written: queued, or being written."""
        with self._lock:
            return self._queued + self._writing

    async def put(self, piece: bytes) -> None:
        """Queue ``piece``; wait while ``WRITE_AHEAD_MAX`` bytes are ahead of the disk."""
        with self._lock:
            self._raise_locked()
            self._queue.append(piece)
            self._queued += len(piece)
            start = self._queued >= WRITE_START and self._claim_locked()
        if start:
            self._start()
        while True:
            with self._lock:
                self._raise_locked()
                if self._queued + self._writing < WRITE_AHEAD_MAX:
                    return
                room = self._room = anyio.Event()
            await room.wait()

    async def drain(self) -> None:
        """Write everything queued; raise the first failed write."""
        with self._lock:
            start = bool(self._queue) and self._error is None and self._claim_locked()
        if start:
            self._start()
        await self._idle.wait()
        with self._lock:
            self._raise_locked()

    def abandon(self) -> None:
        """Write nothing more (a running thread stops after its current piece)."""
        with self._lock:
            if self._error is None:
                self._error = WriteAbandoned("the request was refused")
            self._drop_locked()

    # ---------------------------------------------------------------- the event loop's side

    def _claim_locked(self) -> bool:
        """Whether this caller starts the thread (none runs yet)."""
        if self._running:
            return False
        self._running = True
        return True

    def _start(self) -> None:
        done = self._idle = anyio.Event()
        self._tg.start_soon(self._run, done)

    async def _run(self, done: anyio.Event) -> None:
        try:
            await anyio.to_thread.run_sync(self._write_queue, limiter=self._limiter)
        except Exception as exc:  # not from a write (those are kept by the thread)
            self._fail(exc)
        except BaseException:  # cancelled, perhaps before a thread took the queue
            self._fail(WriteAbandoned("the request was cancelled"))
            raise
        finally:
            done.set()

    def _raise_locked(self) -> None:
        if self._error is not None:
            raise self._error

    # ---------------------------------------------------------------- the thread's side

    def _write_queue(self) -> None:
        """On the worker thread: write queued pieces until none is left, then let go."""
        while True:
            with self._lock:
                if not self._queue or self._error is not None:
                    self._running = False
                    self._wake_locked()
                    return
                piece = self._queue.popleft()
                self._queued -= len(piece)
                self._writing = len(piece)
            try:
                self._write(piece)
            except Exception as exc:
                self._fail(exc)
                return
            self._written(len(piece))
            with self._lock:
                self._writing = 0
                if self._queued < WRITE_AHEAD_MAX:
                    self._wake_locked()

    def _fail(self, exc: Exception) -> None:
        """Keep the first failure; write nothing more; no thread runs from here on."""
        with self._lock:
            if self._error is None:
                self._error = exc
            self._running = False
            self._writing = 0
            self._drop_locked()

    def _drop_locked(self) -> None:
        self._queue.clear()
        self._queued = 0
        self._wake_locked()

    def _wake_locked(self) -> None:
        """Let a waiting ``put`` go on (from any thread: the event is set on the loop)."""
        room, self._room = self._room, None
        if room is not None:
            self._loop.call_soon_threadsafe(room.set)
