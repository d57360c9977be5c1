"""Model images: what a version holds (members, model section, metadata,
attachments), how one is saved member by member and read back verified.

An image is its archive manifest (every member's path, mode, size, sha256
and the model's entry point and full config) plus one blob per distinct
member; its identity is the sha256 of the canonical manifest bytes.  Saving
stores only the blobs the repository lacks; reading hashes every blob again
on the way out, so damaged bytes are refused, naming image and member.
"""
import contextlib
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional

from sqlalchemy import insert, select

from .. import _constants as C
from .._api import in_thread, run_job
from .._atomic import hold_directory
from .._manifest import Manifest
from .._model_info import checked_model_info
from ..errors import (
    ArchiveSourceError, BadReferenceError, ReferenceNotFoundError, RepositoryError, shown,
)
from . import _schema as S
from ._blobs import BlobMismatch, corrupt_blob
from ._database import insert_ignoring_conflicts, upsert
from ._store import ModelRepository, current_host, current_user, version_summary

#: Metadata keys the repository fills in itself (a user's key may not be one).
AUTOMATIC_METADATA = (
    "created", "user", "host", "entrypoint", "upstream", "config", "versions", "size",
)
_ATTACHMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}\Z")
STAGE_PREFIX = "stage-"


def checked_metadata(key, value) -> None:
    if not isinstance(key, str) or not key or len(key) > 200 or shown(key) != key:
        raise BadReferenceError(
            repr(key), "is not a metadata key",
            hint="use a non-empty string of at most 200 printable characters",
        )
    if key in AUTOMATIC_METADATA:
        raise BadReferenceError(
            key, "is a metadata key the repository sets itself",
            hint="choose another key (automatic: " + ", ".join(AUTOMATIC_METADATA) + ")",
        )
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise BadReferenceError(
            key, f"metadata value is not JSON ({error})",
            hint="use numbers, strings, booleans, None, lists and dicts",
        ) from None


def checked_attachment_name(name) -> str:
    if not isinstance(name, str) or not _ATTACHMENT_NAME.match(name):
        raise BadReferenceError(
            shown(name) if isinstance(name, str) else repr(name), "is not an attachment name",
            hint="a plain file name: letters, digits, '.', '_' and '-', no directories",
        )
    return name


