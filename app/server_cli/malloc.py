"""glibc malloc settings for ``guwah serve``: one arena, and big buffers kept for reuse.

* **One arena.** glibc gives each new thread that allocates an arena of its own (up to 8 per
  core), and the pages an arena has touched stay in the resident set. Python's small objects
  never go through these arenas and the big buffers are few, so one arena's lock is not
  contended.
* **Big buffers reused, not handed back.** Every socket read of a request body allocates a
  fresh buffer of up to 1 MiB. With glibc's defaults the heap above a freed buffer was
  returned to the kernel again and again, and each next buffer faulted its pages back in:
  during a 2 GiB tus upload (``bench/bench_ingest.py``) the event loop's thread spent
  1.3-2.4 s in the kernel and the upload took 5.1-6.2 s; with buffers under
  ``MMAP_THRESHOLD`` taken from the heap and the heap trimmed only past ``TRIM_THRESHOLD``,
  0.5-0.7 s and 4.2-4.4 s.

Resident set of ``guwah serve`` (``bench/bench_sealing.py``, idle after a warm-up / peak while
sealing 256 MiB): glibc's defaults 119 / 127 MiB; one arena 107 / 119 MiB; one arena and the
two thresholds 115 / 118-123 MiB (the heap keeps some of what start-up freed), at the same
sealing speed. The thresholds are kept for the ingest figures above.

Why at run time and not ``MALLOC_*`` variables in the environment: the settings then hold
however the server is started (the systemd unit, the demo, a test, a benchmark). Called
before any thread starts. Elsewhere than glibc: nothing.
"""

from __future__ import annotations

import ctypes

from app.libc import libc_function

# mallopt parameters, malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 4 << 20  # allocations below this come from the heap (a body piece: 1 MiB)
TRIM_THRESHOLD = 16 << 20  # free heap kept before any is handed back to the kernel


def tune_malloc() -> bool:
    """Apply the settings above; whether glibc took all of them."""
    mallopt = libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return all([bool(mallopt(param, value)) for param, value in settings])
