"""The one loop that pushes a stream of bytes into a file that will then be fsynced.

A blob sealed from a form, a tus ``PATCH``, a decrypted attachment: each is written once,
fsynced once, and (on the server) not read again until an export or a commit check. Going
through the page cache costs a copy of every byte into freshly allocated cache pages, and the
fsync then waits for all of them. So, where the file system allows it, :class:`FileWriter`
writes with ``O_DIRECT``: whole 4 KiB blocks go from one page-aligned buffer straight to the
disk, the fsync that follows finds only the metadata and the last partial block.

Measured on the 2-core benchmark machine: 2 GiB through ``dd`` with ``oflag=direct`` took
1.06 s and 0.29 s of CPU, against 2.0-6.0 s and 1.2-5.2 s of CPU for the same bytes written
through the cache and fsynced (a virtual machine whose fresh pages are expensive to touch).

How, and why it stays correct:

* ``O_DIRECT`` needs the file offset, the length and the memory address aligned to the
  device's block. The bytes before the first 4 KiB boundary (a tus ``PATCH`` starts wherever
  the last one ended) and the tail after the last one are written through the cache as
  before; the block in between goes direct, copied once into a page-aligned buffer borrowed
  from a small pool (memory per open writer: under :data:`DIRECT_MIN` of small writes kept
  back, usually under 4 KiB).
* Rewriting nothing: every byte is written once, at its place, so a crash mid-write leaves
  the acknowledged prefix as it was (what durability needs still comes from the fsync).
* Where ``O_DIRECT`` is refused (tmpfs, some network or FUSE file systems, a stricter
  alignment than 4 KiB), the writer falls back for good to cached writes that start their
  write-back as they go (``sync_file_range``), so the closing fsync still finds little to do.

Why not ``io.FileIO`` with ``O_DIRECT`` from ``open``: every write would need aligned lengths
and buffers, which callers do not have. Why not ``mmap`` the output: a write error becomes a
SIGBUS. Standard library only: the offline editor tool uses it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import mmap
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, BinaryIO, cast

from app.libc import libc_function

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

ALIGN = 4096  # the block O_DIRECT offsets, lengths and buffers are aligned to
DIRECT_MIN = 256 * 1024  # smaller writes are kept back until this much can go at once
DIRECT_BUFFER = (1 << 20) + (64 << 10)  # one sealed MiB (16 age chunks) + a kept-back tail
IDLE_BUFFERS = 2  # aligned buffers kept for the next writer; more are unmapped on return
WRITEBACK_STEP = 1 << 20  # cached writes: bytes written before their write-back is started
_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h
_O_DIRECT = getattr(os, "O_DIRECT", 0)


_sync_file_range = libc_function(
    "sync_file_range", [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint])


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` cached bytes at ``offset``, and not wait.

    Why: the fsync that ends a file (or a tus PATCH) then finds almost nothing left to write.
    Measured here: the fsync closing a PATCH of 8 MiB written in 1 MiB pieces took 5.4 ms
    without, 0.2 ms with. It promises nothing: durability still comes only from the fsync.
    Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``; elsewhere, or if it fails, nothing."""
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class DirectFlag:
    """The ``O_DIRECT`` flag of one descriptor, changed only when it must (two syscalls); the
    one place that flag is turned on and off (the benchmarks' disk floor uses it too)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.on = False

    def set(self, on: bool) -> None:
        """Turn it on or off; OSError (EINVAL) where the file system refuses."""
        if on == self.on:
            return
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
        self.on = on


class _AlignedPool:
    """Page-aligned buffers (anonymous ``mmap``), lent for one direct write at a time."""

    def __init__(self) -> None:
        self._idle: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return mmap.mmap(-1, DIRECT_BUFFER, flags=mmap.MAP_PRIVATE)  # not shared with a fork

    def give(self, buf: mmap.mmap) -> None:
        """Return a buffer after a use that went well (after a failure the caller drops it:
        the failure's traceback may still hold a view of it)."""
        with self._lock:
            if len(self._idle) < IDLE_BUFFERS:
                self._idle.append(buf)
                return
        with contextlib.suppress(BufferError):  # a view still alive: unmapped when it goes
            buf.close()


_POOL = _AlignedPool()


class FileWriter:
    """Writes all of every piece it is given to ``fd``, which is at ``start`` (its end).

    ``end()`` must be called before the fsync: it writes what was kept back. One writer per
    descriptor at a time; it owns the descriptor's ``O_DIRECT`` flag while it writes.
    """

    def __init__(self, fd: int, start: int = 0, *, direct: bool = True) -> None:
        self.fd = fd
        self.offset = start  # where the next byte goes
        self._direct = direct and _O_DIRECT != 0
        self._flag = DirectFlag(fd)
        self._kept = bytearray()  # aligned offset: bytes not yet written (< DIRECT_MIN)
        self._started = start  # cached writes: write-back started up to here
        self._failed: OSError | None = None  # a write failed: where bytes belong is unknown

    @property
    def direct(self) -> bool:
        """Whether the writer still writes whole blocks past the page cache."""
        return self._direct

    def write(self, data: ReadableBuffer) -> None:
        if self._failed is not None:
            raise self._failed
        try:
            self._write(memoryview(data).cast("B"))
        except OSError as exc:
            self._failed, self._kept = exc, bytearray()
            raise

    def _write(self, view: memoryview) -> None:
        if not self._direct:
            self._write_cached(view)
            return
        head = -self.offset % ALIGN
        if head:  # up to the first block boundary: through the cache
            self._write_cached(view[:head])
            view = view[head:]
        if len(self._kept) + len(view) < DIRECT_MIN:
            self._kept += view
            return
        self._write_direct(view)

    def end(self) -> None:
        """Write what was kept back (through the cache); then the caller fsyncs. After a
        failed write there is nothing to add: the file is to be discarded (its writer raised)."""
        if self._failed is not None:
            return
        kept, self._kept = self._kept, bytearray()
        self._write_cached(memoryview(kept))
        self._flag.set(False)

    def _write_direct(self, view: memoryview) -> None:
        buf = _POOL.take()
        while self._direct and len(self._kept) + len(view) >= DIRECT_MIN:
            fill = len(self._kept)
            take = min(len(view), DIRECT_BUFFER - fill)
            buf[:fill] = self._kept
            buf[fill:fill + take] = view[:take]
            view = view[take:]
            total = fill + take
            aligned = total - total % ALIGN
            self._kept = bytearray(buf[aligned:total])
            self._direct_blocks(memoryview(buf)[:aligned])
        _POOL.give(buf)  # only after success: see _AlignedPool.give
        if not self._direct:  # refused on the way: what was kept back goes first, cached
            kept, self._kept = self._kept, bytearray()
            self._write_cached(memoryview(kept))
        if view:
            self._write(view)  # the rest: kept back, or cached if direct writes were refused

    def _direct_blocks(self, blocks: memoryview) -> None:
        """Write whole aligned blocks past the cache; on refusal, switch to cached for good."""
        try:
            self._flag.set(True)
            while blocks:
                n = os.write(self.fd, blocks)
                self.offset += n
                blocks = blocks[n:]
                if n % ALIGN:  # a short write off a block boundary: finish through the cache
                    break
            self._started = self.offset  # nothing cached to start write-back for
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
        if blocks:
            self._fall_back()
            self._write_cached(blocks)

    def _fall_back(self) -> None:
        self._direct = False
        self._flag.set(False)


    def _write_cached(self, view: memoryview) -> None:
        if not view:
            return
        self._flag.set(False)
        while view:
            n = os.write(self.fd, view)
            self.offset += n
            view = view[n:]
        if self.offset - self._started >= WRITEBACK_STEP:
            start_writeback(self.fd, self._started, self.offset - self._started)
            self._started = self.offset


class DirectReader(io.RawIOBase):
    """A read-only file whose large reads go past the page cache (see the module docstring).

    For the server's reads of a blob it wrote once and reads once more (the commit's check of
    an upload, an export): read through the cache, each of those bytes would first
    be copied into freshly allocated cache pages, as costly as writing them was. A read of at
    least :data:`DIRECT_MIN` bytes is done with ``O_DIRECT`` in whole blocks into a pooled
    aligned buffer and copied out once; smaller reads, and every read where the file system
    refuses ``O_DIRECT``, are ordinary ``pread`` calls. Wrap it in ``io.BufferedReader``.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._pos = 0
        self._direct = _O_DIRECT != 0
        self._flag = DirectFlag(fd)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos,
                os.SEEK_END: os.fstat(self._fd).st_size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        out = memoryview(buffer).cast("B")
        if self._direct and len(out) >= DIRECT_MIN:
            n = self._read_direct(out)
            if n is not None:
                self._pos += n
                return n
        self._flag.set(False)
        n = os.preadv(self._fd, [out], self._pos)
        self._pos += n
        return n

    def _read_direct(self, out: memoryview) -> int | None:
        """Whole blocks around ``len(out)`` bytes at the position; None if refused."""
        skip = self._pos % ALIGN
        want = min(DIRECT_BUFFER, -(-(skip + len(out)) // ALIGN) * ALIGN)
        buf = _POOL.take()
        try:
            self._flag.set(True)
            with memoryview(buf) as view:
                got = os.preadv(self._fd, [view[:want]], self._pos - skip)
                n = max(0, min(got - skip, len(out)))
                out[:n] = view[skip:skip + n]
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct = False
            return None
        _POOL.give(buf)  # only after success: see _AlignedPool.give
        return n


    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def open_direct(fd: int, buffer_size: int = 64 * 1024) -> BinaryIO:
    """``fd`` (opened for reading; now owned here) as a buffered binary file over
    :class:`DirectReader`."""
    return cast(BinaryIO, io.BufferedReader(DirectReader(fd), buffer_size))


def read_ahead(src: BinaryIO, size: int) -> Iterator[bytes]:
    """The rest of ``src`` in pieces of ``size``, each read on a helper thread while the
    caller works on the one before (a disk read past the cache waits for the device: hashing
    the previous MiB meanwhile halves the time of reading and hashing a big blob)."""
    with ThreadPoolExecutor(1, "guwah-read") as pool:
        pending = pool.submit(src.read, size)
        while piece := pending.result():
            pending = pool.submit(src.read, size)
            yield piece
