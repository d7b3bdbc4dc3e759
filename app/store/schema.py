"""The database schema's lifecycle: create it, upgrade it, say which revision it is at.

The only module that imports Alembic. Why not methods of ``Store``: the serving process
(app/server_cli/serving.py) uses a Store for every request but never migrates, and Alembic
with the Mako templates it pulls in is about 10 MiB of its resident set. ``guwah serve``
checks the revision before it starts serving, with this module, in the process that then
replaces itself with the lean one.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from .store import Store

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def init_store(store: Store) -> None:
    """Create the blob dirs and the schema (idempotent), then protect the SQLite files."""
    store.blobs.ensure_dirs()
    migrate(store)
    store.protect_sqlite_files()


def migrate(store: Store) -> None:
    """Alembic ``upgrade head`` with the scripts in migrations/ (see migrations/README)."""
    with store.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")


def current_revision(store: Store) -> str | None:
    """The revision the database is at; None for a database without Guwah's schema."""
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision in migrations/: what this code expects."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config for migrations/ (no alembic.ini needed); binds ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config
