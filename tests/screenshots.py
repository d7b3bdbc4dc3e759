"""One way for the browser tests to save a screenshot of a page (kept in artifacts/ for people
to look at; no test reads them back).

Why retry: headless Chromium now and then answers "Unable to capture screenshot" when the
machine is busy (tests/run.sh runs two lanes at once, each may drive a Chromium), though the
page is fine; a second try a moment later succeeds. A page that still cannot be captured after
a few tries fails the test, as before.
"""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Error, Page

TRIES = 4
PAUSE = 0.5  # seconds between tries


def screenshot(page: Page, path: Path, *, full_page: bool = True) -> None:
    """Save ``page`` as a PNG at ``path`` (its folder is made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, TRIES + 1):
        try:
            page.screenshot(path=str(path), full_page=full_page)
            return
        except Error as exc:
            if attempt == TRIES or "Unable to capture screenshot" not in str(exc):
                raise
            time.sleep(PAUSE)
