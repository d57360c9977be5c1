"""One lock per archive path: a mutex for the threads and tasks of this
process plus an ``flock`` for other processes.

Lock files live in the cache (never beside the archive), named by a hash of
the archive's real path.  Not re-entrant: code that already holds the lock
(an ``archive_location`` session saving its archive) says so explicitly.

A wait longer than ``LOCK_WAIT_NOTICE_SECONDS`` (``_constants``) is said once, as an
:class:`~dffml_archive.ArchiveLockWaitWarning` naming the archive and the
lock file: a command that waits silently looks hung.
"""
import contextlib
import fcntl
import os
import threading
import time
import warnings

from . import _cache
from . import _constants as C
from .errors import ArchiveLockWaitWarning, cache_errors

_registry_guard = threading.Lock()
_locks = {}  # lock file path -> _ArchiveLock


class _ArchiveLock:
    def __init__(self, path: str, archive):
        self.path = path
        self.archive = archive  # for messages
        self.mutex = threading.Lock()
        self.fd = None

    def _open(self) -> int:
        with cache_errors(self.archive, os.path.dirname(self.path)):
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def acquire(self) -> None:
        self.mutex.acquire()
        try:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            self.mutex.release()
            raise
        self.fd = fd

    def try_acquire(self) -> bool:
        if not self.mutex.acquire(blocking=False):
            return False
        try:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self.mutex.release()
                return False
        except BaseException:
            self.mutex.release()
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        fd, self.fd = self.fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        finally:
            self.mutex.release()


def lock_for(archive) -> _ArchiveLock:
    path = _cache.lock_path(archive)
    with cache_errors(archive, path.parent):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _registry_guard:
        return _locks.setdefault(str(path), _ArchiveLock(str(path), archive))


def _say_waiting(lock: _ArchiveLock) -> None:
    warnings.warn(ArchiveLockWaitWarning(
        f"{lock.archive}: waiting for the session that has it open to end "
        f"(in this or another process; it holds the lock file {lock.path})"
    ))


@contextlib.contextmanager
def archive_lock(archive):
    """Hold the lock of ``archive``, blocking until it is free."""
    lock = lock_for(archive)
    deadline = time.monotonic() + C.LOCK_WAIT_NOTICE_SECONDS
    while not lock.try_acquire():
        if time.monotonic() >= deadline:
            _say_waiting(lock)
            lock.acquire()
            break
        time.sleep(0.01)
    try:
        yield
    finally:
        lock.release()


@contextlib.asynccontextmanager
async def archive_lock_async(archive):
    """The same, waiting without blocking the event loop.  Polls, so that a
    cancelled waiter never leaves a thread behind that takes the lock later."""
    import asyncio  # here: the command line packs under archive_lock and never loads asyncio
    lock = lock_for(archive)
    delay = 0.001
    notice_at = time.monotonic() + C.LOCK_WAIT_NOTICE_SECONDS
    while not lock.try_acquire():
        if notice_at is not None and time.monotonic() >= notice_at:
            _say_waiting(lock)
            notice_at = None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    try:
        yield
    finally:
        lock.release()
