"""Content-addressed blob storage: each distinct file once, named by its sha256.

:class:`BlobStore` is the small async interface the repository uses (the
scale-out store implements the same on an S3-compatible server);
:class:`LocalBlobStore` keeps blobs under ``<root>/blobs``::

    <root>/blobs/sha256/<first 2 hex>/<64 hex>      read-only files

A blob is written to a temporary file in ``<root>/tmp``, its bytes hashed as
they are written, fsynced, and renamed into place only if the hash is the
one it is stored under: a blob file is always whole and always right, and a
half-written one never has a blob's name.  Reads hash again (a disk can
change bytes): :meth:`copy_to` refuses a blob that no longer matches.
"""
import hashlib
import os
import pathlib
import shutil
import time
from typing import AsyncIterator, Iterable, List, Optional, Set, Tuple

from .. import _constants as C
from .._api import in_thread
from .._atomic import fsync_directory
from ..errors import CorruptBlobError, RepositoryError, os_errors_as

BLOBS = "blobs"
TEMPORARY = "tmp"
_HEX = frozenset("0123456789abcdef")


class BlobMismatch(Exception):
    """A blob's bytes do not hash to its name (the caller names the image)."""

    def __init__(self, digest: str, actual: str):
        super().__init__(digest, actual)
        self.digest, self.actual = digest, actual


class SourceChanged(Exception):
    """A file changed while it was being stored (the caller names it)."""

    def __init__(self, path):
        super().__init__(path)
        self.path = path


class BlobStore:
    """The interface.  Every method may raise :class:`RepositoryError`."""

    #: What errors name: the directory or the s3:// location.
    subject = None

    async def open(self) -> None:
        """Connect (and check that the store can be used)."""

    async def close(self) -> None:
        """Release connections."""

    async def missing(self, digests: Iterable[str]) -> Set[str]:
        """The digests of ``digests`` not stored.  The others are kept from gc
        for its grace period (they are about to be referenced)."""
        raise NotImplementedError

    async def put_file(self, path, digest: str, *, take: bool = False) -> int:
        """Store the file at ``path`` as ``digest``; return the bytes written.
        ``take``: the file is ours to move (a temporary tree).  Raises
        :class:`BlobMismatch` if its bytes do not hash to ``digest``."""
        raise NotImplementedError

    async def copy_to(self, digest: str, destination, mode: int) -> None:
        """Write blob ``digest`` to ``destination`` (a new file of ``mode``),
        hashing it on the way; :class:`BlobMismatch` if it does not match."""
        raise NotImplementedError

    async def ingest(
        self, paths: List[str], *, job=None, take: bool = False
    ) -> List[Tuple[str, int, int]]:
        """Store each file whose sha256 is not known yet: (digest, size,
        bytes newly stored) each.  ``take``: the files are ours (a
        temporary tree) and may be moved or linked.  Raises
        :class:`SourceChanged` for a file that changed while it was read."""
        raise NotImplementedError

    def local_path(self, digest: str) -> Optional[pathlib.Path]:
        """A file holding the blob, if the store has one (unverified)."""
        return None

    async def delete(self, digest: str) -> None:
        raise NotImplementedError

    async def listing(self) -> AsyncIterator[Tuple[str, int, float]]:
        """(digest, size, modification time) of every stored blob."""
        raise NotImplementedError
        yield  # pragma: no cover

    async def check(self, digest: str) -> Optional[str]:
        """None if the blob hashes to its name, else the hash it has."""
        raise NotImplementedError


def is_digest(text: str) -> bool:
    return len(text) == 64 and _HEX.issuperset(text)


def _copy_hashing(source, target, buffer: bytearray, job=None) -> Tuple[str, int]:
    digest = hashlib.sha256()
    view = memoryview(buffer)
    size = 0
    count = source.readinto(buffer)
    while count:
        digest.update(view[:count])
        target.write(view[:count])
        size += count
        if job is not None:
            job.advance(count)
        count = source.readinto(buffer)
    return digest.hexdigest(), size


