"""Extract and verify: one fail-closed loop for every format.

Extraction writes into a fresh private directory beside the destination and
renames it into place only after every member passed every check and the
content matched the manifest, so a failure leaves the destination as it was.
Verification runs the same loop with a sink that writes nothing.
"""
import contextlib
import dataclasses
import errno
import hashlib
import os
import pathlib
import re
import shutil
import tempfile
import warnings
from typing import List, Optional

from . import _constants as C
from ._atomic import (
    current_umask, hidden_sibling_prefix, hold_directory, remove_abandoned_directories,
    swap_in_directory,
)
from ._formats import check_content, format_for_path
from ._job import Job
from ._manifest import Manifest, ManifestMember
from ._readers import (
    DIRECTORY, FILE, STREAM_ERRORS, Entry, MissingEndOfArchive, corrupt_from, iter_entries
)
from ._readers import open_archive_file
from ._safety import (
    Limits,
    MemberTracker,
    clean_member_name,
    is_within,
    sanitized_dir_mode,
    sanitized_file_mode,
)
from .errors import (
    ArchiveError,
    ArchiveLimitError,
    CorruptArchiveError,
    DestinationError,
    UnsafeArchiveError,
    UnverifiedArchiveWarning,
    explain_os_error,
    os_errors_as,
)

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _NullSink:
    """Verification: hash everything, write nothing."""

    def directory(self, name, mode):
        pass

    @contextlib.contextmanager
    def file(self, name, mode):
        yield lambda data: None

    def finish(self):
        pass


class _DiskSink:
    """Writes members below ``root``, a fresh directory only we have touched:
    names are already clean and no links exist, so nothing can escape it."""

    def __init__(self, archive, root, shown_root):
        self.archive = archive
        self.root = root
        self.shown_root = shown_root  # the destination as the user knows it
        self._made = {""}
        self._dir_modes = {}

    def _ensure_parent(self, name):
        parent = name.rpartition("/")[0]
        if parent not in self._made:
            try:
                os.makedirs(os.path.join(self.root, parent), mode=C.OWNER_DIR_BITS, exist_ok=True)
            except OSError as error:
                raise self._write_error(parent, error) from None
            while parent not in self._made:
                self._made.add(parent)
                parent = parent.rpartition("/")[0]

    def directory(self, name, mode):
        self._ensure_parent(name + "/x")
        self._dir_modes[name] = sanitized_dir_mode(mode)

    @contextlib.contextmanager
    def file(self, name, mode):
        self._ensure_parent(name)
        path = os.path.join(self.root, name)
        try:
            fd = os.open(path, _OPEN_FLAGS, sanitized_file_mode(mode))
        except OSError as error:
            raise self._write_error(name, error) from None
        try:
            with open(fd, "wb", buffering=0, closefd=True) as handle:
                yield handle.write
        except OSError as error:
            raise self._write_error(name, error) from None

    def _write_error(self, name, error):
        reason, hint = explain_os_error(error, f"cannot write it into {str(self.shown_root)!r}")
        cache = os.fspath(C.cache_root())
        if is_within(self.shown_root, cache):
            hint = (f"the extraction cache is in {cache!r}: free space there, "
                    "or set DFFML_ARCHIVE_CACHE")
        return DestinationError(self.archive, reason, member=name, hint=hint)

    def finish(self):
        # Deepest first, so a read-only parent never blocks its children.
        # The umask applies, as it did to the files (os.open).
        umask = current_umask()
        for name in sorted(self._dir_modes, key=lambda n: n.count("/"), reverse=True):
            mode = self._dir_modes[name] & ~umask
            if mode != C.OWNER_DIR_BITS:
                os.chmod(os.path.join(self.root, name), mode)


def _refuse_kind(archive, entry, name):
    raise UnsafeArchiveError(
        archive,
        f"{entry.kind}s are refused (only regular files and directories are extracted)",
        member=name or entry.name,
    )


