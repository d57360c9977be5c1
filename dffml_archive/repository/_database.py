"""Opening the metadata database: an async SQLAlchemy engine at the schema's
revision.

SQLite (the embedded default) runs in WAL mode, so readers never wait for a
writer, and every transaction starts with ``BEGIN IMMEDIATE``: a transaction
that reads and then writes (allocating a version number) takes the write
lock first, so two savers queue instead of failing with "database is
locked" halfway.  Migrations run under that same lock, so two processes
opening a new repository at once create the schema once.

A database in a read-only directory (an image layer, a ``ro`` mount) is
opened read-only: a ``mode=ro`` URI, ``immutable=1`` when no WAL content
is pending (SQLite could not create its ``-shm`` there), deferred ``BEGIN``,
no pragma that writes and no migration.
"""
import asyncio
import os
import pathlib
import urllib.parse

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .. import _constants as C
from ._schema import SCHEMA_REVISION

DATABASE_FILE = "repository.db"


def is_read_only(directory) -> bool:
    """True when nothing can be created in ``directory``: a read-only file
    system (also for root), or no write permission."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(directory, os.W_OK | os.X_OK)


def sqlite_is_read_only(path: pathlib.Path) -> bool:
    """Whether the SQLite database ``path`` must be opened read-only."""
    return is_read_only(path.parent) or (path.exists() and not os.access(path, os.W_OK))


def _read_only_uri(path: pathlib.Path, subject) -> str:
    """The URI opening ``path`` without writing anything beside it."""
    wal = path.with_name(path.name + "-wal")
    try:
        pending = wal.stat().st_size > 0
    except FileNotFoundError:
        pending = False
    if not path.exists():
        from ..errors import RepositoryError

        raise RepositoryError(
            subject, f"is read-only and holds no {DATABASE_FILE}",
            hint="point --repository (or DFFML_ARCHIVE_REPOSITORY) at a model repository",
        )
    # immutable=1 would ignore committed pages still in the WAL: only when
    # there are none.  Otherwise SQLite reads the WAL through the existing
    # -shm, which it cannot create here.
    if pending and not path.with_name(path.name + "-shm").exists():
        raise unclean_error(subject)
    query = "mode=ro" if pending else "mode=ro&immutable=1"
    return f"file:{urllib.parse.quote(str(path))}?{query}"


def unclean_error(subject):
    from ..errors import RepositoryError

    return RepositoryError(
        subject, f"is read-only and its {DATABASE_FILE} was not closed cleanly "
        f"(committed changes are still in {DATABASE_FILE}-wal)",
        hint="open it once where it is writable (any models command, e.g. `models list`), "
        "then make it read-only again",
    )


def _sqlite_engine(path: pathlib.Path, read_only: bool = False, subject=None) -> AsyncEngine:
    if read_only:
        uri = _read_only_uri(path, subject or path.parent)
        engine = create_async_engine(
            "sqlite+aiosqlite://",
            async_creator=lambda: _connect_uri(uri),
        )
    else:
        from sqlalchemy.engine import URL

        engine = create_async_engine(
            URL.create("sqlite+aiosqlite", database=str(path)),
            connect_args={"timeout": C.DATABASE_BUSY_SECONDS},
        )

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection, _record):
        # pysqlite's own transaction handling would defer BEGIN past our
        # SELECTs; we issue BEGIN ourselves (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # a saved version survives power loss
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


async def _connect_uri(uri: str):
    import aiosqlite

    return await aiosqlite.connect(uri, uri=True, timeout=C.DATABASE_BUSY_SECONDS)


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


async def open_database(url, *, read_only: bool = False, subject=None) -> AsyncEngine:
    """The engine for ``url`` (SQLite or PostgreSQL), its schema created or
    migrated if needed.  Alembic is imported only when the schema is behind.
    ``read_only`` (SQLite): write nothing, migrate nothing; ``subject``
    names the repository in errors."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(pathlib.Path(parsed.database), read_only, subject)
    else:
        # pre_ping: a connection the server dropped (a restart) is replaced
        # instead of failing the next operation.
        engine = create_async_engine(url, pool_pre_ping=True)
        read_only = False
    try:
        async with engine.begin() as connection:
            revision = await _revision(connection)
            if revision != SCHEMA_REVISION and read_only:
                raise _not_upgradable(subject or parsed.database, revision)
            if revision != SCHEMA_REVISION:
                await _lock_for_migration(connection)
                if await _revision(connection) != SCHEMA_REVISION:
                    await connection.run_sync(_upgrade)
    except BaseException:
        await asyncio.shield(engine.dispose())
        raise
    return engine


def _not_upgradable(subject, revision):
    """A read-only database whose schema is not this version's."""
    from ..errors import RepositoryError

    if revision is not None and not _known_revision(revision):
        return RepositoryError(
            subject, f"was written by a newer dffml-archive (schema {revision!r})",
            hint="upgrade dffml-archive",
        )
    return RepositoryError(
        subject, f"is read-only and its schema ({revision or 'none'}) is older than this "
        f"dffml-archive's ({SCHEMA_REVISION})",
        hint="open it once where it is writable to upgrade it",
    )


def _known_revision(revision: str) -> bool:
    versions = pathlib.Path(__file__).with_name("_migrations") / "versions"
    return any(path.stem == revision for path in versions.glob("*.py"))


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