def _hash_file(path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(C.CHUNK_SIZE)
    view = memoryview(buffer)
    with open(path, "rb") as source:
        count = source.readinto(buffer)
        while count:
            digest.update(view[:count])
            count = source.readinto(buffer)
    return digest.hexdigest()


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root`` (the repository root)."""

    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self.subject = str(self.root)
        self.directory = self.root / BLOBS / "sha256"
        self.temporary = self.root / TEMPORARY

    def path(self, digest: str) -> pathlib.Path:
        return self.directory / digest[:2] / digest

    def local_path(self, digest: str) -> Optional[pathlib.Path]:
        return self.path(digest)

    def _errors(self, doing: str):
        return os_errors_as(RepositoryError, self.root, doing)

    # -- writing -------------------------------------------------------------

    def _missing(self, digests) -> Set[str]:
        missing = set()
        now = time.time()
        for digest in set(digests):
            try:
                os.utime(self.path(digest), (now, now))  # gc's grace starts again
            except FileNotFoundError:
                missing.add(digest)
            except PermissionError:  # read-only store: present is present
                if not self.path(digest).exists():
                    missing.add(digest)
        return missing

    async def missing(self, digests) -> Set[str]:
        with self._errors("cannot read the blob store"):
            return await in_thread(self._missing, list(digests))

    def _partial(self, kind: str) -> pathlib.Path:
        """A new temporary name in ``tmp`` (gc removes abandoned ones)."""
        self.temporary.mkdir(parents=True, exist_ok=True)
        return self.temporary / f"blob-{kind}-{os.getpid()}-{time.monotonic_ns()}"

    def _publish(self, partial: pathlib.Path, digest: str) -> None:
        """Give the whole, synced, verified ``partial`` its blob's name."""
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(partial, 0o444)
        os.replace(partial, target)
        fsync_directory(target.parent)

    def _put_file(self, path, digest: str, take: bool) -> int:
        with self._errors(f"cannot store {os.fspath(path)!r}"):
            partial = self._partial(digest[:16])
            try:
                if take and self._link(path, partial):
                    actual, size = _hash_file(partial), os.stat(partial).st_size
                else:
                    with open(path, "rb") as source, open(partial, "xb") as out:
                        actual, size = _copy_hashing(source, out, bytearray(C.CHUNK_SIZE))
                        out.flush()
                        os.fsync(out.fileno())
                if actual != digest:
                    raise BlobMismatch(digest, actual)
                self._publish(partial, digest)
            finally:
                _remove_if_left(partial)
        return size

    def _ingest(self, path, buffer: bytearray, job, take: bool) -> Tuple[str, int, int]:
        """Read ``path`` once, copying and hashing together; keep the copy
        only if the store lacks that blob.  ``take``: link instead of
        copying where the file system allows (a tree of ours)."""
        partial = self._partial("ingest")
        try:
            if take and self._link(path, partial):
                actual, size = _hash_file(partial), os.stat(partial).st_size
                new = bool(self._missing([actual]))
            else:
                actual, size, new = self._copy_for_ingest(path, partial, buffer, job)
            if new:
                self._publish(partial, actual)
        finally:
            _remove_if_left(partial)
        return actual, size, size if new else 0

    def _copy_for_ingest(self, path, partial, buffer, job) -> Tuple[str, int, bool]:
        """(sha256, size, whether the store lacks it: then synced)."""
        with open(path, "rb") as source, open(partial, "xb") as out:
            before = os.fstat(source.fileno())
            actual, size = _copy_hashing(source, out, buffer, job)
            after = os.fstat(source.fileno())
            if size != after.st_size or (before.st_size, before.st_mtime_ns) != (
                after.st_size, after.st_mtime_ns
            ):
                raise SourceChanged(path)
            new = bool(self._missing([actual]))
            if new:
                out.flush()
                os.fsync(out.fileno())
        return actual, size, new

    async def ingest(self, paths, *, job=None, take: bool = False):
        def ingest_all():
            buffer = bytearray(C.CHUNK_SIZE)
            with self._errors("cannot store the model's files"):
                return [self._ingest(path, buffer, job, take) for path in paths]

        return await in_thread(ingest_all)

    @staticmethod
    def _link(path, partial) -> bool:
        try:
            os.link(path, partial)
        except OSError:  # another file system, or links not allowed: copy
            return False
        with open(partial, "rb") as linked:
            os.fsync(linked.fileno())
        return True

    async def put_file(self, path, digest: str, *, take: bool = False) -> int:
        return await in_thread(self._put_file, path, digest, take)

    # -- reading -------------------------------------------------------------

    def _copy_to(self, digest: str, destination, mode: int) -> None:
        try:
            source = open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobMismatch(digest, "missing") from None
        with source, open(destination, "xb") as out:
            actual, _ = _copy_hashing(source, out, bytearray(C.CHUNK_SIZE))
        if actual != digest:
            os.unlink(destination)
            raise BlobMismatch(digest, actual)
        os.chmod(destination, mode)

    async def copy_to(self, digest: str, destination, mode: int) -> None:
        await in_thread(self._copy_to, digest, destination, mode)

    def _check(self, digest: str) -> Optional[str]:
        try:
            actual = _hash_file(self.path(digest))
        except FileNotFoundError:
            return "missing"
        return None if actual == digest else actual

    async def check(self, digest: str) -> Optional[str]:
        return await in_thread(self._check, digest)

    # -- gc --------------------------------------------------------------------

    def _delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            pass

    async def delete(self, digest: str) -> None:
        with self._errors("cannot delete from the blob store"):
            await in_thread(self._delete, digest)

    def _list(self):
        found = []
        if not self.directory.is_dir():
            return found
        for fan in os.scandir(self.directory):
            if not fan.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(fan.path):
                if is_digest(entry.name):
                    st = entry.stat(follow_symlinks=False)
                    found.append((entry.name, st.st_size, st.st_mtime))
        return found

    async def listing(self):
        with self._errors("cannot list the blob store"):
            found = await in_thread(self._list)
        for item in found:
            yield item

    def remove_abandoned_uploads(self, grace_seconds: float) -> int:
        """Remove temporary files older than the grace period (killed saves);
        return the bytes freed."""
        freed = 0
        if not self.temporary.is_dir():
            return 0
        limit = time.time() - grace_seconds
        for entry in os.scandir(self.temporary):
            st = entry.stat(follow_symlinks=False)
            if st.st_mtime > limit:
                continue
            if entry.is_dir(follow_symlinks=False):
                freed += _tree_size(entry.path)
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                freed += st.st_size
                os.unlink(entry.path)
        return freed


def _remove_if_left(path: pathlib.Path) -> None:
    if path.exists():
        path.unlink()


def _tree_size(path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def corrupt_blob(subject: str, member: str, mismatch: BlobMismatch) -> CorruptBlobError:
    found = "is missing" if mismatch.actual == "missing" else f"hashes to {mismatch.actual[:16]}..."
    return CorruptBlobError(
        subject,
        f"stored bytes do not match: blob {mismatch.digest[:16]}... {found}",
        member=member,
        hint="the repository's disk changed them; push the model again from a good copy "
        "(run `models verify` to find every damaged blob)",
    )
