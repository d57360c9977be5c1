"""``archive_location``: a working directory for a directory or archive path.

For an archive: extract on enter, repack on a clean exit only if something
changed, leave the archive byte-identical after an exception.  Nested enters
in one process share one working copy; an inter-process lock serializes
whole enter..exit sessions, so two processes never lose each other's update.

Read-only re-entry of an unchanged archive reuses a verified extraction
cache instead of extracting again.  "Verified" means: the archive's
(device, inode, size, mtime) and every cached entry's (size, mtime, inode,
mode) are exactly what they were right after the last extraction or save,
so nothing has touched either since the content was hashed.
"""
import asyncio
import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import stat
import tempfile
import time
import warnings
from typing import Optional, Tuple

from . import _api, _cache
from ._api import in_thread
from . import _constants as C
from ._atomic import hold_directory, is_writable, remove_abandoned_directories
from ._formats import format_for_path, is_archive_path, looks_like_unsupported_archive
from ._lock import archive_lock_async, lock_for
from ._manifest import Manifest
from .repository._names import is_repository_location
from ._sessions import SESSIONS
from .errors import (
    ArchiveError, ArchiveNotUpdatedWarning, ArchiveWriteError, cache_errors, explain_os_error,
    os_errors_as,
)
from ._safety import sanitized_dir_mode, sanitized_file_mode


@dataclasses.dataclass
class WorkingCopy:
    """What ``async with archive_location(...)`` gives you."""

    #: The directory to read and write.
    directory: pathlib.Path
    #: The archive behind it, or None for a plain directory location.
    archive: Optional[pathlib.Path] = None
    #: The archive's manifest as entered, or None for a new archive or a
    #: plain directory.
    manifest: Optional[Manifest] = None
    #: Model information stored in the manifest on save; starts as the
    #: archive's own.  Changing it alone is a change worth saving.
    model: Optional[dict] = None
    #: Set to False to leave without saving even if the tree changed.
    save: bool = True
    #: Set to True when keeping the changes is optional (a session that
    #: only reads a model: predict, accuracy): an archive that cannot be
    #: written is then left as it was, with an ArchiveNotUpdatedWarning,
    #: instead of an error and a rescued copy of the tree.
    best_effort: bool = False


def _snapshot(tree: pathlib.Path) -> dict:
    """Relative path -> [kind, size, mtime_ns, inode, mode, ctime_ns] of every entry."""
    result = {}
    pending = [("", os.fspath(tree))]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as listing:
            for entry in listing:
                st = entry.stat(follow_symlinks=False)
                kind = "d" if stat.S_ISDIR(st.st_mode) else "f" if stat.S_ISREG(st.st_mode) else "x"
                result[prefix + entry.name] = [
                    kind, st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode & 0o7777,
                    st.st_ctime_ns,
                ]
                if kind == "d":
                    pending.append((prefix + entry.name + "/", entry.path))
    return result


