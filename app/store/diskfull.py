"""Is this failure "the disk (or the database's disk) is full"?  One place that knows.

The web app answers such a failure with 507 ("short of storage space"), never 500. The
test is by type and error code along the exception's cause chain (why not the message text:
it is translated by some databases and differs between versions):

* ``OSError`` with ``ENOSPC`` or ``EDQUOT`` (a blob write or fsync);
* SQLite ``SQLITE_FULL`` (``sqlite_errorcode`` on the driver's exception);
* PostgreSQL SQLSTATE class 53 "insufficient resources" (53100 disk full, 53200 out of memory).
"""

from __future__ import annotations

import errno

SQLITE_FULL = 13
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` or anything in its ``__cause__``/``__context__`` chain is disk-full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _full(exc):
            return True
        orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
        if isinstance(orig, BaseException) and _full(orig):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    if getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL:
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("53")
