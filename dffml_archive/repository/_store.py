"""The repository: model repositories by name, their versions and tags.

:class:`Repository` is one store (a root directory: the SQLite database and
the blob store); :class:`ModelRepository` is one model name in it.  Every
change is one database transaction, after the blobs it references are
stored: a save that dies before its commit leaves blobs that gc reclaims and
no version.  Version numbers come from a per-repository counter incremented
inside the save's transaction, so concurrent saves get distinct,
consecutive numbers and a number is never reused (not even after a delete).

A root on a read-only file system (or one the user may not write) is
opened for reading only: nothing under it is created or written, and every
change is refused up front with one error (:meth:`Repository.require_writable`).
"""
import contextlib
import fcntl
import getpass
import json
import os
import pathlib
import socket
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from sqlalchemy import and_, delete, func, insert, select, update

from .. import _constants as C
from .._api import in_thread
from ..errors import ReferenceNotFoundError, RepositoryError, os_errors_as
from . import _schema as S
from ._blobs import BlobStore, LocalBlobStore
from ._database import (
    DATABASE_FILE, insert_ignoring_conflicts, is_read_only, open_database, sqlite_is_read_only,
)
from ._s3 import is_s3_location
from ._names import Reference, checked_name, checked_tag, checked_version, parse_reference

if TYPE_CHECKING:  # pragma: no cover
    from ._images import ModelImage, NewImage

GC_LOCK = "gc.lock"


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): the uid says who
        return str(os.getuid())


def current_host() -> str:
    return socket.gethostname()


def _sqlite_url(path: pathlib.Path):
    """The URL of the SQLite file ``path`` (an object: as text, a ``?`` or
    ``#`` in the path would be read as the start of a query)."""
    from sqlalchemy.engine import URL

    return URL.create("sqlite+aiosqlite", database=str(path))