def _archive_identity(archive: pathlib.Path):
    st = os.stat(archive)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(functools.partial(handle.read, C.CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _normalized_json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _remove_abandoned_sessions(root: pathlib.Path) -> None:
    """A process killed mid-session leaves its working tree behind (with the
    cache on, the next session reuses its slot; without, nothing would).
    Uncached sessions hold an flock on their directory while they live."""
    pattern = re.compile(re.escape(_cache.SESSION_PREFIX) + ".+")
    remove_abandoned_directories(root, pattern, C.STAGE_GRACE_SECONDS)


_pruned_in_this_process = False


def _remove_slots_of_deleted_archives(root: pathlib.Path) -> None:
    """The cache keeps one extracted copy per archive opened; drop those whose
    archive no longer exists (under that archive's lock, so never a slot in
    use).  Once per process: a scan reads one small file per slot."""
    global _pruned_in_this_process
    if _pruned_in_this_process:
        return
    _pruned_in_this_process = True
    for entry in os.scandir(root):
        try:
            archive = (pathlib.Path(entry.path) / _cache.ARCHIVE_PATH_FILE).read_text("utf-8")
        except (OSError, ValueError):
            continue  # a session, or a slot of an older version
        if os.path.lexists(archive):
            continue
        lock = lock_for(archive)
        if not lock.try_acquire():
            continue
        try:
            if not os.path.lexists(archive):
                shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            lock.release()


class _CacheSlot:
    """One archive's slot in the extraction cache: ``tree/`` + ``state.json``
    (+ ``archive-path``)."""

    def __init__(self, archive: pathlib.Path, cached: bool):
        root = _cache.extract_directory()
        self.cached = cached
        with cache_errors(archive, root):
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._session_lock = None
            if cached:
                self.root = _cache.slot_path(archive)
            else:
                _remove_abandoned_sessions(root)
                self.root = pathlib.Path(tempfile.mkdtemp(dir=root, prefix=_cache.SESSION_PREFIX))
                self._session_lock = hold_directory(self.root)
        self.tree = self.root / _cache.TREE
        self.state_file = self.root / _cache.STATE_FILE

    def load_state(self) -> Optional[dict]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def save_state(self, archive, manifest: Manifest) -> None:
        state = {
            "archive": _archive_identity(archive),
            "taken_ns": time.time_ns(),
            "tree": _snapshot(self.tree),
            "manifest": manifest.to_json(),
            "verified": manifest.verified,
        }
        temp = self.state_file.with_suffix(".tmp")
        temp.write_text(json.dumps(state))
        os.replace(temp, self.state_file)
        (self.root / _cache.ARCHIVE_PATH_FILE).write_text(os.path.realpath(archive), "utf-8")

    def valid_manifest(self, archive) -> Optional[Manifest]:
        """The cached manifest if the cache still mirrors the archive."""
        state = self.load_state()
        if state is None or not self.tree.is_dir():
            return None
        try:
            if state["archive"] != _archive_identity(archive):
                return None
            if state["tree"] != _snapshot(self.tree):
                return None
            manifest = Manifest.from_json(archive, state["manifest"])
            listed = manifest.by_path()
            racy = list(_racy_files(state))
            for path in racy:
                if path not in listed or _sha256(self.tree / path) != listed[path].sha256:
                    return None
            if racy:  # verified now: a fresh snapshot makes them plain files
                manifest.verified = state.get("verified", True)
                self.save_state(archive, manifest)
                return manifest
        except (OSError, KeyError, ValueError):
            return None
        manifest.verified = state.get("verified", True)
        return manifest

    def reset(self) -> None:
        """Empty the slot, keeping its directory (a session's lock is on it)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for entry in os.scandir(self.root):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def save_state_if_possible(self, archive, manifest: Manifest) -> None:
        """Best effort: without a state (a full cache disk), the next session
        finds the slot stale and extracts again."""
        try:
            self.save_state(archive, manifest)
        except OSError:
            with contextlib.suppress(OSError):
                self.state_file.unlink()

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self._session_lock is not None:
            os.close(self._session_lock)
            self._session_lock = None


def _racy_files(state: dict):
    limit = state.get("taken_ns", 0) - C.RACY_WINDOW_NS
    for path, (kind, _size, mtime, _inode, _mode, ctime) in state["tree"].items():
        if kind == "f" and max(mtime, ctime) >= limit:
            yield path


def _kept_owner_bits(mode: int, directory: bool) -> int:
    """The owner's permission bits as a pack and an extraction would leave
    them: extraction always grants the owner read and write (and entry), and
    the group and other bits are whatever the umask of the extracting
    process let through.  So only these can tell a real chmod (a backend
    making a script executable) from a tree extracted under another umask."""
    sanitized = sanitized_dir_mode(mode) if directory else sanitized_file_mode(mode)
    return sanitized & 0o700


def _tree_differs(tree: pathlib.Path, state: dict, manifest: Manifest, now: dict) -> bool:
    """Compare the working tree (``now``, its snapshot) with the archive's
    content: cheap stats first, hashes only for files whose stats moved (or
    were racy)."""
    state_tree = state.get("tree", {})
    racy = set(_racy_files(state)) if state_tree else set()
    listed = manifest.by_path()
    if set(now) != set(listed):
        return True
    for path, (kind, size, *_stats, mode, _ctime) in now.items():
        member = listed[path]
        if (kind == "d") != (member.type == "directory") or kind == "x":
            return True
        # Never the umask's part: reading a model under another umask than
        # the one it was extracted under must not rewrite it.
        if _kept_owner_bits(mode, kind == "d") != _kept_owner_bits(member.mode, kind == "d"):
            return True
        if kind == "f":
            if size != member.size:
                return True
            if state_tree.get(path) != now[path] or path in racy:
                if _sha256(tree / path) != member.sha256:
                    return True
    return False


def _open_slot(archive: pathlib.Path) -> _CacheSlot:
    slot = _CacheSlot(archive, C.extract_cache_enabled())
    if slot.cached:
        _remove_slots_of_deleted_archives(slot.root.parent)
    return slot


async def _enter(archive: pathlib.Path, limits) -> tuple:
    """Populate the slot's tree from the archive (or the cache); return the
    slot and the archive's manifest (None for a new archive)."""
    # Off the loop: opening a slot may first remove what killed sessions or
    # deleted archives left behind (whole trees).
    slot = await in_thread(_open_slot, archive)
    if not archive.exists():
        await in_thread(slot.reset)
        slot.tree.mkdir(mode=0o700)
        return slot, None
    manifest = await in_thread(slot.valid_manifest, archive) if slot.cached else None
    if manifest is None:
        try:
            await in_thread(slot.reset)
            manifest = await _api.extract(archive, slot.tree, limits=limits, replace=True)
            await in_thread(os.chmod, slot.tree, 0o700)
            if slot.cached:
                await in_thread(slot.save_state_if_possible, archive, manifest)
        except BaseException:
            await asyncio.shield(in_thread(slot.discard))
            raise
    return slot, manifest


def _needs_saving(slot: _CacheSlot, copy: WorkingCopy) -> bool:
    if not copy.save:
        return False
    if copy.manifest is None:
        with os.scandir(slot.tree) as entries:  # closed even when any() stops early
            return copy.model is not None or any(entries)
    if _normalized_json(copy.model) != _normalized_json(copy.manifest.model):
        return True
    state = (slot.load_state() if slot.cached else None) or {}
    now = _snapshot(slot.tree)
    if _tree_differs(slot.tree, state, copy.manifest, now):
        return True
    if slot.cached and (now != state.get("tree") or any(_racy_files(state))):
        # Same content under new stats (slr, for one, rewrites its file on
        # every exit): record them, or the next session would find the cache
        # stale and extract and verify the whole archive again.
        slot.save_state_if_possible(copy.archive, copy.manifest)
    return False


async def _leave(slot: _CacheSlot, copy: WorkingCopy) -> None:
    if not await in_thread(_needs_saving, slot, copy):
        return
    if copy.best_effort:
        cause = await in_thread(_why_not_writable, copy.archive)
        if cause is not None:
            await _not_updated(slot, copy, *cause)
            return

    try:
        manifest = await _api.pack_holding_the_lock(slot.tree, copy.archive, copy.model)
    except (ArchiveError, OSError) as error:
        if copy.best_effort and isinstance(error, ArchiveWriteError):
            await _not_updated(slot, copy, error.reason, error.hint)
            return
        rescued = await asyncio.shield(in_thread(_rescue, slot, copy))
        if rescued is None:
            raise
        raise _save_failed(error, copy.archive, rescued) from error
    copy.manifest = manifest
    if slot.cached:
        await in_thread(slot.save_state_if_possible, copy.archive, manifest)


def _why_not_writable(archive) -> Optional[Tuple[str, str]]:
    """(reason, hint) if ``archive`` could not be replaced, else None.  The
    hint fits the cause: chmod cannot make a read-only mount writable."""
    real = pathlib.Path(os.path.realpath(archive))
    directory = real.parent
    try:
        read_only_mount = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_mount = False
    if read_only_mount:
        return (
            "it is on a read-only file system",
            "copy it to a writable place, or remount that file system read-write, "
            "to keep such updates",
        )
    if real.exists() and not is_writable(real):
        return "the archive is read-only", f"chmod u+w {shlex.quote(str(archive))} to allow updates"
    if not os.access(directory, os.W_OK | os.X_OK):
        return (
            f"its directory {str(directory)!r} is not writable",
            f"chmod u+w {shlex.quote(str(directory))} to allow updates",
        )
    return None


async def _not_updated(slot: _CacheSlot, copy: WorkingCopy, reason: str, hint) -> None:
    """Leave the archive as it was and say so, once, in one line.  The tree
    no longer mirrors the archive: it must not be reused as a cache."""
    message = (
        f"{copy.archive}: was not updated ({reason}): the results are not affected, "
        "but the model state this run changed is not kept"
    )
    warnings.warn(ArchiveNotUpdatedWarning(f"{message} ({hint})" if hint else message))
    await asyncio.shield(in_thread(slot.discard))


def _rescue(slot: _CacheSlot, copy: WorkingCopy) -> Optional[pathlib.Path]:
    """Move the tree of a session whose save failed out of the cache (a full
    disk must not cost a training run), with its model information beside
    it.  A rename needs no free space; None if even that fails."""
    target = _cache.rescue_path(copy.archive)  # unique: it ends in a random part
    try:
        os.rename(slot.tree, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            return None
        try:  # DFFML_ARCHIVE_CACHE spans file systems: copy instead
            shutil.copytree(slot.tree, target, symlinks=True)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            return None
    if copy.model is not None:
        with contextlib.suppress(OSError):
            target.with_name(target.name + ".model.json").write_text(json.dumps(copy.model))
    return target


def _save_failed(error: Exception, archive, rescued: pathlib.Path) -> ArchiveError:
    """``error``, telling where the unsaved model is and how to save it."""
    information = rescued.with_name(rescued.name + ".model.json")
    command = f"python -m dffml_archive pack {shlex.quote(str(rescued))} {shlex.quote(str(archive))}"
    if information.exists():
        command += f" --model {shlex.quote(str(information))}"
    keep = f"the unsaved model directory is kept at {str(rescued)!r}"
    hint = f"then save it with: {command}"
    if isinstance(error, ArchiveError):
        hint = f"{error.hint}; {hint}" if error.hint else hint
        return type(error)(error.archive, f"{error.reason}; {keep}", member=error.member, hint=hint)
    reason, usual_hint = explain_os_error(error, "could not be saved")
    hint = f"{usual_hint}; {hint}" if usual_hint else hint
    return ArchiveWriteError(archive, f"{reason}; {keep}", hint=hint)


@contextlib.asynccontextmanager
async def archive_location(location, *, limits=None):
    """``async with archive_location(path) as copy:`` work in ``copy.directory``.

    ``path`` is a directory (yielded as is) or an archive path, chosen by its
    extension (an existing directory always counts as a directory), or a
    repository location ``models:NAME[:VERSION|TAG]``."""
    if is_repository_location(location):
        from .repository._location import repository_location

        async with repository_location(location) as copy:
            yield copy
        return
    path = pathlib.Path(location)
    with os_errors_as(ArchiveError, path, "cannot use this location"):
        is_directory = path.is_dir()  # a name too long for the file system fails here
    if looks_like_unsupported_archive(path) and not is_directory:
        format_for_path(path)  # raises, listing the supported extensions
    if is_directory or not is_archive_path(path):
        yield WorkingCopy(directory=path)
        return
    key = os.path.realpath(path)
    active = SESSIONS.get().get(key)
    if active is not None:
        active[1] += 1
        try:
            yield active[0]
        finally:
            active[1] -= 1
        return
    async with archive_lock_async(path):
        slot, manifest = await _enter(path, limits)
        copy = WorkingCopy(
            directory=slot.tree,
            archive=path,
            manifest=manifest,
            model=manifest.model if manifest else None,
        )
        SESSIONS.set({**SESSIONS.get(), key: [copy, 1]})
        try:
            yield copy
        except BaseException:
            # The tree may hold half-done changes: never save or cache it.
            await asyncio.shield(in_thread(slot.discard))
            raise
        else:
            try:
                await _leave(slot, copy)
            except BaseException:
                await asyncio.shield(in_thread(slot.discard))
                raise
        finally:
            SESSIONS.set({k: v for k, v in SESSIONS.get().items() if k != key})
        if not slot.cached:
            await in_thread(slot.discard)
