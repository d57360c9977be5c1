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
import os
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
    try:
        row = (await connection.execute(text("SELECT version_num FROM alembic_version"))).first()
    except Exception:  # no table yet: a new database
        return None
    return row[0] if row else None


def _upgrade(sync_connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(pathlib.Path(__file__).with_name("_migrations"))
    )
    config.attributes["connection"] = sync_connection
    command.upgrade(config, "head")


async def open_database(root: pathlib.Path) -> AsyncEngine:
    """The engine of the repository at ``root`` (created and migrated if
    needed).  Alembic is imported only when the schema is behind."""
    engine = _sqlite_engine(root / DATABASE_FILE)
    try:
        async with engine.begin() as connection:
            revision = await _revision(connection)
            if revision != SCHEMA_REVISION:
                await connection.run_sync(_upgrade)
    except BaseException:
        await asyncio.shield(engine.dispose())
        raise
    return engine


def database_files(root: pathlib.Path):
    """The database and its WAL companions (for size and permission checks)."""
    base = root / DATABASE_FILE
    return [base] + [base.with_name(base.name + suffix) for suffix in ("-wal", "-shm")
                     if os.path.exists(f"{base}{suffix}")]