def _read_manifest(archive, entry: Entry) -> Manifest:
    if entry.size > C.MAX_MANIFEST_BYTES:
        raise ArchiveLimitError(archive, "manifest is implausibly large", member=entry.name)
    return Manifest.from_bytes(archive, b"".join(bytes(chunk) for chunk in entry.chunks()))


def _copy_member(archive, entry, name, sink, tracker, job) -> ManifestMember:
    digest = hashlib.sha256()
    copied = 0
    with sink.file(name, entry.mode) as write:
        for chunk in entry.chunks():
            copied += len(chunk)
            tracker.wrote(len(chunk), name)
            digest.update(chunk)
            write(chunk)
            job.advance(len(chunk))
    if copied != entry.size:
        raise CorruptArchiveError(
            archive, f"holds {copied} bytes but its header says {entry.size}", member=name
        )
    return ManifestMember(name, FILE, entry.mode & 0o7777, copied, digest.hexdigest())


def _walk(archive, limits: Limits, sink, job: Job):
    """Read every member through the checks into ``sink``.  Returns the
    archive's own manifest (or None) and what was actually found."""
    fmt = format_for_path(archive)
    found: List[ManifestMember] = []
    expected: Optional[Manifest] = None
    current = None
    try:
        with open_archive_file(archive) as raw:
            check_content(archive, fmt, raw)
            tracker = MemberTracker(archive, limits, os.fstat(raw.fileno()).st_size)
            for index, entry in enumerate(iter_entries(archive, fmt, raw)):
                current = entry.name
                if index == 0 and entry.name == C.MANIFEST_NAME and entry.kind == FILE:
                    expected = _read_manifest(archive, entry)
                    tracker.expect({m.path: m.size for m in expected.members if m.type == FILE})
                    job.start(expected.total_size)
                    continue
                if index == 0:
                    job.start(None)
                name = clean_member_name(archive, entry.name)
                if name == C.MANIFEST_NAME:
                    raise UnsafeArchiveError(
                        archive, "the manifest name is reserved for the first member",
                        member=entry.name,
                    )
                if entry.kind not in (FILE, DIRECTORY) or (name is None and entry.kind != DIRECTORY):
                    _refuse_kind(archive, entry, name)
                if name is None:
                    continue  # the archive's root directory entry ("./")
                tracker.add(name, entry.kind, entry.size if entry.kind == FILE else 0)
                if entry.kind == DIRECTORY:
                    sink.directory(name, entry.mode)
                    found.append(ManifestMember(name, DIRECTORY, entry.mode & 0o7777))
                else:
                    found.append(_copy_member(archive, entry, name, sink, tracker, job))
            current = None
    except ArchiveError:
        raise
    except MissingEndOfArchive as error:
        if expected is not None:
            _compare(archive, expected, found)  # names the missing members, if any
        raise corrupt_from(archive, error) from None
    except STREAM_ERRORS as error:
        raise corrupt_from(archive, error, current) from None
    return expected, found


def _compare(archive, expected: Manifest, found: List[ManifestMember]) -> None:
    listed = expected.by_path()
    for member in found:
        want = listed.pop(member.path, None)
        if want is None:
            raise CorruptArchiveError(
                archive, "is not listed in the manifest (tampered?)", member=member.path
            )
        if want.type != member.type:
            problem = f"is a {member.type} but the manifest says {want.type}"
        elif want.size != member.size or want.sha256 != member.sha256:
            problem = "content does not match the manifest's size and sha256 (tampered or damaged)"
        elif want.mode != member.mode:
            problem = f"mode {member.mode:04o} differs from the manifest's {want.mode:04o}"
        else:
            continue
        raise CorruptArchiveError(archive, problem, member=member.path)
    if listed:
        missing = sorted(listed)[0]
        raise CorruptArchiveError(
            archive,
            f"listed in the manifest but missing ({len(listed)} member(s) missing: "
            "truncated archive?)",
            member=missing,
            hint="restore it from a good copy",
        )


