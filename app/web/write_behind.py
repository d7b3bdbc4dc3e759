"""Hand a request body to a worker thread while the event loop receives the rest.

Two routes receive big bodies on the event loop and must do blocking work with every byte: a
tus ``PATCH`` appends its pieces to the upload's file, and a JavaScript-off form is parsed and
sealed (``app/web/sealing_request.py``). :class:`WriteBehind` sits between the event loop and
that work (``write``, for both):

* the event loop ``put``\\ s each received piece; once ``WRITE_START`` bytes wait, a thread is
  taken (from the caller's limiter) and writes them, piece by piece, in order;
* while that thread writes, it also takes each piece the event loop adds meanwhile, straight
  from the queue, with no round trip through the event loop; when it finds the queue empty it
  goes back to the pool, and after ``TURN_BYTES`` it goes back too and the next
  turn waits in line for a thread (so a client faster than the disk cannot keep one thread
  from the other requests for its whole body);
* ``drain`` writes what is left, waits for the thread and raises the first failed write.

Why a thread only while there is something to write, and not one thread per request: a client
that sends headers and then nothing, or goes quiet half-way, must hold no thread. Here it holds
at most ``WRITE_START`` bytes of memory and nothing else.

Why not hand the thread one batch at a time, each a thread hop, as this server did before:
each finished batch went back to the event loop, and the next one then waited for a thread to
wake. The disk sat idle through both hops: 1.1 ms of each 8 MiB ``PATCH``'s 10 ms, measured
with the disk the bottleneck. A JavaScript-off form sealed 1 MiB per hop, and the event loop
read nothing more of its body meanwhile: 256 MiB took about 7 % longer than through this class
(``bench/README.md`` has both).

Memory: at most ``ahead_max`` received bytes (``WRITE_AHEAD_MAX`` unless the caller asks for
less) wait or are being written; a piece is queued only once there is room for it, and while
``put`` waits the socket is not read, so TCP slows the sender.

After a failed write nothing more is written (the queue is dropped): where the bytes belong is
unknown, and the caller rolls back. ``abandon`` does the same when the caller has refused the
request for another reason, or was cancelled; a cancelled task's thread also stops between two
pieces by itself (``anyio.from_thread.check_cancelled``).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import TaskGroup

WRITE_START = 1024 * 1024  # bytes that wait before a thread is taken (or the body's end)
WRITE_AHEAD_MAX = 8 * 1024 * 1024  # received bytes not yet written, at most, per request
TURN_BYTES = 8 * 1024 * 1024  # written on one thread before it goes back to the pool


class WriteAbandoned(Exception):
    """The caller gave up on the body; what was not written yet never will be."""


class WriteBehind:
    """Pieces ``put`` on the event loop, written in order by ``write`` on a worker thread.

    ``write(piece)`` runs on the thread and may raise; ``written(n)`` runs on the thread after
    each piece that was written (it must be thread-safe). ``tg`` holds the thread's task, so
    the caller's task group ends only once no write is running.
    """

    def __init__(self, tg: TaskGroup, write: Callable[[bytes], None],
                 written: Callable[[int], None], limiter: anyio.CapacityLimiter, *,
                 ahead_max: int = WRITE_AHEAD_MAX) -> None:
        self._tg = tg
        self._ahead_max = ahead_max
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
        self._waiting: anyio.CancelScope | None = None  # a turn waits for a thread
        self._idle = anyio.Event()  # the last thread's task has ended
        self._idle.set()

    @property
    def ahead(self) -> int:
        """Received bytes not yet written: queued, or being written."""
        with self._lock:
            return self._queued + self._writing

    async def put(self, piece: bytes) -> None:
        """Queue ``piece`` once there is room for it (``ahead_max``); raise the first
        failed write."""
        while True:
            with self._lock:
                self._raise_locked()
                ahead = self._queued + self._writing
                if not ahead or ahead + len(piece) <= self._ahead_max:
                    self._queue.append(piece)
                    self._queued += len(piece)
                    start = self._queued >= WRITE_START and self._claim_locked()
                    break
                start = self._claim_locked()  # room comes only from a thread that writes
                room = self._room = anyio.Event()
            if start:
                self._start()
            await room.wait()
        if start:
            self._start()

    async def drain(self) -> None:
        """Write everything queued; raise the first failed write."""
        with self._lock:
            start = bool(self._queue) and self._error is None and self._claim_locked()
        if start:
            self._start()
        await self._idle.wait()
        with self._lock:
            self._raise_locked()

    def abandon(self) -> list[bytes]:
        """Write nothing more: a thread stops after its current piece, and a thread not yet
        taken is not waited for. Returns the queued pieces, in order: none of them was or
        will be written (a refused form's text is still read from them)."""
        with self._lock:
            if self._error is None:
                self._error = WriteAbandoned("the request was refused")
            dropped = list(self._queue)
            self._drop_locked()
            waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()
        return dropped

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
        """Turns of writing, each on a thread taken from the limiter, until the queue is empty.

        Why turns: a client faster than the disk keeps the queue full; one thread for its whole
        body would keep other requests waiting for a thread that long. After each turn
        (``TURN_BYTES``) the thread goes back and the next turn waits in line."""
        try:
            more = True
            while more:
                with anyio.CancelScope() as scope:  # abandon() cancels a wait for a thread
                    with self._lock:
                        failed = self._error is not None
                        self._waiting = None if failed else scope
                    if failed:
                        scope.cancel()
                    more = await anyio.to_thread.run_sync(self._write_turn,
                                                          limiter=self._limiter)
                if scope.cancelled_caught:  # any thread of this turn has ended: see abandon
                    self._fail(WriteAbandoned("the request was refused"))
                    return
        except Exception as exc:  # not from a write (those are kept by the thread)
            self._fail(exc)
        except BaseException:  # cancelled: the thread, if one was taken, has stopped
            self._fail(WriteAbandoned("the request was cancelled"))
            raise
        finally:
            done.set()

    def _raise_locked(self) -> None:
        if self._error is not None:
            raise self._error

    # ---------------------------------------------------------------- the thread's side

    def _write_turn(self) -> bool:
        """On the worker thread: write queued pieces, in order, for one turn; whether more
        turns are needed (False: the queue is empty or a write failed, and the run is over)."""
        with self._lock:
            self._waiting = None  # taken: from here on abandon() stops it between pieces
        turn = 0
        while True:
            with self._lock:
                if not self._queue or self._error is not None:
                    self._running = False
                    self._wake_locked()
                    return False
                if turn >= TURN_BYTES:
                    return True  # still running: _run takes the next turn
                piece = self._queue.popleft()
                self._queued -= len(piece)
                self._writing = len(piece)
            try:
                anyio.from_thread.check_cancelled()  # the request was cancelled: stop here
                self._write(piece)
            except Exception as exc:
                self._fail(exc)
                return False
            except BaseException:
                self._fail(WriteAbandoned("the request was cancelled"))
                return False
            self._written(len(piece))
            turn += len(piece)
            with self._lock:
                self._writing = 0
                self._wake_locked()

    def _fail(self, exc: Exception) -> None:
        """Keep the first failure (a failed write replaces an abandon: the caller must see
        it); write nothing more; no thread runs from here on."""
        with self._lock:
            if self._error is None or (isinstance(self._error, WriteAbandoned)
                                       and not isinstance(exc, WriteAbandoned)):
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
