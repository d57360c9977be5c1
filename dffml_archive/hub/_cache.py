"""The hub's cache: ``ROOT/FRAMEWORK/...original names``, the lock file
``ROOT/modelhub-lock.json`` (every download: source, revision, sha256, size,
time) and the per-file download locks in ``ROOT/.locks``.

Locks (``_locks.py``) are an ``flock`` with a timeout (polled, never a wait
without end), which dies with its holder but excludes only one host's
processes; on a network filesystem (or ``MODELHUB_LOCK_MODE=lease``) also a
lease file with a heartbeat, taken over once its holder is dead or silent.
Partial files of dead downloads are kept to be resumed and pruned once stale
(``HUB_STALE_PARTIAL_SECONDS``) or by ``prune``; one being written (flock,
or a fresh heartbeat) is never pruned.
"""
import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import time
import warnings
from typing import Dict, List, Optional

from .. import _constants as C
from .._atomic import atomic_write
from ..errors import ArchiveLockWaitWarning, HubError, HubLockTimeoutError, HubSourceError
from ._locks import Lease, describe, lock_mode, partial_in_use, try_flock


@dataclasses.dataclass
class CacheEntry:
    """One download recorded in the lock file.  ``path`` is relative to the
    cache root; ``unpacked`` is the directory it was unpacked into, if any."""

    path: str
    source: str
    framework: str
    url: str
    sha256: str
    size: int
    time: float
    revision: Optional[str] = None
    commit: Optional[str] = None
    unpacked: Optional[str] = None
    #: the framework cache a verified copy was taken from (no download)
    origin: Optional[str] = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def sha256_of(path, chunk=C.HUB_CHUNK_SIZE) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


