"""Opening the metadata database: an async SQLAlchemy engine at the schema's
revision.

SQLite (the embedded default) runs in WAL mode, so readers never wait for a
writer, and every transaction starts with ``BEGIN IMMEDIATE``: a transaction
that reads and then writes (allocating a version number) takes the write
lock first, so two savers queue instead of failing with "database is
locked" halfway.  Migrations run under that same lock, so two processes
opening a new repository at once create the schema once.
"""
import asyncio
import pathlib

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .. import _constants as C
from ._schema import SCHEMA_REVISION

DATABASE_FILE = "repository.db"


def _sqlite_engine(path: pathlib.Path) -> AsyncEngine:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        connect_args={"timeout": C.DATABASE_BUSY_SECONDS},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection, _record):
        # pysqlite's own transaction handling would defer BEGIN past our
        # SELECTs; we issue BEGIN ourselves (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # a saved version survives power loss
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


async def _revision(connection):
    def read(sync_connection):
        from sqlalchemy import inspect

        if not inspect(sync_connection).has_table("alembic_version"):
            return None  # a new database (no failed statement: PostgreSQL would abort)
        row = sync_connection.execute(text("SELECT version_num FROM alembic_version")).first()
        return row[0] if row else None

    return await connection.run_sync(read)


def _upgrade(sync_connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(pathlib.Path(__file__).with_name("_migrations"))
    )
    config.attributes["connection"] = sync_connection
    command.upgrade(config, "head")


async def open_database(url: str) -> AsyncEngine:
    """The engine for ``url`` (SQLite or PostgreSQL), its schema created or
    migrated if needed.  Alembic is imported only when the schema is behind."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(pathlib.Path(parsed.database))
    else:
        # pre_ping: a connection the server dropped (a restart) is replaced
        # instead of failing the next operation.
        engine = create_async_engine(url, pool_pre_ping=True)
    try:
        async with engine.begin() as connection:
            revision = await _revision(connection)
            if revision != SCHEMA_REVISION:
                await _lock_for_migration(connection)
                if await _revision(connection) != SCHEMA_REVISION:
                    await connection.run_sync(_upgrade)
    except BaseException:
        await asyncio.shield(engine.dispose())
        raise
    return engine


async def _lock_for_migration(connection) -> None:
    """Hosts opening a new database at once migrate it one at a time
    (SQLite: BEGIN IMMEDIATE already serializes them)."""
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_advisory_xact_lock(7304916)"))


def insert_ignoring_conflicts(connection, table):
    """``INSERT ... ON CONFLICT DO NOTHING`` in the connection's dialect:
    concurrent savers of one image (or blob) both succeed, once."""
    return _dialect_insert(connection, table).on_conflict_do_nothing()


def upsert(connection, table, keys, **values):
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET values``."""
    statement = _dialect_insert(connection, table)
    return statement.on_conflict_do_update(index_elements=keys, set_=values)


def _dialect_insert(connection, table):
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)
