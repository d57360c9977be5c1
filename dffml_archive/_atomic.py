"""Atomic replacement of a file: write a sibling temp file, fsync, rename.

At any instant the target is either the complete old file or the complete
new one.  Temp files are named ``.<target>.<random>.partial`` so the next write
(holding the archive lock) removes leftovers of a crash before it starts.
"""
import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import pathlib
import re
import shutil
import stat
import tempfile
import time

from . import _constants as C
from .errors import (
    WRITE_ERRNOS, ArchiveWriteError, explain_os_error, os_errors_as, parent_directory
)

PARTIAL_SUFFIX = ".partial"
#: What ``mkstemp``/``mkdtemp`` add after a hidden sibling's prefix, at most:
#: 8 random characters and the longest of our suffixes (".partial",
#: ".extracting", ".old").
_SIBLING_TAIL_BYTES = 8 + len(".extracting")


def hidden_sibling_prefix(name: str) -> str:
    """``.NAME.``: the prefix of a temporary sibling of ``NAME`` (a partial
    archive, a staging directory), shortened where needed so that the whole
    temporary name fits the file system's component limit.  A legal name
    must never make its own temporary name illegal (a long archive name
    would otherwise fail only when training is over)."""
    return f".{name_within(name, C.MAX_COMPONENT_BYTES - 2 - _SIBLING_TAIL_BYTES)}."


def name_within(name: str, budget: int) -> str:
    """``name`` if it takes at most ``budget`` bytes, else a cut of it and a
    digest of all of it (``NAM~0123456789abcdef``): distinct for distinct
    names, recognizable, and within the budget."""
    if len(os.fsencode(name)) <= budget:
        return name
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    head = name
    while head and len(os.fsencode(f"{head}~{digest}")) > budget:
        head = head[:-1]
    return f"{head}~{digest}"


def fsync_directory(directory) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_partials(target: pathlib.Path) -> None:
    """Delete leftovers of interrupted writes of ``target``.  Only call this
    while holding the archive lock, so no live writer owns them."""
    # Exactly what mkstemp makes for this target: ".NAME." + 8 random
    # characters + ".partial" (so "m.tar" never matches "m.tar.gz"'s).
    pattern = re.compile(
        re.escape(hidden_sibling_prefix(target.name))
        + r"[A-Za-z0-9_]{8}"
        + re.escape(PARTIAL_SUFFIX)
    )
    try:
        entries = list(os.scandir(target.parent))
    except FileNotFoundError:
        return
    me = os.geteuid()
    for entry in entries:
        if not pattern.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        # Best effort, and only our own: another user's file (a shared or
        # sticky directory) is theirs, possibly a live write under their lock.
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_uid == me:
                os.unlink(entry.path)


@contextlib.contextmanager
def atomic_replace(target):
    """Yield a temporary path beside ``target`` for a library that writes a
    file by path (``torch.save``, a Vowpal Wabbit workspace, a protobuf
    text file); on a clean exit the file is synced and replaces ``target``
    (keeping its permissions), on an exception it is removed and ``target``
    is untouched.  For a backend's own files inside a working directory; the
    archive itself is written by :func:`atomic_write`."""
    target = pathlib.Path(target)
    fd, temp = tempfile.mkstemp(
        dir=target.parent, prefix=hidden_sibling_prefix(target.name), suffix=PARTIAL_SUFFIX
    )
    os.close(fd)
    try:
        yield pathlib.Path(temp)
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~current_umask()
        os.chmod(temp, mode)
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange_paths(first: str, second: str) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``);
    False where the system or file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                 _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), second)


