"""A private copy of this checkout, for a test that builds guwah's wheel from it.

Why not build from the checkout itself: pip builds a local project inside its directory
(setuptools writes ``build/`` and ``guwah.egg-info`` there), and tests/run.sh runs two pytest
processes at once, both of which build the wheel (the deploy tests and the system tests). Two
builds in one directory can mix each other's files. A copy of what a wheel is built from costs
a few MiB and a fraction of a second.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# neither source nor package data: version control, environments, build output, test output
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "node_modules", "build", "*.egg-info",
                                    ".pytest_cache", "__pycache__", "artifacts", ".mypy_cache",
                                    ".ruff_cache")


def source_copy(parent: Path) -> Path:
    """A fresh copy of the checkout in ``parent`` (which must not hold one yet)."""
    return Path(shutil.copytree(REPO, parent / "guwah-source", ignore=NOT_SOURCE))
