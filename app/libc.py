"""One function of the C library by name, typed; ``None`` where there is none.

Why one helper: two modules call C library functions the standard library does not wrap
(``sync_file_range`` in app/diskio.py, ``mallopt`` in app/server_cli/malloc.py). The
platform check, the lookup and the argument types are written here once. Outside Linux, or
where the library lacks the function, callers get ``None`` and do without it. Standard
library only: the offline editor tool uses it too (through app/diskio.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from typing import Any, cast


def libc_function(name: str, argtypes: list[Any]) -> Callable[..., int] | None:
    """The C library's ``name`` returning a C ``int``, with ``errno`` kept; None if absent."""
    if os.uname().sysname != "Linux":
        return None
    try:
        library = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = getattr(library, name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return cast(Callable[..., int], function)
