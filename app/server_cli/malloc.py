"""One glibc malloc arena for ``guwah serve``.

Why: glibc gives each new thread that allocates its own arena (up to 8 per core), and the
pages an arena has touched stay in the resident set. The server's threads (the thread pool
of the request handlers, the sealing and writing threads of an upload) each took one;
measured with ``bench/bench_sealing.py``, the server's resident set was 119 MiB idle and
127 MiB at its peak with the default, 107 and 119 MiB with one arena, at the same speed
(0.72-0.79 s for 256 MiB either way). Python's own small objects never go through these
arenas, and the big buffers are few and pooled, so the one arena's lock is not contended.

Why at run time and not ``MALLOC_ARENA_MAX`` in the environment: the setting then holds
however the server is started (the systemd unit, the demo, a test, a benchmark). Called
before any thread starts. Elsewhere than glibc: nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_ARENA_MAX = -8  # malloc.h


def one_arena() -> bool:
    """Limit glibc malloc to its main arena; whether it took effect."""
    if os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, 1))
