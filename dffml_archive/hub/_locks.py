"""The hub cache's locks: an ``flock`` (same host, dies with its holder) and,
on a network filesystem, a lease file as well, because there ``flock`` is
often emulated by each client's kernel (NFS ``nolock``/``local_lock``, FUSE
daemons without lock support) and two hosts never exclude each other.

A lease is ``NAME.lease``, created with ``O_CREAT|O_EXCL`` and holding
``{"host", "boot", "pid", "time", "token"}``; its holder refreshes its mtime
every ``HUB_LEASE_HEARTBEAT_SECONDS``.  Some network filesystems (SeaweedFS's
FUSE mount, measured) let two clients' ``O_EXCL`` creates both succeed, so a
create counts only once, ``HUB_LEASE_SETTLE_SECONDS`` later, the file still
holds our token (the last writer wins; everyone else backs off).  A lease is
taken over when stale (no heartbeat for ``HUB_LEASE_SECONDS``) or when its
holder is a dead process of this very host (same host name and boot id): the
taker renames it away to a unique name first, so of several takers only one
removes it, and then creates its own like anyone else.
"""
import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import functools
import json
import os
import pathlib
import secrets
import socket
import time
import warnings
from typing import Optional

from .. import _constants as C
from .._processes import process_is_alive
from ..errors import HubError

#: statfs ``f_type`` of the filesystems whose ``flock`` may not reach the
#: other hosts sharing them (or fail there).
NETWORK_FILESYSTEMS = {
    0x6969: "NFS", 0xFE534D42: "SMB2", 0xFF534D42: "CIFS", 0x517B: "SMB",
    0x65735546: "FUSE", 0x01021997: "9p", 0x0BD00BD0: "Lustre", 0x47504653: "GPFS",
    0x00C36400: "CephFS", 0x5346414F: "AFS", 0x013111A8: "IBRIX", 0x6B414653: "kAFS",
}
#: errno of an ``flock`` the filesystem cannot do (CIFS, Lustre without
#: ``flock``, some FUSE daemons).
UNSUPPORTED_LOCK_ERRORS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)
BUSY_ERRORS = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


@functools.lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    if not name or not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return None
    return ctypes.CDLL(name, use_errno=True)


def filesystem_type(path) -> Optional[int]:
    """statfs's ``f_type`` of ``path`` (Linux), else None."""
    libc = _libc()
    if libc is None:
        return None
    buffer = ctypes.create_string_buffer(256)  # struct statfs; f_type comes first
    if libc.statfs(os.fsencode(str(path)), buffer) != 0:
        return None
    return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF


def lock_mode(root) -> str:
    """``flock`` or ``lease`` for the cache at ``root`` (MODELHUB_LOCK_MODE)."""
    mode = C.hub_lock_mode()
    if mode != "auto":
        return mode
    probe = pathlib.Path(root)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return "lease" if filesystem_type(probe) in NETWORK_FILESYSTEMS else "flock"


def try_flock(fd, path, mode) -> bool:
    """True if taken, False if busy; an flock the filesystem cannot do is
    an error in ``flock`` mode and ignored in ``lease`` mode (the lease
    excludes)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as error:
        if error.errno in BUSY_ERRORS:
            return False
        if error.errno in UNSUPPORTED_LOCK_ERRORS and mode == "lease":
            return True
        raise HubError(path, f"the hub cache's filesystem cannot lock files ({error.strerror})",
                       hint="set MODELHUB_LOCK_MODE=lease (lease files, for network "
                       "filesystems), or put MODELHUB_PATH on a local disk") from None


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def read_holder(path) -> Optional[dict]:
    """The lease's content ({} when unreadable or half written), or None
    when there is no lease."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(data)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe(holder: Optional[dict]) -> str:
    if not holder:
        return "an unknown holder"
    return f"pid {holder.get('pid')} on host {holder.get('host')}"


class Lease:
    """One lease file; :meth:`try_take` then :meth:`release`."""

    def __init__(self, path, lease_seconds=C.HUB_LEASE_SECONDS,
                 heartbeat_seconds=C.HUB_LEASE_HEARTBEAT_SECONDS,
                 settle_seconds=C.HUB_LEASE_SETTLE_SECONDS):
        self.path = pathlib.Path(path)
        self.lease_seconds, self.heartbeat_seconds = lease_seconds, heartbeat_seconds
        self.settle_seconds = settle_seconds
        self.token = secrets.token_hex(16)
        self.me = {"host": socket.gethostname(), "boot": boot_id(), "pid": os.getpid(),
                   "token": self.token}
        self._heartbeat = None

    async def try_take(self) -> Optional[dict]:
        """None once taken (heartbeat started), else the holder seen."""
        if not self._create():
            holder = read_holder(self.path)
            if holder is None or not self._take_over_if_dead(holder):
                return holder or {}
            if not self._create():
                return read_holder(self.path) or {}
        try:
            await asyncio.sleep(self.settle_seconds)
        except BaseException:  # cancelled: leave no lease without a heartbeat
            self.release()
            raise
        holder = read_holder(self.path)
        if not holder or holder.get("token") != self.token:
            return holder or {}
        self._heartbeat = asyncio.ensure_future(touch_while(self.path, self.heartbeat_seconds))
        return None

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, json.dumps(dict(self.me, time=time.time())).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _is_dead(self, holder: dict) -> bool:
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return False
        if age >= self.lease_seconds:
            return True
        same_host = (holder.get("host"), holder.get("boot")) == (self.me["host"], self.me["boot"])
        pid = holder.get("pid")
        return same_host and isinstance(pid, int) and not process_is_alive(pid)

    def _take_over_if_dead(self, holder: dict) -> bool:
        """Rename a dead lease away (one taker wins); True if it is gone."""
        if not self._is_dead(holder):
            return False
        aside = self.path.with_name(f"{self.path.name}.dead-{self.token}")
        try:
            os.rename(self.path, aside)
        except OSError:
            return False  # another taker was first
        with contextlib.suppress(OSError):
            os.unlink(aside)
        return True

    def release(self) -> None:
        """Stop the heartbeat; remove the lease only if it is still ours."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        holder = read_holder(self.path)
        if holder and holder.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        elif holder:  # our heartbeat stalled past a lease period, or the filesystem lied
            warnings.warn(f"{self.path}: the lease was taken over by {describe(holder)} "
                          "while we held it")


def partial_in_use(partial, mode: str) -> bool:
    """True while a download writes ``partial``: an flock on it (this host)
    or, in lease mode, its heartbeat (any host: mtime younger than a lease)."""
    try:
        fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if mode == "lease" and time.time() - os.fstat(fd).st_mtime < C.HUB_LEASE_SECONDS:
            return True
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError as error:
        return error.errno in BUSY_ERRORS
    finally:
        os.close(fd)


async def touch_while(path, heartbeat_seconds=C.HUB_LEASE_HEARTBEAT_SECONDS):
    """Refresh ``path``'s mtime until cancelled (a partial being written)."""
    while True:
        await asyncio.sleep(heartbeat_seconds)
        with contextlib.suppress(OSError):
            os.utime(path)
