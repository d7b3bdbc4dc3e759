"""Database engines: SQLite (one machine) and PostgreSQL via psycopg 3, through the same code."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

# Each pragma is set on every new connection, because SQLite keeps most of them per connection.
# secure_delete: freed pages are zeroed, so deleted rows (tombstoned submissions) leave no trace
#   in the file; WAL: readers do not block the writer; synchronous=FULL: the WAL is fsynced at
#   every commit, so an acknowledged submission survives a power cut; foreign_keys: SQLite
#   ignores REFERENCES without it.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA secure_delete=ON",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=30000",
)
# What a connection reads back when the pragmas above are in force (``guwah self-check``).
SQLITE_EXPECTED: dict[str, object] = {
    "journal_mode": "wal",
    "secure_delete": 1,
    "foreign_keys": 1,
    "synchronous": 2,  # FULL
}


class DatabaseUrlError(ValueError):
    """The configured database URL is not one Guwah can use."""


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets its pragmas, PostgreSQL must use psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUrlError(f"not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise DatabaseUrlError("SQLite needs a file: sqlite:////path/to/guwah.sqlite3")
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise DatabaseUrlError(f"unsupported database {backend!r}: use sqlite or postgresql+psycopg")


def sqlite_pragmas(engine: Engine) -> dict[str, object]:
    """The pragmas of ``SQLITE_EXPECTED`` as a live connection sees them ({} on PostgreSQL)."""
    if engine.dialect.name != "sqlite":
        return {}
    with engine.connect() as conn:
        return {name: conn.execute(text(f"PRAGMA {name}")).scalar() for name in SQLITE_EXPECTED}


def sqlite_pragma_check(engine: Engine) -> list[tuple[str, object, object]]:
    """(name, found, expected) for each pragma this module sets; [] on PostgreSQL."""
    found = sqlite_pragmas(engine)
    if not found:
        return []
    return [(name, found.get(name), value) for name, value in SQLITE_EXPECTED.items()]
