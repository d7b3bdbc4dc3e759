"""Server-side storage: SQLAlchemy models, the blob stores, the Store facade.

What is stored about a witness is listed in app/store/models.py — and nothing else is.
Errors are the typed family of app/store/errors.py.
"""

from .blobs import BlobStore, BlobWriter, DbBlobStore, FsBlobStore
from .checks import StartupError, check_data_dir, check_tmpdir, startup_checks
from .db import DatabaseUrlError, make_engine
from .diskfull import is_disk_full
from .errors import (
    AlreadyUsed,
    BadReplyRecipient,
    BadTokenHash,
    Conflict,
    Invalid,
    NotFound,
    NotStored,
    StoreError,
)
from .store import (
    MIGRATIONS_DIR,
    Desk,
    EditorKey,
    FileInfo,
    PendingSubmission,
    ReplyInfo,
    Store,
    SubmissionInfo,
    today,
)

__all__ = [
    "MIGRATIONS_DIR",
    "AlreadyUsed",
    "BadReplyRecipient",
    "BadTokenHash",
    "BlobStore",
    "BlobWriter",
    "Conflict",
    "DatabaseUrlError",
    "DbBlobStore",
    "Desk",
    "EditorKey",
    "FileInfo",
    "FsBlobStore",
    "Invalid",
    "NotFound",
    "NotStored",
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
