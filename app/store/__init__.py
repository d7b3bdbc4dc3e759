"""Server-side storage: SQLAlchemy models, the blob stores, the Store facade.

Contract: /work/notes/STORE_API.md (copied to docs/ by the lead). What is stored about a witness
is listed in app/store/models.py — and nothing else is.
"""

from .blobs import BlobStore, BlobWriter, DbBlobStore, FsBlobStore
from .checks import StartupError, check_data_dir, check_tmpdir, startup_checks
from .db import DatabaseUrlError, make_engine
from .diskfull import is_disk_full
from .store import (
    MIGRATIONS_DIR,
    Desk,
    EditorKey,
    FileInfo,
    NotFound,
    PendingSubmission,
    ReplyInfo,
    Store,
    StoreError,
    SubmissionInfo,
    today,
)

__all__ = [
    "MIGRATIONS_DIR",
    "BlobStore",
    "BlobWriter",
    "DatabaseUrlError",
    "DbBlobStore",
    "Desk",
    "EditorKey",
    "FileInfo",
    "FsBlobStore",
    "NotFound",
    "PendingSubmission",
    "ReplyInfo",
    "StartupError",
    "Store",
    "StoreError",
    "SubmissionInfo",
    "check_data_dir",
    "check_tmpdir",
    "is_disk_full",
    "make_engine",
    "startup_checks",
    "today",
]
