"""Request bodies that stall are cut off: one reader for every route that streams a body.

A body that delivers no byte for ``body_idle_seconds``, or fewer than ``body_min_rate`` bytes a
second over a window of ``body_rate_window_seconds`` of *waiting for the client*, raises
:class:`BodyStalled`; the caller discards what it built from the body.  Only the time spent
waiting for the client counts (why: a request that waits for a sealing thread or for room in
the budget is slow because of the server, not because the witness stalled).

Defaults (app/settings.py) are far from what honest witnesses do: a 1 MB/s Tor witness sends
a 64 KiB piece every 60 ms, a 20 KB/s one on a bad circuit every 3 s; the cut-off needs 60 s
of silence or under 1 KiB/s for a whole minute.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from app.settings import Settings


class BodyStalled(Exception):
    """The client stopped sending its body (or sends it too slowly to be honest)."""


@dataclass(frozen=True)
class Pacing:
    idle_seconds: float
    min_rate: int
    window_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Pacing:
        return cls(settings.body_idle_seconds, settings.body_min_rate,
                   settings.body_rate_window_seconds)


async def paced_body(stream: AsyncIterator[bytes], pacing: Pacing) -> AsyncIterator[bytes]:
    """Yield the non-empty chunks of ``stream``; raise BodyStalled when it stalls."""
    body = stream.__aiter__()
    waited = 0.0  # seconds spent waiting for the client in the current window
    window_bytes = 0
    while True:
        started = anyio.current_time()
        with anyio.move_on_after(pacing.idle_seconds) as idle:
            try:
                chunk = await body.__anext__()
            except StopAsyncIteration:
                return
        if idle.cancelled_caught:
            raise BodyStalled("no byte for the idle time")
        waited += anyio.current_time() - started
        window_bytes += len(chunk)
        if waited >= pacing.window_seconds:
            if window_bytes < pacing.min_rate * waited:
                raise BodyStalled("below the minimum rate")
            waited, window_bytes = 0.0, 0
        if chunk:
            yield chunk