class Repository:
    """``async with Repository(root) as repo:`` one repository.

    Where its parts live, first match wins: the ``database`` (a SQLAlchemy
    URL) and ``blobs`` (a directory or ``s3://BUCKET/PREFIX``) arguments;
    ``DFFML_ARCHIVE_REPOSITORY_DB`` / ``DFFML_ARCHIVE_REPOSITORY_BLOBS``;
    ``repository.json`` in the root; the embedded default (SQLite and a
    blob directory in the root).  The root (``root``, else
    ``DFFML_ARCHIVE_REPOSITORY``, see :mod:`_constants`) always holds the
    temporary files of saves in flight."""

    def __init__(self, root=None, *, database: Optional[str] = None, blobs=None):
        self.root = pathlib.Path(root) if root is not None else C.repository_root()
        self.root = pathlib.Path(os.path.abspath(self.root))
        self._database, self._blobs = database, blobs
        self.database_url = None  # a SQLAlchemy URL: text, or a URL object
        self.blobs: Optional[BlobStore] = blobs if isinstance(blobs, BlobStore) else None
        self.engine = None
        self._blobs_open = False
        #: The read-only part (the root, the database's or the blobs'
        #: directory), or None when everything is writable.  Set by open().
        self.read_only: Optional[pathlib.Path] = None

    def _configured(self) -> dict:
        try:
            with open(self.root / C.REPOSITORY_CONFIG_FILE, "rb") as handle:
                config = json.loads(handle.read())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise RepositoryError(
                self.root / C.REPOSITORY_CONFIG_FILE, f"cannot be read: {error}",
                hint='it holds {"database": URL, "blobs": DIRECTORY or s3://BUCKET/PREFIX}',
            ) from None
        if not isinstance(config, dict):
            raise RepositoryError(self.root / C.REPOSITORY_CONFIG_FILE, "is not a JSON object")
        return config

    def _resolve(self) -> None:
        config = self._configured()
        self.database_url = (
            self._database or C.repository_database_url() or config.get("database")
            or _sqlite_url(self.root / DATABASE_FILE)
        )
        if self.blobs is None:
            location = self._blobs or C.repository_blobs_location() or config.get("blobs")
            if location and is_s3_location(location):
                from ._s3 import S3BlobStore

                self.blobs = S3BlobStore(str(location))
            else:
                self.blobs = LocalBlobStore(pathlib.Path(location) if location else self.root)

    async def __aenter__(self) -> "Repository":
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def opened(self, *, blobs: bool = True):
        """``async with repo.opened(blobs=False):`` the repository for work
        on metadata only (no connection to the blob store)."""
        await self.open(blobs=blobs)
        try:
            yield self
        finally:
            await self.close()

    async def open(self, *, blobs: bool = True) -> None:
        with os_errors_as(
            RepositoryError, self.root, "cannot create the repository directory",
            hint="set DFFML_ARCHIVE_REPOSITORY (or --repository) to a writable directory",
        ):
            if not await in_thread(self.root.is_dir):
                await in_thread(lambda: self.root.mkdir(parents=True, exist_ok=True))
        self._resolve()
        database = self._sqlite_path()
        self.read_only = await in_thread(self._read_only_part, database)
        try:
            self.engine = await open_database(
                self.database_url, subject=str(self.root),
                read_only=database is not None and await in_thread(sqlite_is_read_only, database),
            )
        except RepositoryError:
            raise
        except Exception as error:
            raise database_error(self._database_subject(), error) from error
        if not blobs:
            return
        try:
            await self.blobs.open()
            self._blobs_open = True
        except BaseException:
            await self.close()
            raise

    def _sqlite_path(self) -> Optional[pathlib.Path]:
        from sqlalchemy.engine import make_url

        try:
            url = make_url(self.database_url)
        except Exception:
            return None
        if url.get_backend_name() != "sqlite" or not url.database:
            return None
        return pathlib.Path(os.path.abspath(url.database))

    def _read_only_part(self, database: Optional[pathlib.Path]) -> Optional[pathlib.Path]:
        """The first of the directories a change writes in that is read-only."""
        candidates = [self.root]
        if database is not None:
            candidates.append(database.parent)
        if isinstance(self.blobs, LocalBlobStore):
            candidates.append(self.blobs.root)
        for directory in candidates:
            if directory.is_dir() and is_read_only(directory):
                return directory
        if database is not None and sqlite_is_read_only(database):
            return database
        return None

    def require_writable(self) -> None:
        """Refuse a change (save, tag, delete, gc) on a read-only repository,
        before any work."""
        if self.read_only is not None:
            raise RepositoryError(
                str(self.read_only), "is read-only: this repository can be read, not changed",
                hint="do this where the repository is mounted writable, or set "
                "DFFML_ARCHIVE_REPOSITORY (or --repository) to a writable repository",
            )

    def _database_subject(self) -> str:
        """The database as errors name it (never its password)."""
        from sqlalchemy.engine import make_url

        try:
            url = make_url(self.database_url)
        except Exception:
            return str(self.root)
        if url.get_backend_name() == "sqlite":
            return str(self.root)
        return url.render_as_string(hide_password=True)

    async def close(self) -> None:
        if self.blobs is not None and self._blobs_open:
            await self.blobs.close()
            self._blobs_open = False
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    # -- transactions --------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self):
        """One database transaction (a write lock on SQLite)."""
        try:
            async with self.engine.begin() as connection:
                yield connection
        except RepositoryError:
            raise
        except Exception as error:
            if _is_database_error(error):
                raise database_error(self._database_subject(), error) from error
            raise

    @contextlib.asynccontextmanager
    async def saving(self):
        """Held by every save while it stores blobs and commits: gc waits
        for saves in flight (and they for it) on this host."""
        self.require_writable()
        fd = await in_thread(self._lock_gc, fcntl.LOCK_SH)
        try:
            yield
        finally:
            os.close(fd)

    def _lock_gc(self, how) -> int:
        with os_errors_as(RepositoryError, self.root, "cannot lock the repository"):
            fd = os.open(self.root / GC_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, how)
        return fd

    # -- repositories ----------------------------------------------------------

    async def create(self, name: str, *, exist_ok: bool = False) -> "ModelRepository":
        checked_name(name)
        self.require_writable()
        namespace = name.split("/", 1)[0] if "/" in name else ""
        async with self.transaction() as db:
            # Two hosts creating one name at once: one row, no error for either.
            created = await db.execute(
                insert_ignoring_conflicts(db, S.repositories).values(
                    name=name, namespace=namespace, created=time.time(), next_version=1,
                )
            )
            if not created.rowcount and not exist_ok:
                raise RepositoryError(
                    name, "already exists", hint="push to it, or choose another name"
                )
            row = (await db.execute(
                select(S.repositories).where(S.repositories.c.name == name)
            )).first()
        return ModelRepository(self, row)

    async def get(self, name: str) -> "ModelRepository":
        checked_name(name)
        async with self.transaction() as db:
            row = (await db.execute(
                select(S.repositories).where(S.repositories.c.name == name)
            )).first()
        if row is None:
            raise ReferenceNotFoundError(
                name, "no such model repository",
                hint="see the names with `models list`, or push a model to create it",
            )
        return ModelRepository(self, row)

    async def list(self, namespace: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every repository: name, namespace, created, versions (live count),
        latest (newest live version or None)."""
        query = (
            select(
                S.repositories.c.name, S.repositories.c.namespace, S.repositories.c.created,
                func.count(S.versions.c.id).label("versions"),
                func.max(S.versions.c.version).label("latest"),
            )
            .select_from(S.repositories.outerjoin(
                S.versions, S.versions.c.repository_id == S.repositories.c.id
            ))
            .group_by(S.repositories.c.id)
            .order_by(S.repositories.c.name)
        )
        if namespace is not None:
            query = query.where(S.repositories.c.namespace == namespace)
        async with self.transaction() as db:
            return [dict(row._mapping) for row in await db.execute(query)]

    async def delete(self, name: str) -> int:
        """Delete repository ``name`` with every version; returns how many
        versions went.  Their blobs are freed by :meth:`gc`."""
        self.require_writable()
        repository = await self.get(name)
        async with self.transaction() as db:
            count = (await db.execute(
                select(func.count()).where(S.versions.c.repository_id == repository.id)
            )).scalar()
            await db.execute(delete(S.repositories).where(S.repositories.c.id == repository.id))
        return count

    async def get_model_image(self, reference) -> "ModelImage":
        """The image ``reference`` names (``NAME``: the newest version)."""
        if not isinstance(reference, Reference):
            reference = parse_reference(reference)
        repository = await self.get(reference.name)
        return await repository.get_model_image(version=reference.version, tag=reference.tag)


class ModelRepository:
    """One model name: its versions and tags."""

    def __init__(self, store: Repository, row):
        self.store = store
        self.id = row.id
        self.name = row.name
        self.namespace = row.namespace
        self.created = row.created

    def __repr__(self):
        return f"<ModelRepository {self.name!r} at {str(self.store.root)!r}>"

    def new_image(self, source, *, model: Optional[dict] = None) -> "NewImage":
        """A new image from a model, an archive file or a directory: set
        metadata (``image["Accuracy"] = 0.89``), attach files, then
        ``await image.save(comment=...)``.  ``model``: the manifest's model
        section for a directory (an archive carries its own)."""
        from ._images import NewImage

        return NewImage(self, source, model=model)

    async def _version_row(self, db, version: Optional[int], tag: Optional[str]):
        versions = S.versions
        query = select(versions).where(versions.c.repository_id == self.id)
        if version is not None:
            query = query.where(versions.c.version == checked_version(version))
        elif tag is not None and tag != C.LATEST_TAG:
            checked_tag(tag)
            query = query.join(S.tags, S.tags.c.version_id == versions.c.id).where(
                S.tags.c.tag == tag
            )
        else:
            query = query.order_by(versions.c.version.desc()).limit(1)
        return (await db.execute(query)).first()

    async def get_model_image(self, version: Optional[int] = None, tag: Optional[str] = None):
        """Version ``version``, or the one tagged ``tag``; neither: the newest."""
        from ._images import ModelImage

        if version is not None and tag is not None:
            raise RepositoryError(self.name, "give a version or a tag, not both")
        async with self.store.transaction() as db:
            row = await self._version_row(db, version, tag)
            if row is None:
                raise self._not_found(version, tag)
            image = (await db.execute(
                select(S.images).where(S.images.c.digest == row.image)
            )).first()
            tags = await self._tags_of(db, [row.id])
        return ModelImage(self, row, image, tags.get(row.id, []))

    def _not_found(self, version, tag) -> ReferenceNotFoundError:
        if version is not None:
            what, subject = f"has no version {version}", f"{self.name}:{version}"
        elif tag is not None:
            what, subject = f"has no tag {tag!r}", f"{self.name}:{tag}"
        else:
            what, subject = "has no versions yet", self.name
        return ReferenceNotFoundError(
            subject, f"repository {self.name!r} {what}",
            hint=f"see its versions and tags with `models log {self.name}`",
        )

    async def _tags_of(self, db, version_ids) -> Dict[int, List[str]]:
        """User tags per version id, plus ``latest`` on the newest."""
        found: Dict[int, List[str]] = {}
        rows = await db.execute(
            select(S.tags.c.version_id, S.tags.c.tag)
            .where(S.tags.c.repository_id == self.id)
            .order_by(S.tags.c.tag)
        )
        for version_id, tag in rows:
            found.setdefault(version_id, []).append(tag)
        newest = (await db.execute(
            select(S.versions.c.id).where(S.versions.c.repository_id == self.id)
            .order_by(S.versions.c.version.desc()).limit(1)
        )).scalar()
        if newest is not None:
            found.setdefault(newest, []).insert(0, C.LATEST_TAG)
        wanted = set(version_ids) if version_ids is not None else None
        return {k: v for k, v in found.items() if wanted is None or k in wanted}

    async def get_tags(self) -> Dict[str, int]:
        """Tag -> version, ``latest`` included (when there is a version)."""
        async with self.store.transaction() as db:
            rows = await db.execute(
                select(S.tags.c.tag, S.versions.c.version)
                .join(S.versions, S.versions.c.id == S.tags.c.version_id)
                .where(S.tags.c.repository_id == self.id)
                .order_by(S.tags.c.tag)
            )
            tags = {tag: version for tag, version in rows}
            newest = (await db.execute(
                select(func.max(S.versions.c.version)).where(S.versions.c.repository_id == self.id)
            )).scalar()
        if newest is not None:
            tags = {C.LATEST_TAG: newest, **tags}
        return tags

    async def add_tag(self, tag: str, version: int) -> Optional[int]:
        """Point ``tag`` at ``version`` (moving it if it exists); returns the
        version it pointed at before, or None.  The move is logged."""
        checked_tag(tag, settable=True)
        checked_version(version)
        self.store.require_writable()
        async with self.store.transaction() as db:
            row = await self._locked_version(db, version)
            previous = await self._untag(db, tag)
            await db.execute(insert(S.tags).values(
                repository_id=self.id, tag=tag, version_id=row.id
            ))
            await self._log(db, "tag", version=version, tag=tag, previous_version=previous)
        return previous

    async def _locked_version(self, db, version: int):
        """The row of ``version``, this repository's changes locked (see
        :meth:`_lock`); ReferenceNotFoundError if there is no such version."""
        await self._lock(db)
        row = await self._version_row(db, version, None)
        if row is None:
            raise self._not_found(version, None)
        return row

    async def _untag(self, db, tag: str) -> Optional[int]:
        """Remove ``tag`` (inside the caller's transaction); the version it
        pointed at, or None."""
        previous = (await db.execute(
            select(S.versions.c.version)
            .join(S.tags, S.tags.c.version_id == S.versions.c.id)
            .where(and_(S.tags.c.repository_id == self.id, S.tags.c.tag == tag))
        )).scalar()
        await db.execute(delete(S.tags).where(
            and_(S.tags.c.repository_id == self.id, S.tags.c.tag == tag)
        ))
        return previous

    async def remove_tag(self, tag: str) -> int:
        """Remove ``tag``; returns the version it pointed at."""
        checked_tag(tag, settable=True)
        self.store.require_writable()
        async with self.store.transaction() as db:
            await self._lock(db)
            previous = await self._untag(db, tag)
            if previous is None:
                raise self._not_found(None, tag)  # rolls back: nothing was removed
            await self._log(db, "untag", tag=tag, previous_version=previous)
        return previous

    async def delete_version(self, version: int) -> List[str]:
        """Delete ``version`` and its tags (returned); its blobs are freed by
        gc once no other version uses them.  Its number is never reused."""
        checked_version(version)
        self.store.require_writable()
        async with self.store.transaction() as db:
            row = await self._locked_version(db, version)
            tags = (await self._tags_of(db, [row.id])).get(row.id, [])
            await db.execute(delete(S.versions).where(S.versions.c.id == row.id))
            await self._log(db, "delete", version=version)
        return [tag for tag in tags if tag != C.LATEST_TAG]

    async def log(self) -> List[Dict[str, Any]]:
        """Every live version, newest first: version, tags, comment, created,
        user, host, size, new_bytes, image, entrypoint."""
        async with self.store.transaction() as db:
            rows = (await db.execute(
                select(S.versions).where(S.versions.c.repository_id == self.id)
                .order_by(S.versions.c.version.desc())
            )).all()
            tags = await self._tags_of(db, None)
        return [version_summary(row, tags.get(row.id, [])) for row in rows]

    async def events(self) -> List[Dict[str, Any]]:
        """The history of saves, tag moves and deletions, oldest first."""
        async with self.store.transaction() as db:
            rows = await db.execute(
                select(S.events).where(S.events.c.repository_id == self.id)
                .order_by(S.events.c.id)
            )
            return [
                {key: value for key, value in row._mapping.items() if key != "repository_id"}
                for row in rows
            ]

    async def _lock(self, db) -> None:
        """Serialize this repository's changes (tags, deletions) across
        hosts: PostgreSQL locks the row; SQLite's BEGIN IMMEDIATE already
        serializes every write."""
        found = (await db.execute(
            select(S.repositories.c.id).where(S.repositories.c.id == self.id).with_for_update()
        )).first()
        if found is None:
            raise ReferenceNotFoundError(self.name, "the model repository was deleted meanwhile")

    async def _log(self, db, action: str, **fields) -> None:
        await db.execute(insert(S.events).values(
            repository_id=self.id, time=time.time(), user=current_user(), action=action,
            **fields,
        ))

    async def allocate_version(self, db) -> int:
        """The next version number, inside the save's transaction."""
        new = (await db.execute(
            update(S.repositories)
            .where(S.repositories.c.id == self.id)
            .values(next_version=S.repositories.c.next_version + 1)
            .returning(S.repositories.c.next_version)
        )).scalar()
        if new is None:
            raise ReferenceNotFoundError(
                self.name, "the model repository was deleted while saving to it"
            )
        return new - 1


def version_summary(row, tags: List[str]) -> Dict[str, Any]:
    return {
        "version": row.version,
        "tags": list(tags),
        "comment": row.comment,
        "created": iso_time(row.created),
        "user": row.user,
        "host": row.host,
        "size": row.size,
        "new_bytes": row.new_bytes,
        "image": row.image,
        "entrypoint": row.entrypoint,
    }


def iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _is_database_error(error) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(error, (DBAPIError, OperationalError)) or type(error).__module__.startswith(
        ("sqlite3", "aiosqlite")
    )


def database_error(root, error) -> RepositoryError:
    """A database failure said as what to do about it."""
    text = str(getattr(error, "orig", None) or error)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered:
        reason, hint = "is read-only", (
            "make it writable, or set DFFML_ARCHIVE_REPOSITORY (or --repository) to a "
            "writable directory"
        )
    elif "disk is full" in lowered or "disk full" in lowered:
        reason, hint = "the disk is full", "free some space, then try again"
    elif "locked" in lowered:
        reason, hint = "the database stayed locked by another process", "try again"
    elif "unable to open" in lowered:
        reason, hint = "cannot open its database", "check the directory's permissions"
    elif "can't locate revision" in lowered or "no such revision" in lowered:
        reason, hint = (
            "was written by a newer dffml-archive (unknown schema)",
            "upgrade dffml-archive",
        )
    else:
        reason, hint = f"database error: {text.splitlines()[0] if text else type(error).__name__}", None
    return RepositoryError(root, reason, hint=hint)


async def find(store: Repository, expression: str) -> List[Dict[str, Any]]:
    """Every version, across repositories, that the selector ``expression``
    matches (see :mod:`_selectors`): its summary and repository ``name``."""
    from ._selectors import compile_selector, fields_of, sql_prefilter

    matches = compile_selector(expression)
    query = (
        select(S.versions, S.repositories.c.name, S.repositories.c.namespace,
               S.images.c.model)
        .join(S.repositories, S.repositories.c.id == S.versions.c.repository_id)
        .join(S.images, S.images.c.digest == S.versions.c.image)
        .order_by(S.repositories.c.name, S.versions.c.version)
    )
    async with store.transaction() as db:
        for condition in sql_prefilter(expression, S.versions, db.dialect.name):
            query = query.where(condition)
        rows = (await db.execute(query)).all()
        tags = await _all_tags(db)
    found = []
    for row in rows:
        summary = {"name": row.name, "namespace": row.namespace,
                   **version_summary(row, tags.get(row.id, []))}
        fields = fields_of({**summary, "created": row.created}, row.model, row.metadata)
        if matches(fields):
            found.append(summary)
    return found


async def _all_tags(db) -> Dict[int, List[str]]:
    """User tags per version id of every repository, plus ``latest``."""
    found: Dict[int, List[str]] = {}
    newest = (
        select(func.max(S.versions.c.version).label("version"), S.versions.c.repository_id)
        .group_by(S.versions.c.repository_id).subquery()
    )
    rows = await db.execute(
        select(S.versions.c.id).join(newest, and_(
            S.versions.c.repository_id == newest.c.repository_id,
            S.versions.c.version == newest.c.version,
        ))
    )
    for (version_id,) in rows:
        found[version_id] = [C.LATEST_TAG]
    rows = await db.execute(select(S.tags.c.version_id, S.tags.c.tag).order_by(S.tags.c.tag))
    for version_id, tag in rows:
        found.setdefault(version_id, []).append(tag)
    return found
