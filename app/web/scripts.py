"""The built page scripts and what a template needs to load them with Subresource Integrity.

tests/js/build.mjs writes SRI.json (file -> sha384) and modules.json (page script -> the
shared modules it imports). A page loads its script with ``integrity=`` and preloads each
shared module with its own ``integrity=`` (``<link rel="modulepreload">``), so that every
module the browser runs is pinned, not only the first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict

URL_PREFIX = "/static/js/"


class ModuleRef(TypedDict):
    src: str
    integrity: str


class PageScript(ModuleRef):
    preload: list[ModuleRef]


def page_script(js_dir: Path, name: str) -> PageScript | None:
    """``name`` and its shared modules with their hashes, or None if not built (the page
    then works as with JavaScript off)."""
    try:
        hashes = json.loads((js_dir / "SRI.json").read_text())
        modules = json.loads((js_dir / "modules.json").read_text()).get(name, [])
        refs = [ModuleRef(src=URL_PREFIX + m, integrity=str(hashes[m])) for m in modules]
        integrity = str(hashes[name])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not all((js_dir / m).is_file() for m in [name, *modules]):
        return None
    return PageScript(src=URL_PREFIX + name, integrity=integrity, preload=refs)
