"""Alembic environment for Guwah (SQLite and PostgreSQL through the same scripts).

Run by ``guwah init`` / ``guwah migrate`` (app.store.schema.migrate passes its connection in
``config.attributes["connection"]``), or by hand:
``alembic -c migrations/alembic.ini upgrade head`` with GUWAH_DATA_DIR / GUWAH_DATABASE_URL set.
"""

from alembic import context
from sqlalchemy.engine import Connection

from app.store.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from app.settings import load_settings

    return load_settings().database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER via table copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    from app.store.db import make_engine

    engine = make_engine(_database_url())
    try:
        with engine.begin() as conn:
            _configure(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