def swap_in_directory(new, target) -> None:
    """Put directory ``new`` in the place of the non-empty directory
    ``target`` and delete the old tree.  In one step where the system can
    (:func:`exchange_paths`), so ``target`` never goes missing; else by two
    renames, the old tree kept in a hidden ``.old`` sibling until the new
    one is in place (a process killed between them leaves it there)."""
    new, target = os.fspath(new), pathlib.Path(target)
    if exchange_paths(new, os.fspath(target)):
        shutil.rmtree(new, ignore_errors=True)  # the old tree, now
        return
    backup = tempfile.mkdtemp(
        dir=target.parent, prefix=hidden_sibling_prefix(target.name), suffix=".old"
    )
    os.rename(target, os.path.join(backup, "tree"))
    os.rename(new, target)
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def atomic_replace_directory(target, grace_seconds: float = C.STAGE_GRACE_SECONDS):
    """Yield a new empty directory beside ``target`` for a library that
    writes a whole tree by path (spaCy's ``nlp.to_disk``); on a clean exit
    it takes ``target``'s place (:func:`swap_in_directory`), with the
    permissions of a directory made now; on an exception it is removed and
    ``target`` is untouched.  Partial trees of killed writers are removed
    first (they are held by an ``flock`` while written)."""
    target = pathlib.Path(target)
    prefix = hidden_sibling_prefix(target.name)
    remove_abandoned_directories(
        target.parent,
        re.compile(re.escape(prefix) + r"[A-Za-z0-9_]{8}" + re.escape(PARTIAL_SUFFIX)),
        grace_seconds,
    )
    temp = tempfile.mkdtemp(dir=target.parent, prefix=prefix, suffix=PARTIAL_SUFFIX)
    hold = hold_directory(temp)
    try:
        yield pathlib.Path(temp)
        os.chmod(temp, 0o777 & ~current_umask())  # mkdtemp made it 0700
        try:
            os.rename(temp, target)  # no target, or an empty one
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            swap_in_directory(temp, target)
        fsync_directory(target.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        os.close(hold)


def hold_directory(path) -> int:
    """An ``flock`` on directory ``path`` for as long as the returned fd is
    open: it tells cleaners the directory has a live owner (a lock, unlike a
    pid, holds across pid namespaces and pid reuse, and dies with its owner)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def remove_abandoned_directories(parent, pattern, grace_seconds: float) -> None:
    """Delete the directories in ``parent`` whose names match ``pattern`` and
    that nobody holds (see :func:`hold_directory`): what killed processes left
    behind.  One changed in the last ``grace_seconds`` is spared (its owner
    may not have locked it yet); best effort, and only our own."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    me = os.geteuid()
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != me:
                continue
            if time.time() - st.st_mtime < grace_seconds:
                continue
            fd = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # alive
        finally:
            os.close(fd)
        shutil.rmtree(entry.path, ignore_errors=True)


def is_writable(path) -> bool:
    """Write permission, and at least one write bit: ``chmod a-w`` protects
    a file from root as well."""
    return os.access(path, os.W_OK) and bool(os.stat(path).st_mode & 0o222)


@contextlib.contextmanager
def atomic_write(target):
    """Yield a binary file; on a clean exit it replaces ``target`` atomically
    (keeping the old file's permissions), on an exception it is removed.
    The caller holds the archive's lock.  A symbolic link stays a link: the
    file it points to is replaced.  A file made read-only is not replaced."""
    shown = target
    target = pathlib.Path(os.path.realpath(target))
    if os.path.exists(target) and not is_writable(target):
        raise ArchiveWriteError(
            shown, "is read-only (its write permission is off), so it was not replaced",
            hint="make it writable (chmod u+w) to replace it, or write elsewhere",
        )
    directory = target.parent
    # Leftovers of killed writes first: on a nearly full disk they are what
    # keeps this write from fitting.
    remove_stale_partials(target)
    with os_errors_as(ArchiveWriteError, shown, f"cannot write in {parent_directory(target)!r}"):
        fd, temp = tempfile.mkstemp(
            dir=directory, prefix=hidden_sibling_prefix(target.name), suffix=PARTIAL_SUFFIX
        )
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            try:
                mode = os.stat(target).st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~current_umask()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        with os_errors_as(ArchiveWriteError, shown, "cannot replace the archive"):
            os.replace(temp, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
            reason, hint = explain_os_error(error, "cannot write the archive")
            raise ArchiveWriteError(
                shown, f"{reason}; any previous archive is unchanged", hint=hint
            ) from error
        raise
    fsync_directory(directory)
