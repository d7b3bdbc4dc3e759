"""``guwah export``: one signed bundle of a desk's new submissions (docs/formats.md §6).

Pure function over the Store so the CLI command stays thin. The bundle is written to a hidden
temporary file next to the destination, fsynced and linked into place; only then is the
export recorded (its sequence and ids), so a failed write leaves no trace and the next export
sends the same submissions again. Each ciphertext is checked against the SHA-256 the store
recorded while it is copied: a damaged blob stops the export.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Literal

from app.bundles import EXPORT_FORMAT, BundleError, write_bundle_file
from app.protocol.utcday import today
from app.settings import Settings
from app.store import Invalid, NotFound, Store

from .serverkey import load_server_key, public_key_bytes

Progress = Callable[[int], object]


@dataclass
class ExportResult:
    path: Path | None
    desk: str
    sequence: int
    submissions: int
    files: int
    bytes: int
    replies: int = 0


def _role_key(role: str) -> tuple[int, int]:
    return (0, 0) if role == "message" else (1, int(role.split("-", 1)[1]))


def choose_desk(store: Store, desk: str | None) -> str:
    if desk is not None:
        return store.get_desk(desk).name
    desks = store.list_desks()
    if len(desks) == 1:
        return desks[0].name
    if not desks:
        raise NotFound("there are no desks yet: nothing to export")
    names = ", ".join(d.name for d in desks)
    raise Invalid(f"there are several desks ({names}): choose one with --desk NAME")


def desk_editors(store: Store, desk: str) -> list[dict[str, str]]:
    """The desk's editor public keys, as the signed export carries them to every editor:
    a reply is encrypted to all of them, so any editor of the desk can read it later."""
    return [
        {
            "name": k.name,
            "age_recipient": k.age_recipient,
            "ed25519": k.ed25519_public,
            "fingerprint": k.fingerprint,
        }
        for k in sorted(store.get_desk(desk).recipients, key=lambda k: k.fingerprint)
    ]


def build_manifest(
    store: Store, settings: Settings, desk: str, mode: Literal["since_last", "all"]
) -> tuple[dict[str, Any], dict[str, Callable[[], BinaryIO]]]:
    """The manifest for the next bundle, and member path -> how to open it."""
    key = load_server_key(settings.server_key_file)
    subs = store.list_submissions(desk)
    replies = store.desk_replies(desk)
    if mode == "since_last":
        already = store.exported_ids(desk)
        subs = [s for s in subs if s.id not in already]
        sent = store.exported_reply_ids(desk)
        replies = [r for r in replies if r.id not in sent]
    members: dict[str, Callable[[], BinaryIO]] = {}
    entries = []
    for sub in subs:
        files = []
        for f in sorted(sub.files, key=lambda f: _role_key(f.role)):
            path = f"submissions/{sub.id}/{f.role}.age"
            members[path] = partial(store.open_blob_for_read, sub.id, f.role)
            files.append({"role": f.role, "path": path, "size": f.size, "sha256": f.sha256})
        entries.append(
            {"id": sub.id, "day": sub.day.isoformat(), "parent_id": sub.parent_id, "files": files}
        )
    reply_entries = []
    for r in replies:
        path = f"replies/{r.id}.age"
        members[path] = partial(store.open_reply_by_id, r.id)
        reply_entries.append({"id": r.id, "path": path, "size": r.size, "sha256": r.sha256})
    manifest = {
        "format": EXPORT_FORMAT,
        "server_key": base64.b64encode(public_key_bytes(key)).decode(),
        "desk": desk,
        "sequence": store.next_export_sequence(desk),
        "day": today().isoformat(),
        "submissions": entries,
        "editors": desk_editors(store, desk),
        "replies": reply_entries,
        # replies of this desk the witness deleted from their mailbox (id and day only); every
        # bundle repeats them, so an editor who missed one bundle still learns of them
        "withdrawn_replies": [
            {"id": rid, "day": day.isoformat()}
            for rid, day in store.withdrawn_replies(store.exported_reply_ids(desk))
        ],
    }
    return manifest, members


def export_bundle(
    store: Store,
    settings: Settings,
    to: Path,
    desk: str | None = None,
    mode: Literal["since_last", "all"] = "since_last",
    progress: Progress | None = None,
    on_total: Callable[[int], object] | None = None,
) -> ExportResult:
    """Write the next bundle of ``desk`` to ``to`` (a file path, or a folder for a default name).

    With ``since_last`` and nothing new, nothing is written and ``path`` is None.
    """
    desk_name = choose_desk(store, desk)
    manifest, members = build_manifest(store, settings, desk_name, mode)
    total = sum(f["size"] for s in manifest["submissions"] for f in s["files"])
    total += sum(r["size"] for r in manifest["replies"])
    n_files = sum(len(s["files"]) for s in manifest["submissions"])
    seq = manifest["sequence"]
    if not manifest["submissions"] and not manifest["replies"]:
        return ExportResult(None, desk_name, seq - 1, 0, 0, 0)
    if to.is_dir():
        to = to / f"guwah-export-{desk_name}-{seq:06d}.tar"
    if on_total:
        on_total(total)
    key = load_server_key(settings.server_key_file)

    write_bundle_file(to, manifest, key, lambda path: members[path](), progress)
    try:
        recorded = store.record_export(
            desk_name,
            [s["id"] for s in manifest["submissions"]],
            sequence=seq,
            only_new=mode == "since_last",
            reply_ids=[r["id"] for r in manifest["replies"]],
        )
        if recorded != seq:
            raise BundleError("another export ran at the same time: run guwah export again")
    except BaseException:
        to.unlink(missing_ok=True)
        raise
    return ExportResult(
        to, desk_name, seq, len(manifest["submissions"]), n_files, total, len(manifest["replies"])
    )
