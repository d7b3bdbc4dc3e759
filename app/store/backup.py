"""Backups: a consistent snapshot of a data dir (ciphertext only), and restoring it elsewhere.

SQLite: the online backup API copies the database while the server keeps running; then every
blob that snapshot references is copied (blobs are never changed after commit, only added or
deleted, so the snapshot's blobs are all there unless a deletion ran in between — reported).
PostgreSQL: the database is backed up with ``pg_dump`` (docs/operator-guide.md); ``guwah backup``
copies the rest (config, server key, filesystem blobs) and says so.

A backup directory holds: MANIFEST.json (format, SHA-256 of every file), guwah.toml,
server-signing-key, guwah.sqlite3 (SQLite only), blobs/ (filesystem backend). Modes 0700/0600:
the server key is secret, the rest is ciphertext and metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from app.durable import COPY_CHUNK, fsync_dir, new_file, open_new, write_new_file
from app.settings import CONFIG_FILE_NAME, SERVER_KEY_FILE_NAME, Settings

from .disktimes import restamp_tree
from .errors import StoreError
from .store import BLOB_QUERY, INLINE_QUERY, BlobList, Store

FORMAT = "guwah-backup/1"
MANIFEST = "MANIFEST.json"
DB_FILE = "guwah.sqlite3"


class BackupError(StoreError):
    """The backup or restore cannot go ahead; one sentence."""


@dataclass
class BackupReport:
    files: int = 0
    blobs: int = 0
    bytes: int = 0
    missing_blobs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _require_empty(path: Path, what: str) -> None:
    if path.exists():
        if not path.is_dir():
            raise BackupError(f"{what} {path} exists and is not a directory")
        if any(path.iterdir()):
            raise BackupError(f"{what} {path} is not empty; refusing to overwrite anything")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _copy_file(src: Path, dst: Path) -> str:
    """Copy into a new 0600 file (fsynced, never over anything); return its SHA-256 hex."""
    digest = hashlib.sha256()
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(src, "rb") as handle, new_file(dst) as out:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sqlite_path(settings: Settings) -> Path:
    database = make_url(settings.database_url).database
    if not database:
        raise BackupError("the database URL names no SQLite file")
    return Path(database)


def _fsync_tree(root: Path) -> None:
    for directory, _dirs, _files in os.walk(root):
        fsync_dir(Path(directory))


def _copy_settings_files(settings: Settings, target: Path, files: dict[str, str],
                         report: BackupReport) -> None:
    for name in (CONFIG_FILE_NAME, SERVER_KEY_FILE_NAME):
        src = settings.data_dir / name
        if src.is_file():
            files[name] = _copy_file(src, target / name)
    if SERVER_KEY_FILE_NAME not in files:
        report.notes.append("no server signing key in the data dir (run guwah init)")


def _snapshot_sqlite(settings: Settings, target: Path, files: dict[str, str]) -> BlobList:
    """The online backup API into ``target``; the blobs are read from that snapshot."""
    source = _sqlite_path(settings)
    if not source.is_file():
        raise BackupError(f"no database at {source}: run guwah init")
    dest_path = target / DB_FILE
    os.close(open_new(dest_path))
    src_conn = sqlite3.connect(source)
    dst_conn = sqlite3.connect(dest_path)
    try:
        src_conn.backup(dst_conn)
        dst_conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        refs = [(r, h) for r, h in dst_conn.execute(BLOB_QUERY)]
        inline = {r for (r,) in dst_conn.execute(INLINE_QUERY)}
    finally:
        dst_conn.close()
        src_conn.close()
    dest_path.chmod(0o600)
    files[DB_FILE] = _sha256(dest_path)
    return refs, inline


def _postgres_blobs(store: Store, report: BackupReport) -> BlobList:
    report.notes.append(
        "the PostgreSQL database is not in this backup: run pg_dump -Fc (see "
        "docs/operator-guide.md, Backups)"
    )
    return store.blob_digests()


def _copy_blobs(settings: Settings, target: Path, blobs: BlobList, files: dict[str, str],
                report: BackupReport) -> None:
    """Filesystem blobs the snapshot references, each checked against its SHA-256."""
    refs, inline = blobs
    root = settings.blob_path
    for ref, expected in refs:
        if ref in inline:
            continue  # a small blob stored inline: it is in the database (or its dump)
        src = root / ref[:2] / ref
        relative = f"blobs/{ref[:2]}/{ref}"
        if not src.is_file():
            report.missing_blobs.append(ref)
            continue
        digest = _copy_file(src, target / relative)
        if digest != expected:
            raise BackupError(f"blob {ref} does not match its SHA-256: the data dir is damaged")
        files[relative] = digest
        report.blobs += 1
        report.bytes += (target / relative).stat().st_size


def backup(store: Store, target: Path) -> BackupReport:
    """Write a snapshot of the store's data dir into the new or empty directory ``target``."""
    settings = store.settings
    report = BackupReport()
    target = target.absolute()
    if target == settings.data_dir or settings.data_dir in target.parents:
        raise BackupError("the backup directory must be outside the data dir")
    _require_empty(target, "backup directory")
    files: dict[str, str] = {}
    _copy_settings_files(settings, target, files, report)
    if settings.is_sqlite:
        blobs = _snapshot_sqlite(settings, target, files)
    else:
        blobs = _postgres_blobs(store, report)
    if settings.blob_backend == "fs":
        _copy_blobs(settings, target, blobs, files, report)
    manifest = {
        "format": FORMAT,
        "database": "sqlite" if settings.is_sqlite else "postgresql",
        "blob_backend": settings.blob_backend,
        "files": dict(sorted(files.items())),
    }
    write_new_file(target / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    _fsync_tree(target)
    # last, because listing a directory moves its atime: days, like the data dir, no seconds
    restamp_tree([target])
    report.files = len(files) + 1
    if report.missing_blobs:
        report.notes.append(
            f"{len(report.missing_blobs)} blob(s) were deleted while the backup ran"
        )
    return report


def restore(source: Path, data_dir: Path) -> list[str]:
    """Copy a backup into a new or empty data dir, checking every SHA-256 first; returns notes."""
    source = source.absolute()
    try:
        manifest = json.loads((source / MANIFEST).read_text("utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{source} is not a Guwah backup (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {source / MANIFEST}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{source} is not a {FORMAT} backup")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BackupError(f"{source / MANIFEST} lists no files")
    for relative, expected in files.items():
        path = (source / relative).resolve()
        if source not in path.parents or ".." in Path(relative).parts:
            raise BackupError(f"{MANIFEST} names a file outside the backup: {relative}")
        if not path.is_file():
            raise BackupError(f"the backup is incomplete: {relative} is missing")
        if _sha256(path) != expected:
            raise BackupError(f"the backup is damaged: {relative} does not match its SHA-256")

    _require_empty(data_dir, "data dir")
    try:
        for relative, expected in sorted(files.items()):
            if _copy_file(source / relative, data_dir / relative) != expected:
                raise BackupError(f"{relative} changed while it was being restored")
        _fsync_tree(data_dir)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    notes = []
    if manifest.get("database") == "postgresql":
        notes.append("restore the PostgreSQL database with pg_restore, then run guwah migrate")
    return notes
