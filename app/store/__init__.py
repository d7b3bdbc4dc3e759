"""Server-side storage: SQLAlchemy models, the blob stores, the Store facade.

What is stored about a witness is listed in app/store/models.py — and nothing else is.
Errors are the typed family of app/store/errors.py. ``Store`` is the facade; each area has its
own module; ``UnitOfWork`` (unit.py) is the one place blobs and rows commit together.
"""

from .blobs import BlobStore, BlobWriter
from .checks import StartupError, check_data_dir, check_tmpdir, startup_checks
from .db import DatabaseUrlError, make_engine, sqlite_pragma_check
from .dbblobs import DbBlobStore
from .desks import Desk, EditorKey
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
from .fsblobs import FsBlobStore
from .outbox import OutboxImport, OutboxOutcome
from .replies import ReplyInfo
from .store import Store
from .submissions import FileInfo, PendingSubmission, SubmissionInfo
from .unit import UnitOfWork

__all__ = [
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
    "OutboxImport",
    "OutboxOutcome",
    "PendingSubmission",
    "ReplyInfo",
    "StartupError",
    "Store",
    "StoreError",
    "SubmissionInfo",
    "UnitOfWork",
    "check_data_dir",
    "check_tmpdir",
    "is_disk_full",
    "make_engine",
    "sqlite_pragma_check",
    "startup_checks",
]