class HubCache:
    """The cache at ``root`` (default ``$MODELHUB_PATH`` or ``~/.modelhub``)."""

    def __init__(self, root=None, lock_timeout: Optional[float] = None):
        self.root = pathlib.Path(os.path.abspath(root)) if root else C.hub_root()
        self.lock_timeout = C.hub_lock_timeout() if lock_timeout is None else lock_timeout

    # -- paths -------------------------------------------------------------

    @property
    def lock_file(self) -> pathlib.Path:
        return self.root / C.HUB_LOCK_FILE

    def path_of(self, relative: str) -> pathlib.Path:
        """Absolute path of a cache-relative path, never outside the root."""
        path = (self.root / relative).resolve()
        if path != self.root.resolve() and self.root.resolve() not in path.parents:
            raise HubSourceError(relative, "is outside the hub cache", hint=str(self.root))
        return self.root / relative

    def relative(self, path) -> str:
        return pathlib.Path(path).relative_to(self.root).as_posix()

    # -- locks -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def locked(self, key: str, what: str):
        """Hold the lock named by ``key`` (one download of one file, or the
        lock file); ``what`` says what is waited for in messages."""
        directory = self.root / C.HUB_LOCKS_DIRECTORY
        directory.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        mode = lock_mode(self.root)
        fd = os.open(directory / (name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        lease = Lease(directory / (name + ".lease")) if mode == "lease" else None
        try:
            await _acquire(fd, lease, mode, self.lock_timeout, what, directory / (name + ".lock"))
            try:
                yield
            finally:
                if lease is not None:
                    lease.release()
        finally:
            os.close(fd)  # releases the flock

    # -- the lock file -----------------------------------------------------

    def read_entries(self) -> Dict[str, CacheEntry]:
        try:
            with open(self.lock_file, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise HubError(self.lock_file, f"cannot read the hub's lock file ({error})",
                           hint="restore it, or remove it and run prune") from None
        if data.get("format") != C.HUB_LOCK_FORMAT:
            raise HubError(self.lock_file, "is not a dffml-archive model hub lock file")
        fields = {f.name for f in dataclasses.fields(CacheEntry)}
        return {
            path: CacheEntry(**{k: v for k, v in entry.items() if k in fields})
            for path, entry in data.get("entries", {}).items()
        }

    async def update_entries(self, change) -> None:
        """``change(entries)`` under the lock file's lock, written atomically."""
        async with self.locked("lock-file", "the hub's lock file"):
            entries = self.read_entries()
            change(entries)
            data = {"format": C.HUB_LOCK_FORMAT, "version": 1,
                    "entries": {p: e.to_json() for p, e in sorted(entries.items())}}
            with atomic_write(self.lock_file) as handle:
                handle.write(json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")

    async def record(self, entry: CacheEntry) -> None:
        await self.update_entries(lambda entries: entries.__setitem__(entry.path, entry))

    def find(self, source: str, revision: Optional[str] = None) -> Optional[CacheEntry]:
        """The newest entry downloaded from ``source`` (at ``revision``: the
        revision asked for or the commit it was pinned to)."""
        found = [
            e for e in self.read_entries().values()
            if e.source == source and (revision is None or revision in (e.revision, e.commit))
        ]
        return max(found, key=lambda e: e.time) if found else None

    # -- maintenance -------------------------------------------------------

    def list(self) -> List[CacheEntry]:
        return sorted(self.read_entries().values(), key=lambda e: e.path)

    def verify(self) -> List[dict]:
        """Every entry re-hashed against the lock file, no network: a list
        of problems (empty when all is well)."""
        problems = []
        for entry in self.list():
            path = self.root / entry.path
            if not path.is_file():
                problems.append({"path": entry.path, "problem": "missing"})
            elif path.stat().st_size != entry.size:
                problems.append({"path": entry.path, "problem":
                                 f"size {path.stat().st_size}, the lock file says {entry.size}"})
            elif sha256_of(path) != entry.sha256:
                problems.append({"path": entry.path, "problem": "sha256 differs from the lock file"})
            elif entry.unpacked and not (self.root / entry.unpacked).is_dir():
                problems.append({"path": entry.unpacked, "problem": "unpacked directory missing"})
        return problems

    async def prune(self, stale_seconds: float = 0) -> List[str]:
        """Remove partial files (older than ``stale_seconds``, and not being
        written) and every file or directory the lock file does not name."""
        removed = []
        async with self.locked("lock-file", "the hub's lock file"):
            kept = set()
            for entry in self.read_entries().values():
                kept.add(entry.path)
                if entry.unpacked:
                    kept.add(entry.unpacked)
            for framework in self._framework_directories():
                removed += await self._prune_tree(framework, kept, stale_seconds)
        return removed

    def _framework_directories(self):
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir()
                if p.is_dir() and not p.name.startswith(".") and not p.is_symlink()]

    async def _prune_tree(self, directory, kept, stale_seconds) -> List[str]:
        removed = []
        for path in sorted(directory.iterdir()):
            relative = self.relative(path)
            if relative in kept:
                continue
            if path.is_dir() and not path.is_symlink():
                if (any(k.startswith(relative + "/") for k in kept)
                        or await self._holds_live_partial(path, stale_seconds)):
                    removed += await self._prune_tree(path, kept, stale_seconds)
                    continue
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.endswith(C.HUB_PARTIAL_SUFFIX):
                if not await self._partial_is_stale(path, stale_seconds):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed.append(relative)
        return removed

    async def _holds_live_partial(self, directory, stale_seconds) -> bool:
        """A download's first partial may be all a new directory holds."""
        for partial in directory.rglob("*" + C.HUB_PARTIAL_SUFFIX):
            if not await self._partial_is_stale(partial, stale_seconds):
                return True
        return False

    async def _partial_is_stale(self, path, stale_seconds) -> bool:
        try:
            if time.time() - path.stat().st_mtime < stale_seconds:
                return False
        except FileNotFoundError:
            return False
        return not self.partial_in_use(path)

    def partial_in_use(self, partial) -> bool:
        """True while a download writes ``partial`` (its flock; in lease
        mode also its heartbeat, for downloads on other hosts)."""
        return partial_in_use(partial, lock_mode(self.root))

    async def remove(self, what: str) -> List[str]:
        """Delete the entries whose source or cache path is ``what`` (files,
        unpacked directories, lock file lines)."""
        gone = []

        def change(entries):
            for path, entry in list(entries.items()):
                if what in (entry.source, entry.path, str(self.root / entry.path)):
                    for relative in (entry.path, entry.unpacked):
                        if not relative:
                            continue
                        target = self.root / relative
                        if target.is_dir() and not target.is_symlink():
                            shutil.rmtree(target, ignore_errors=True)
                        else:
                            with contextlib.suppress(FileNotFoundError):
                                target.unlink()
                    del entries[path]
                    gone.append(path)

        await self.update_entries(change)
        if not gone:
            raise HubError(what, "is not in the hub cache",
                           hint="see `hub list` for the sources and paths it holds")
        return gone


async def _acquire(fd, lease, mode, timeout, what, lock_path) -> None:
    """The flock, then the lease if any, polled until ``timeout``."""
    started = time.monotonic()
    delay, said, holder = 0.01, False, None
    while True:
        if try_flock(fd, lock_path, mode):
            holder = None if lease is None else await lease.try_take()
            if holder is None:
                return
            fcntl.flock(fd, fcntl.LOCK_UN)  # let this host's others try too
        waited = time.monotonic() - started
        if waited >= timeout:
            raise _timeout_error(what, waited, lease, holder, lock_path)
        if not said and waited >= C.LOCK_WAIT_NOTICE_SECONDS:
            warnings.warn(ArchiveLockWaitWarning(what, "another download of it is running: waiting"))
            said = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


def _timeout_error(what, waited, lease, holder, lock_path) -> HubLockTimeoutError:
    if lease is None or holder is None:
        return HubLockTimeoutError(
            what, f"another task or process held its download lock for {waited:.0f} s",
            hint=f"wait for it to finish, or raise MODELHUB_LOCK_TIMEOUT; the lock is "
            f"{lock_path} (released when its holder exits)",
        )
    return HubLockTimeoutError(
        what, f"{describe(holder)} held its download lease for {waited:.0f} s",
        hint=f"wait for it to finish, or raise MODELHUB_LOCK_TIMEOUT; the lease is "
        f"{lease.path} (taken over {C.HUB_LEASE_SECONDS:.0f} s after its holder stops "
        f"refreshing it, at once if its holder is a dead process of this host)",
    )
