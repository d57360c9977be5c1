"""An inter-process lock per archive path, re-entrant within one process.

``flock`` locks belong to open file descriptions, so a second ``flock`` from
the same process on a new descriptor would deadlock against the first: the
process keeps one descriptor per archive and counts nested holders.  Lock
files live in the cache (never beside the archive) and are keyed by the
archive's real path.
"""
import contextlib
import fcntl
import hashlib
import os
import threading

from . import _constants as C

_registry_guard = threading.Lock()
_held = {}  # key -> [fd, count]
_acquiring = {}  # key -> threading.Lock serializing acquirers in-process


def _lock_path(archive) -> str:
    real = os.path.realpath(os.fspath(archive))
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()
    directory = C.cache_root() / "locks"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(directory / f"{digest[:32]}.lock")


@contextlib.contextmanager
def archive_lock(archive):
    """Hold the lock of ``archive`` (blocking until other processes release it)."""
    key = _lock_path(archive)
    with _registry_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
        gate = _acquiring.setdefault(key, threading.Lock())
    if entry is None:
        with gate:
            with _registry_guard:
                entry = _held.get(key)
                if entry is not None:
                    entry[1] += 1
            if entry is None:
                fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                with _registry_guard:
                    _held[key] = entry = [fd, 1]
    try:
        yield
    finally:
        with _registry_guard:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                fcntl.flock(entry[0], fcntl.LOCK_UN)
                os.close(entry[0])
