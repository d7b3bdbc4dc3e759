"""The witness site's background duty: remove uploads that never received a byte, and keep
the in-memory ledgers (app/web/budget.py, app/web/quota.py) in step with the store.

Runs in the app's lifespan every ``min(upload_idle_seconds / 2, 30)`` seconds. Why a resync
instead of hooks everywhere: a commit (app/web/routers/commit.py), ``guwah cleanup`` and other app
nodes change the uploads too; between two runs the ledgers can only over-count (refuse a
little early), never let more in than the limits.
"""

from __future__ import annotations

import logging

import anyio
import anyio.to_thread

from app.store import NotFound
from app.store.uploads import UploadArea

from .state import Web

log = logging.getLogger("guwah.web")
MAX_PERIOD_SECONDS = 30.0


async def housekeeping(web: Web) -> None:
    """Loop for ever (cancelled at shutdown)."""
    period = min(web.settings.upload_idle_seconds / 2, MAX_PERIOD_SECONDS)
    while True:
        try:
            await tidy(web)
        except Exception as exc:  # a database hiccup must not end the loop
            log.warning("housekeeping failed (%s)", type(exc).__name__)
        await anyio.sleep(period)


async def tidy(web: Web) -> None:
    """One round: remove idle uploads, then resync the ledger and the stored bytes."""
    area = getattr(web.store, "uploads", None)
    if area is None:
        return
    idle = web.ledger.idle()
    if idle:
        await anyio.to_thread.run_sync(_remove, area, idle)
    live, stored = await anyio.to_thread.run_sync(area.live)
    web.ledger.resync(live)
    web.budget.resync_stored(stored)


def _remove(area: UploadArea, upload_ids: list[str]) -> None:
    for upload_id in upload_ids:
        try:
            area.delete(upload_id)
        except NotFound:
            pass
