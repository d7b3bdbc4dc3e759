"""The one owner of "the UTC day": the only time Guwah keeps, in the database and on disk.

Whatever Guwah stores carries at most the UTC date (docs/threat-model.md, time on disk).
Database columns hold ``today()``; files and directories get their atime/mtime set to the start
of their UTC day (``stamp``), so an ``ls -l --full-time`` of a seized disk says no more than the
``day`` columns.
Standard library only: the offline editor tool imports it too.
"""

from __future__ import annotations

import datetime as dt
import os
import time

DAY_SECONDS = 86400


def today() -> dt.date:
    """Today's UTC date: the day of arrival of anything stored now."""
    return dt.datetime.now(dt.UTC).date()


def day_start(day: dt.date) -> int:
    """Seconds since the epoch at 00:00 UTC of ``day``."""
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp())


def floor_to_day(seconds: float) -> int:
    """An epoch time rounded down to the start of its UTC day."""
    return int(seconds // DAY_SECONDS) * DAY_SECONDS


def today_start() -> int:
    """00:00 UTC today, as epoch seconds (what a file written now is stamped with)."""
    return floor_to_day(time.time())


def stamp(target: int | str | os.PathLike[str], seconds: int | None = None) -> None:
    """Set atime and mtime of an open fd or a path (never followed if a link) to a day start.

    ``seconds`` defaults to today's start. Why not keep the kernel's times: they are
    nanosecond-precise arrival times, exactly what the threat model says is never kept.
    """
    when = today_start() if seconds is None else floor_to_day(seconds)
    if isinstance(target, int):
        os.utime(target, (when, when))
    else:
        os.utime(target, (when, when), follow_symlinks=False)