@contextlib.contextmanager
def staging_directory(root: Optional[pathlib.Path]):
    """A private directory under ``<root>/tmp`` (the blob store's file
    system, so saving can link instead of copy), held by an flock while it
    lives so that gc never removes it, removed at the end.  ``root`` None
    (a read-only repository: nothing to save): in the system's temporary
    directory."""
    if root is None:
        temporary = None
    else:
        temporary = root / "tmp"
        temporary.mkdir(parents=True, exist_ok=True)
    path = pathlib.Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=temporary))
    fd = hold_directory(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


class NewImage:
    """An image being put together; :meth:`save` makes it a version."""

    def __init__(self, repository: ModelRepository, source, model: Optional[dict] = None):
        self.repository = repository
        self.source = source
        self.model = model
        self.metadata: Dict[str, Any] = {}
        self._attachments: Dict[str, Any] = {}

    def __setitem__(self, key, value):
        checked_metadata(key, value)
        self.metadata[key] = value

    def __getitem__(self, key):
        return self.metadata[key]

    def attach(self, name: str, fileobj) -> None:
        """Save ``fileobj`` (a binary file object, bytes, or a path) beside
        the version under ``name``."""
        checked_attachment_name(name)
        if name in self._attachments:
            raise BadReferenceError(name, "is attached twice", hint="use distinct names")
        self._attachments[name] = fileobj

    async def save(self, comment: str = "", *, progress=None) -> "ModelImage":
        """Store the image as the repository's next version; return it."""
        if not isinstance(comment, str):
            raise BadReferenceError(repr(comment), "a comment must be a string")
        store = self.repository.store
        store.require_writable()
        async with store.saving():
            with staging_directory(store.root) as stage:
                members, manifest, new_bytes = await _staged(
                    store, self.source, stage, self.repository.name, self.model, progress
                )
                attachments = [
                    await in_thread(_stage_attachment, name, fileobj, stage)
                    for name, fileobj in self._attachments.items()
                ]
                new_bytes += await _store_blobs(
                    store, members, attachments, self.repository.name
                )
                return await _commit(
                    self.repository, manifest, attachments, self.metadata, comment, new_bytes
                )


def _source_path(source) -> pathlib.Path:
    """The directory or archive behind ``source`` (a path or a DFFML model)."""
    from ..model import ArchiveModel

    if isinstance(source, ArchiveModel):
        source = source.config.location
    elif hasattr(source, "config") and hasattr(source.config, "location"):
        source = source.config.location
    elif hasattr(source, "config") and hasattr(source.config, "directory"):
        source = source.config.directory
    return pathlib.Path(os.fspath(source))


async def _staged(store, source, stage: pathlib.Path, subject, model, progress):
    """(members still to store, each with its file and whether it may be
    taken, the manifest, bytes already stored).  A directory's files are
    stored as they are read; an archive is extracted (verified) into
    ``stage`` first, and its files are then ours to take."""
    from ._sources import directory_members

    if model is not None:
        checked_model_info(subject, model)
    path = _source_path(source)
    if path.is_dir():
        members, new_bytes = await directory_members(store, path, str(path))
        return members, Manifest([m for m, _, _ in members], model=model), new_bytes
    if not path.exists():
        raise ArchiveSourceError(
            str(path), "does not exist", hint="give a model archive file or a model directory"
        )
    from .._api import extract

    tree = stage / "tree"
    manifest = await extract(path, tree, progress=progress)
    if not manifest.verified:
        # Made by another tool: the members just extracted are the truth.
        members, new_bytes = await directory_members(store, tree, str(path))
        return members, Manifest([m for m, _, _ in members], model=model), new_bytes
    manifest = Manifest(
        manifest.members, model=model if model is not None else manifest.model,
        created_by=manifest.created_by,
    )
    staged = [
        (member, str(tree / member.path) if member.type == "file" else None, True)
        for member in manifest.members
    ]
    return staged, manifest, 0


def _stage_attachment(name, fileobj, stage: pathlib.Path):
    """Copy an attachment into the stage, hashing it: (name, file, sha256, size)."""
    target = stage / f"attachment-{name}"
    digest = hashlib.sha256()
    size = 0
    if isinstance(fileobj, (bytes, bytearray, memoryview)):
        fileobj = io.BytesIO(bytes(fileobj))
    opened = None
    if isinstance(fileobj, (str, os.PathLike)):
        try:
            opened = fileobj = open(fileobj, "rb")
        except OSError as error:
            raise ArchiveSourceError(
                os.fspath(opened or fileobj), f"cannot read the attachment: {error.strerror}"
            ) from None
    try:
        with open(target, "xb") as out:
            while True:
                chunk = fileobj.read(C.CHUNK_SIZE)
                if isinstance(chunk, str):
                    chunk = chunk.encode("utf-8")
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    finally:
        if opened is not None:
            opened.close()
    return name, target, digest.hexdigest(), size


async def _store_blobs(store, members, attachments, subject) -> int:
    """Claim every blob the image needs, then upload what the store lacks;
    returns the bytes newly stored.  The claim comes first (committed): gc
    spares a claimed blob, so one found present stays present."""
    files = {}
    for member, path, take in members:
        if member.type == "file":
            files.setdefault(member.sha256, (path, take, member.path, member.size))
    for name, path, digest, size in attachments:
        files.setdefault(digest, (path, True, f"attachment {name}", size))
    await claim_blobs(store, {digest: item[3] for digest, item in files.items()})
    missing = await store.blobs.missing(files)
    new_bytes = 0
    for digest in sorted(missing):
        path, take, what, _ = files[digest]
        if path is None:
            raise RepositoryError(
                store.blobs.subject, f"blob of {what!r} vanished while saving",
                hint="save again",
            )
        try:
            new_bytes += await store.blobs.put_file(path, digest, take=take)
        except BlobMismatch:
            raise ArchiveSourceError(
                subject, f"{what!r} changed while it was being saved",
                hint="save again when nothing is writing to the model directory",
            ) from None
    return new_bytes


async def claim_blobs(store, sizes: Dict[str, int]) -> None:
    if not sizes:
        return
    now = time.time()
    async with store.transaction() as db:
        for digest, size in sorted(sizes.items()):
            await db.execute(upsert(db, S.blobs, ["digest"], claimed=now, size=size).values(
                digest=digest, size=size, claimed=now,
            ))


async def _commit(repository, manifest: Manifest, attachments, metadata, comment, new_bytes):
    manifest_bytes = manifest.to_bytes()
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    model = manifest.model or {}
    now = time.time()
    async with repository.store.transaction() as db:
        version = await repository.allocate_version(db)
        await db.execute(insert_ignoring_conflicts(db, S.images).values(
            digest=digest, manifest=manifest_bytes, size=manifest.total_size,
            created=now, model=manifest.model,
        ))
        blobs = sorted({m.sha256 for m in manifest.members if m.type == "file"})
        if blobs:
            await db.execute(insert_ignoring_conflicts(db, S.image_blobs), [
                {"image": digest, "blob": blob} for blob in blobs
            ])
        result = await db.execute(insert(S.versions).values(
            repository_id=repository.id, version=version, image=digest, comment=comment,
            created=now, user=current_user(), host=current_host(),
            entrypoint=model.get("entrypoint"), metadata=dict(metadata),
            size=manifest.total_size, new_bytes=new_bytes,
        ))
        version_id = result.inserted_primary_key[0]
        if attachments:
            await db.execute(insert(S.attachments), [
                {"version_id": version_id, "name": name, "blob": blob, "size": size}
                for name, _, blob, size in attachments
            ])
        await repository._log(db, "save", version=version)
    return await repository.get_model_image(version=version)


class ModelImage:
    """A saved version: immutable."""

    def __init__(self, repository: ModelRepository, row, image_row, tags: List[str]):
        self.repository = repository
        self.version: int = row.version
        self.id = row.id
        self.comment: str = row.comment
        self.created: float = row.created
        self.user: str = row.user
        self.host: str = row.host
        self.tags: List[str] = list(tags)
        self.digest: str = row.image
        self.size: int = row.size
        self.new_bytes: int = row.new_bytes
        self._row = row
        self._user_metadata: Dict[str, Any] = dict(row.metadata or {})
        self.manifest = Manifest.from_bytes(self.reference, image_row.manifest)
        self.manifest_bytes: bytes = image_row.manifest

    @property
    def name(self) -> str:
        return self.repository.name

    @property
    def reference(self) -> str:
        return f"{self.repository.name}:{self.version}"

    def __repr__(self):
        return f"<ModelImage {self.reference} {self.digest[:12]}>"

    def __getitem__(self, key):
        return self.get_metadata()[key]

    def get_metadata(self) -> Dict[str, Any]:
        """The automatic metadata (created, user, host, entrypoint, upstream,
        config, versions, size) and the user's."""
        model = self.manifest.model or {}
        automatic = {
            "created": self.created,
            "user": self.user,
            "host": self.host,
            "entrypoint": model.get("entrypoint"),
            "upstream": model.get("upstream"),
            "config": model.get("config"),
            "versions": model.get("versions") or self.manifest.created_by,
            "size": self.size,
        }
        return {**automatic, **self._user_metadata}

    def summary(self) -> Dict[str, Any]:
        return version_summary(self._row, self.tags)

    async def get_attachments(self) -> Dict[str, int]:
        """Attachment name -> size."""
        async with self.repository.store.transaction() as db:
            rows = await db.execute(
                select(S.attachments.c.name, S.attachments.c.size)
                .where(S.attachments.c.version_id == self.id)
                .order_by(S.attachments.c.name)
            )
            return {name: size for name, size in rows}

    async def read_attachment(self, name: str) -> bytes:
        """The bytes of attachment ``name`` (verified)."""
        checked_attachment_name(name)
        async with self.repository.store.transaction() as db:
            blob = (await db.execute(
                select(S.attachments.c.blob).where(
                    (S.attachments.c.version_id == self.id) & (S.attachments.c.name == name)
                )
            )).scalar()
        if blob is None:
            raise ReferenceNotFoundError(
                self.reference, f"has no attachment {name!r}",
                hint=f"see them with `models show {self.reference}`",
            )
        with tempfile.TemporaryDirectory() as scratch:
            target = pathlib.Path(scratch) / "attachment"
            try:
                await self.repository.store.blobs.copy_to(blob, target, 0o600)
            except BlobMismatch as mismatch:
                raise corrupt_blob(self.reference, f"attachment {name}", mismatch) from None
            return target.read_bytes()

    async def materialize(self, directory) -> None:
        """Write the image's members into ``directory`` (created; it must be
        empty or absent), each file verified against its sha256 on the way."""
        directory = pathlib.Path(directory)
        await in_thread(lambda: directory.mkdir(parents=True, exist_ok=True))
        blobs = self.repository.store.blobs
        for member in self.manifest.members:
            target = directory / member.path
            if member.type == "directory":
                await in_thread(_make_directory, target)
                continue
            try:
                await blobs.copy_to(member.sha256, target, member.mode | C.OWNER_FILE_BITS)
            except BlobMismatch as mismatch:
                raise corrupt_blob(self.reference, member.path, mismatch) from None
        for member in reversed(self.manifest.members):
            if member.type == "directory":
                await in_thread(os.chmod, directory / member.path, member.mode | C.OWNER_DIR_BITS)

    async def download(self, archive, *, level: Optional[int] = None, progress=None):
        """Write the image as one archive file (format from its name,
        replaced atomically), verified member by member: the same image
        always gives the same bytes for a given format and level."""
        from .._pack import pack_stored

        blobs = self.repository.store.blobs
        with contextlib.ExitStack() as stack:
            stored = []
            scratch = None
            for member in self.manifest.members:
                path = None
                if member.type == "file":
                    path = blobs.local_path(member.sha256)
                    if path is None:  # a remote store: fetch (verified) first
                        scratch = scratch or pathlib.Path(stack.enter_context(
                            tempfile.TemporaryDirectory()
                        ))
                        path = scratch / member.sha256
                        if not path.exists():
                            try:
                                await blobs.copy_to(member.sha256, path, 0o600)
                            except BlobMismatch as mismatch:
                                raise corrupt_blob(
                                    self.reference, member.path, mismatch
                                ) from None
                    elif not os.path.exists(path):
                        raise corrupt_blob(
                            self.reference, member.path, BlobMismatch(member.sha256, "missing")
                        )
                stored.append((member, path))

            def mismatch(member, actual):
                return corrupt_blob(self.reference, member.path, BlobMismatch(member.sha256, actual))

            await run_job(
                pack_stored, stored, archive, self.manifest_bytes, level=level,
                mismatch=mismatch, progress=progress,
            )

    async def get_model(self, **options):
        """A ready DFFML model loaded from this image (its backend, features
        and options from the manifest), located at ``models:NAME:VERSION``:
        ``async with model: async with model() as mctx: ...``."""
        from ..model import load_model

        return await load_model(f"{C.REPOSITORY_SCHEME}{self.reference}", **options)


def _make_directory(path: pathlib.Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def image_not_a_model(reference) -> RepositoryError:
    return RepositoryError(
        reference, "holds no model information (pushed as a plain directory or archive)",
        hint="push an archive made by an *_archive model, or use it with -model NAME_archive",
    )
