"""The quarantine section of a review folder: submissions that could not be opened or read.

One bad submission must never hide the good ones: an anonymous client can store any bytes
that have the shape of an age file for the desk (the server cannot check more without the
editors' keys), so ``guwah-editor import`` lays out every submission on its own. What does not
open (another key, junk, a damaged payload) or does not read as a Guwah testimony (bad padding,
bad JSON, a testimony document of the wrong shape, a file missing or extra) is recorded here
instead, with one line of why, and no plaintext of it is kept:

    REVIEW/<desk>/bundle-<sequence>/quarantine/<day>_<id>/
        quarantine.json     submission id, desk, day, parent, bundle, ciphertext hashes, reason
        reason.txt          the reason, one line

``guwah-editor done`` on such a folder queues its deletion like any other submission (the
record names the submission and its desk); importing the same bundle again retries it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import EditorError

FORMAT = "guwah-quarantine/1"
FOLDER = "quarantine"
RECORD = "quarantine.json"
REASON = "reason.txt"
CUSTODY = "custody.json"
EXIT_CODE = 3  # `guwah-editor import` succeeded, but this many submissions were quarantined


class Quarantine(Exception):
    """One submission cannot be laid out; ``reason`` is the line the editor reads."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def record(sub: dict[str, Any], desk: str, bundle_info: dict[str, Any], reason: str) -> dict:
    """The quarantine record of a manifest entry ``sub`` (only what the signed manifest says)."""
    return {
        "format": FORMAT,
        "submission_id": sub["id"],
        "desk": desk,
        "day": sub["day"],
        "parent_id": sub["parent_id"],
        "bundle": bundle_info,
        "ciphertexts": [
            {"role": f["role"], "path": f["path"], "size": f["size"], "sha256": f["sha256"]}
            for f in sub["files"]
        ],
        "reason": reason,
    }


def load_record(folder: Path) -> dict[str, Any]:
    """What ``done`` needs of a submission folder, laid out or quarantined."""
    for name, fmt in ((CUSTODY, "guwah-custody-record/1"), (RECORD, FORMAT)):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            raise EditorError(f"{path} is damaged") from None
        if not isinstance(data, dict) or data.get("format") != fmt:
            raise EditorError(f"{path} is not a Guwah record")
        if not isinstance(data.get("submission_id"), str) or not isinstance(data.get("desk"), str):
            raise EditorError(f"{path} is damaged")
        return data
    raise EditorError(
        f"{folder} is not a submission folder (no {CUSTODY} or {RECORD}): give its path"
    )


def entries(review: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every quarantined submission under ``review`` (folder, record), in path order."""
    out = []
    for path in sorted(review.glob(f"*/bundle-*/{FOLDER}/*/{RECORD}")):
        if any(p.startswith(".") for p in path.relative_to(review).parts):
            continue
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == FORMAT:
            out.append((path.parent, data))
    return out


def pending(bundle_dir: Path) -> dict[str, Path]:
    """Submission id -> quarantine folder, for one bundle folder (what a re-import retries)."""
    out = {}
    for path in sorted((bundle_dir / FOLDER).glob(f"*/{RECORD}")):
        try:
            sid = json.loads(path.read_text("utf-8"))["submission_id"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(sid, str):
            out[sid] = path.parent
    return out
