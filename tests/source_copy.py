"""A private copy of this checkout, for a test that builds guwah's wheel from it.

Why not build from the checkout itself: pip builds a local project inside its directory
(setuptools writes ``build/`` and ``guwah.egg-info`` there), and tests/run.sh runs two pytest
processes at once, both of which build the wheel (the deploy tests and the system tests). Two
builds in one directory can mix each other's files. A copy of what a wheel is built from costs
a few MiB and a fraction of a second.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# neither source nor package data: version control, environments, build output, test output
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "node_modules", "build", "*.egg-info",
                                    ".pytest_cache", "__pycache__", "artifacts", ".mypy_cache",
                                    ".ruff_cache")


@contextmanager
def source_copy() -> Iterator[Path]:
    """A fresh copy of the checkout, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="guwah-source-") as parent:
        yield Path(shutil.copytree(REPO, Path(parent) / "guwah", ignore=NOT_SOURCE))