def read_archive(archive, limits: Optional[Limits], sink, job: Optional[Job]) -> Manifest:
    job = job or Job()
    expected, found = _walk(archive, limits or Limits(), sink, job)
    if expected is None:
        warnings.warn(
            UnverifiedArchiveWarning(
                f"{archive}: no dffml-archive manifest (made by another tool): "
                "extracted through the safety checks, but sizes and hashes "
                "could not be verified"
            ),
            stacklevel=3,
        )
        result = Manifest(found, model=None, created_by={})
    else:
        _compare(archive, expected, found)
        result = dataclasses.replace(expected, members=found)
    result.verified = expected is not None
    job.finish()
    return result


def verify_archive(archive, *, limits=None, job=None) -> Manifest:
    """Read every member through every check without writing anything."""
    return read_archive(archive, limits, _NullSink(), job)


def _check_destination(archive, destination: pathlib.Path, replace: bool) -> None:
    if replace and is_within(archive, destination):
        raise DestinationError(
            archive,
            f"the archive is inside {str(destination)!r}: replacing that directory "
            "would delete the archive",
            hint="extract into another directory",
        )
    if destination.is_symlink() or (destination.exists() and not destination.is_dir()):
        raise DestinationError(
            archive,
            f"destination {str(destination)!r} exists and is not a directory",
            hint="choose a new or empty directory",
        )
    if not replace and destination.is_dir() and _has_entries(destination):
        raise DestinationError(
            archive,
            f"destination {str(destination)!r} is not empty",
            hint="choose a new or empty directory, or replace it (--replace, replace=True)",
        )


def _has_entries(directory) -> bool:
    with os.scandir(directory) as entries:  # closed even when any() stops early
        return any(entries)


def _move_into_place(archive, stage: str, destination: pathlib.Path, replace: bool):
    try:
        os.rename(stage, destination)  # also replaces an empty directory
        return
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not replace:
            raise DestinationError(
                archive, f"cannot move the extracted tree to {str(destination)!r}: {error}"
            ) from None
    with os_errors_as(DestinationError, archive, f"cannot replace {str(destination)!r}"):
        swap_in_directory(stage, destination)


def extract_archive(
    archive, destination, *, limits=None, replace=False, private=False, job=None
) -> Manifest:
    """Extract ``archive`` into ``destination`` (created if missing, must be
    empty unless ``replace``).  ``private`` keeps the tree mode 0700."""
    if not os.fspath(destination):  # "" would silently mean the current directory
        raise DestinationError(
            archive, "the destination is an empty path", hint="name the directory to extract into"
        )
    destination = pathlib.Path(os.path.abspath(destination))
    _check_destination(archive, destination, replace)
    created = [p for p in destination.parents if not p.exists()]
    try:
        with os_errors_as(DestinationError, archive, f"cannot create {str(destination)!r}"):
            destination.parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned_stages(destination)
            stage = tempfile.mkdtemp(
                dir=destination.parent, prefix=hidden_sibling_prefix(destination.name),
                suffix=".extracting",
            )
            hold = hold_directory(stage)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        sink = _DiskSink(archive, stage, destination)
        manifest = read_archive(archive, limits, sink, job)
        sink.finish()
        if not private:
            os.chmod(stage, 0o777 & ~current_umask())
        _move_into_place(archive, stage, destination, replace)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_empty(created)  # a failure leaves no trace, parents included
        raise
    finally:
        os.close(hold)
    return manifest


def _remove_abandoned_stages(destination: pathlib.Path) -> None:
    """A process killed while extracting to ``destination`` leaves its staging
    directory beside it: remove those whose owner is gone.  (Never ``.old``
    ones: killed at the wrong moment of a replace without renameat2, one
    holds the only copy of the previous tree.)"""
    pattern = re.compile(
        re.escape(hidden_sibling_prefix(destination.name)) + r"[A-Za-z0-9_]{8}\.extracting"
    )
    remove_abandoned_directories(destination.parent, pattern, C.STAGE_GRACE_SECONDS)


def _remove_empty(directories) -> None:
    for directory in directories:  # deepest first, as Path.parents lists them
        with contextlib.suppress(OSError):
            directory.rmdir()
