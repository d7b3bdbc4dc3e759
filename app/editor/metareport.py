"""Per attachment: the identifying metadata found before scrubbing and what the copy still has.

Kept in ``metadata.json`` beside ``custody.json`` in each submission folder, so the review
``index.html`` can show it without re-reading every file (and without exiftool) each time it
is rebuilt. ``import`` fills it for the attachments (one exiftool run per bundle, inside the
staging folder, so it appears with the bundle); ``scrub`` adds the copy. The file is derived
data, not custody: deleting it loses nothing that cannot be recomputed.

Format ``guwah-metadata/1``: ``{"format", "error" (why nothing was read, or null),
"files": {name: {"findings": {"tool", "tags": {category: [[group:tag, value], …]}},
"copy_of": original name (scrubbed copies only)}}}``.
"""

from __future__ import annotations

import html
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.durable import replace_file

from . import metadata
from .errors import EditorError
from .scrub import ScrubResult, scrubbed_name

SIDECAR = "metadata.json"
FORMAT = "guwah-metadata/1"
SHOW = ("GPS", "device", "time", "author", "text")
MAX_SHOWN = 4  # tags shown per category in the index


def _load(folder: Path) -> dict[str, Any]:
    try:
        doc = json.loads((folder / SIDECAR).read_text("utf-8"))
    except (OSError, ValueError):
        return {"format": FORMAT, "error": None, "files": {}}
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(
        doc.get("files"), dict
    ):
        return {"format": FORMAT, "error": None, "files": {}}
    return doc


def _save(folder: Path, doc: dict[str, Any]) -> None:
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False)
    replace_file(folder / SIDECAR, text.encode())


def scan_folders(root: Path, custody_name: str) -> None:
    """Read the attachments of every submission folder under ``root`` (one exiftool run)."""
    _scan(sorted(root.glob(f"*/{custody_name}")))


def scan_missing(review: Path, custody_name: str) -> int:
    """Fill ``metadata.json`` where a submission has none (imported by an older version) or
    where it could not be read before (exiftool was missing); return how many were read."""
    records = [
        r
        for r in sorted(review.glob(f"*/bundle-*/*/{custody_name}"))
        if not r.parent.name.startswith(".")
        and (not (r.parent / SIDECAR).exists() or _load(r.parent).get("error"))
    ]
    _scan(records)
    return len(records)


def _scan(records: list[Path]) -> None:
    folders: dict[Path, list[str]] = {}
    copy_of: dict[Path, str] = {}  # scrubbed copy -> its original's name
    for record in records:
        try:
            files = json.loads(record.read_text("utf-8"))["files"]
            names = [str(f["saved_as"]) for f in files if f.get("saved_as")]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        copies = {scrubbed_name(record.parent / n).name: n for n in names}
        copy_of.update({record.parent / c: n for c, n in copies.items()})
        folders[record.parent] = [
            n for n in [*names, *copies] if (record.parent / n).is_file()
        ]
    if not folders:
        return
    paths = [folder / name for folder, names in folders.items() for name in names]
    error = None
    try:
        found = metadata.read_many(paths)
    except (EditorError, subprocess.SubprocessError, OSError) as exc:
        found, error = {}, f"metadata not read: {exc}"
    for folder, names in folders.items():
        doc: dict[str, Any] = {"format": FORMAT, "error": error, "files": {}}
        for name in names:
            if folder / name in found:
                doc["files"][name] = {"findings": found[folder / name].to_json()}
                if folder / name in copy_of:
                    doc["files"][name]["copy_of"] = copy_of[folder / name]
        _save(folder, doc)


def record_scrub(original: Path, result: ScrubResult, custody_name: str) -> Path | None:
    """Note a scrubbed copy in its submission folder; return the review folder to re-index."""
    folder = original.parent
    if not (folder / custody_name).is_file():
        return None
    doc = _load(folder)
    if result.before is not None:
        doc["files"][original.name] = {"findings": result.before.to_json()}
    if result.after is not None:
        doc["files"][result.dest.name] = {
            "findings": result.after.to_json(),
            "copy_of": original.name,
        }
    _save(folder, doc)
    review = folder.parent.parent.parent
    return review if (review / "index.html").is_file() else None


def summary_lines(result: ScrubResult) -> list[str]:
    """What the scrub command prints about metadata before and after."""
    if result.before is None:
        return ["metadata: not read (exiftool is not installed)"]
    if result.before.error:
        lines = [f"found in the original: nothing exiftool can read ({result.before.error})"]
    else:
        lines = [f"found in the original: {result.before.counts()}"]
    for cat in SHOW:
        for tag, value in result.before.tags.get(cat, [])[:MAX_SHOWN]:
            lines.append(f"  {cat}: {tag} = {value}")
    if result.after is None:
        lines.append("left in the copy: not checked")
    else:
        lines.append(f"left in the copy: {result.after.counts()} (checked by {result.after.tool})")
    return lines


def _describe(entry: dict[str, Any] | None) -> tuple[str, bool]:
    """(HTML, whether anything identifying was found) for one file's entry."""
    if not entry or not isinstance(entry.get("findings"), dict):
        return "<em>not read</em>", False
    found = metadata.Findings.from_json(entry["findings"])
    if found.error:
        return f"<em>exiftool cannot read it: {html.escape(found.error)}</em>", True
    if not found.any():
        return f"no GPS, device, time or author tags ({html.escape(found.tool)})", False
    parts = []
    for cat in SHOW:
        tags = found.tags.get(cat, [])
        if tags:
            shown = "; ".join(f"{tag} = {value}" for tag, value in tags[:MAX_SHOWN])
            more = f" … (+{len(tags) - MAX_SHOWN})" if len(tags) > MAX_SHOWN else ""
            parts.append(f"<b>{html.escape(cat)}</b>: {html.escape(shown + more)}")
    return "<br>".join(parts), True


def render_file(folder: Path, name: str, href: Callable[[Path], str]) -> str:
    """HTML for one attachment of the review index: metadata before, and in the copy."""
    doc = _load(folder)
    if doc.get("error"):
        return f'<div class="meta">{html.escape(str(doc["error"]))}</div>'
    before, risky = _describe(doc["files"].get(name))
    copy = scrubbed_name(folder / name)
    alert = ' class="alert"' if risky else ""
    if copy.is_file():
        after = (
            f'<a href="{html.escape(href(copy))}" download>{html.escape(copy.name)}</a>: '
            f"{_describe(doc['files'].get(copy.name))[0]}"
        )
    else:
        after = f"no scrubbed copy yet (guwah-editor scrub {html.escape(name)})"
    return (
        f'<div class="meta"><span{alert}>Metadata found:</span> {before}<br>'
        f"After scrubbing: {after}</div>"
    )
