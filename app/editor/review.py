"""``guwah-editor import``: verify an export bundle, decrypt it, lay out a review folder.

Layout of a review folder::

    REVIEW/index.html                          static, no JavaScript; by desk, then by day
    REVIEW/<desk>/bundle-<sequence>/           one folder per imported bundle (atomic unit)
        manifest.json, manifest.sig            exactly as signed by the server (custody)
        <day>_<id>/                            one folder per submission
            testimony.txt, testimony.json      human-readable text + the witness's document
            custody.json                       hashes, signature, checks, risk flags
            file-1_<safe name> …               attachments, padding removed, 0600
        quarantine/<day>_<id>/                 a submission that did not open or read
            quarantine.json, reason.txt        (quarantine.py); no plaintext

Atomicity: everything of a bundle is decrypted into a hidden ``.staging-…`` folder inside
REVIEW and renamed to ``<desk>/bundle-<sequence>`` only when every signature and hash checked
out; an error of the bundle removes the staging folder. A submission that fails on its own is
quarantined and the others are laid out (layout.py). Importing the same bundle again retries
its quarantined submissions. Names come from ``safe_output.safe_name``, never from a path the
witness sent.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import queue
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app.bundles import EXPORT_FORMAT, BundleError, OpenedBundle, open_bundle
from app.durable import fsync_dir

from . import deskmail, metareport, quarantine
from .errors import EditorError
from .index_page import INDEX, write_index
from .keyring import Keyring
from .layout import CUSTODY, ImportResult, Layout, write_new
from .safe_output import safe_name
from .trust import ImportState, pinned_server, server_fingerprint

__all__ = ["CUSTODY", "INDEX", "ImportResult", "import_bundle", "write_index"]


def _trusted(pinned: bytes) -> Callable[[dict[str, Any]], bytes]:
    def check(manifest: dict[str, Any]) -> bytes:
        try:
            claimed = base64.b64decode(str(manifest.get("server_key", "")), validate=True)
        except ValueError:
            claimed = b""
        if claimed != pinned:
            other = server_fingerprint(claimed) if len(claimed) == 32 else "malformed"
            raise BundleError(
                f"the bundle is signed by an unknown server key ({other}); the pinned server "
                f"key is {server_fingerprint(pinned)}"
            )
        return pinned

    return check


def import_bundle(
    path: Path,
    review: Path,
    keyring_dir: Path,
    unlock: Callable[[], Keyring],
    *,
    allow_replay: bool = False,
    progress: Callable[[int], object] | None = None,
) -> ImportResult:
    """Verify and decrypt one export bundle into ``review`` (see the module docstring)."""
    pinned = pinned_server(keyring_dir)
    state = ImportState(keyring_dir)
    if not path.is_file():
        raise EditorError(f"{path} is not a file")
    if review.is_symlink():
        raise EditorError(f"{review} is a symbolic link: choose a real folder for --review")
    with open(path, "rb") as fh:
        bundle = open_bundle(fh, EXPORT_FORMAT, _trusted(pinned))
        desk, seq = bundle.manifest["desk"], bundle.manifest["sequence"]
        final = review / safe_name(desk) / f"bundle-{seq:06d}"
        previous = state.imported_as(pinned, desk, seq)
        if _holds(final, bundle):
            return _retry(bundle, final, review, unlock, progress)
        if previous and previous["manifest_sha256"] == bundle.manifest_sha256:
            where = Path(previous["folder"])
            if _holds(where, bundle):
                return _retry(bundle, where, where.parent.parent, unlock, progress)
            return ImportResult(where, already=True)
        result = ImportResult(None)
        final = _sequence_checked(state.last(pinned, desk), bundle, final, allow_replay, result)
        if final.exists():
            raise EditorError(f"{final} exists with another bundle: refusing to overwrite it")
        ring = unlock()
        with _staging(review) as staging:
            layout = Layout(bundle, staging, ring, result, progress, _bundle_info(bundle))
            write_new(staging / "manifest.json", bundle.manifest_bytes)
            write_new(staging / "manifest.sig", bundle.signature_b64.encode())
            syncer = _Syncer()
            try:
                layout.run(syncer)
            finally:
                syncer.finish()
            metareport.scan_folders(staging, CUSTODY)  # metadata found per attachment
            _fsync_tree(staging, skip=syncer.done)
            final.parent.mkdir(mode=0o700, exist_ok=True)
            os.rename(staging, final)
            fsync_dir(final.parent)
    editors = bundle.manifest.get("editors")
    if seq >= state.last(pinned, desk):  # an older bundle's list is stale: no warning from it
        result.warnings += deskmail.editor_changes(state.editors(pinned, desk), editors)
    state.record(pinned, desk, seq, bundle.manifest_sha256, str(final), editors)
    result.folder, result.submissions = final, len(layout.laid_out)
    write_index(review)
    return result


def _holds(folder: Path, bundle: OpenedBundle) -> bool:
    """Whether ``folder`` is where exactly this bundle was imported."""
    manifest = folder / "manifest.json"
    return manifest.is_file() and manifest.read_bytes() == bundle.manifest_bytes


def _sequence_checked(
    last: int, bundle: OpenedBundle, final: Path, allow_replay: bool, result: ImportResult
) -> Path:
    """Refuse a replay (unless asked), warn about a gap; the folder to import into."""
    desk, seq = bundle.manifest["desk"], bundle.manifest["sequence"]
    if seq <= last:
        if not allow_replay:
            raise EditorError(
                f"refused: bundle {seq} of desk {desk} is a replay or older than the last "
                f"one imported ({last}); use --allow-replay only if you know why"
            )
        result.warnings.append(f"bundle {seq} is not newer than {last}: imported as asked")
        return final.with_name(f"{final.name}-{bundle.manifest_sha256[:8]}")
    if seq > last + 1:
        result.warnings.append(
            f"bundle sequence gap: last imported {last}, this is {seq}: "
            f"ask the operator for the missing bundle(s)"
        )
    return final


def _bundle_info(bundle: OpenedBundle) -> dict[str, Any]:
    m = bundle.manifest
    return {
        "sequence": m["sequence"],
        "day": m["day"],
        "server_key": m["server_key"],
        "server_fingerprint": server_fingerprint(bundle.signer),
        "manifest_sha256": bundle.manifest_sha256,
        "signature": bundle.signature_b64,
    }


@contextlib.contextmanager
def _staging(review: Path) -> Iterator[Path]:
    """A hidden staging folder in ``review``; removed (with ``review`` if we created it and it
    is still empty) on error, and whatever is left of it after success."""
    created = not review.exists()
    review.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = review / f".staging-{secrets.token_hex(8)}"
    staging.mkdir(mode=0o700)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                review.rmdir()  # only if still empty: leave no trace of a failed import
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _retry(
    bundle: OpenedBundle,
    final: Path,
    review: Path,
    unlock: Callable[[], Keyring],
    progress: Callable[[int], object] | None,
) -> ImportResult:
    """The bundle is imported already: try its quarantined submissions again (a key restored,
    a fixed tool); each that opens now moves from the quarantine into the bundle folder."""
    waiting = quarantine.pending(final)
    result = ImportResult(final, already=True)
    if not waiting:
        return result
    ring = unlock()
    with _staging(review) as staging:
        layout = Layout(bundle, staging, ring, result, progress, _bundle_info(bundle))
        layout.run(None, only=set(waiting))
        _fsync_tree(staging)
        for sid in layout.laid_out:
            name = layout.folder_name(sid)
            os.rename(staging / name, final / name)
            shutil.rmtree(waiting[sid])
        fsync_dir(final)
    result.retried = result.submissions = len(layout.laid_out)
    if layout.laid_out:
        write_index(review)
    return result


def _fsync_path(path: str) -> None:
    """fsync a file or a folder (never following a link)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Syncer:
    """fsyncs finished attachments on a helper thread while later ones are decrypted."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="guwah-fsync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            if self._error is None:
                try:
                    _fsync_path(path)
                    self.done.add(path)
                except BaseException as exc:
                    self._error = exc

    def submit(self, path: Path) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(str(path))

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _fsync_tree(root: Path, skip: set[str] | frozenset[str] = frozenset()) -> None:
    """Make every staged file and folder durable before the rename publishes them."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if path not in skip:
                _fsync_path(path)
        if folder not in skip:
            fsync_dir(Path(folder))


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()
