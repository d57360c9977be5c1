"""Pack a directory into an archive: scan, hash, then write atomically.

Hashing comes first so the manifest, which lists every sha256, can be the
first member: a reader then knows the full member list before any data, and
a truncated archive can never pass as complete.
"""
import contextlib
import hashlib
import operator
import os
import pathlib
import stat
import tarfile
from typing import List, Optional

from . import _constants as C
from ._atomic import atomic_write
from ._formats import Format, format_for_path, raw_deflate_compressor, worth_deflating
from ._job import Job
from ._lock import archive_lock
from ._manifest import Manifest, ManifestMember
from ._safety import DIRECTORY, FILE, Limits, MemberTracker, clean_member_name, is_within
from ._zip_writer import ZipWriter
from .errors import (
    ArchiveSourceError, ArchiveWriteError, UnsafeArchiveError, os_errors_as, parent_directory
)

_UNLIMITED = Limits(max_size=float("inf"), max_members=float("inf"), max_ratio=float("inf"))


class _SourceEntry:
    """One directory or regular file to pack (cheap to build: thousands)."""

    __slots__ = ("path", "relative", "type", "mode", "size", "mtime_ns", "sha256",
                 "deflate", "content")

    def __init__(self, path, relative, kind, st):
        self.path = path
        self.relative = relative
        self.type = kind
        self.mode = st.st_mode & C.ALLOWED_MODE_BITS
        self.size = st.st_size if kind == FILE else 0
        self.mtime_ns = st.st_mtime_ns
        self.sha256 = None
        self.deflate = True  # zip only: deflate or store (see worth_deflating)
        #: Small files' bytes, kept from the hash pass so they are read once.
        self.content = None

    def manifest_member(self) -> ManifestMember:
        return ManifestMember(self.relative, self.type, self.mode, self.size, self.sha256)


def _source_error(archive, directory, relative, reason):
    return ArchiveSourceError(
        archive, f"cannot pack {os.path.join(directory, relative)!r}: {reason}"
    )


def _scan(directory: str, archive) -> List[_SourceEntry]:
    """Every directory and regular file below ``directory``, sorted, with the
    same name rules extraction enforces; links and special files refused."""
    found = []
    pending = [("", directory)]
    while pending:
        relative_dir, absolute_dir = pending.pop()
        with os.scandir(absolute_dir) as listing:
            for entry in listing:
                relative = relative_dir + entry.name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    found.append(_SourceEntry(entry.path, relative, FILE, st))
                elif stat.S_ISDIR(st.st_mode):
                    found.append(_SourceEntry(entry.path, relative, DIRECTORY, st))
                    pending.append((relative + "/", entry.path))
                elif stat.S_ISLNK(st.st_mode):
                    raise _source_error(
                        archive, directory, relative,
                        "symbolic links are not stored; replace it with a copy "
                        "of its target",
                    )
                else:
                    raise _source_error(
                        archive, directory, relative,
                        "only regular files and directories can be stored",
                    )
    found.sort(key=operator.attrgetter("relative"))
    tracker = MemberTracker(archive, _UNLIMITED, 1)
    for entry in found:
        if entry.relative == C.MANIFEST_NAME:
            raise _source_error(
                archive, directory, entry.relative, "this name is reserved for the manifest"
            )
        try:
            tracker.add(clean_member_name(archive, entry.relative), entry.type, entry.size)
        except UnsafeArchiveError as error:
            raise _source_error(archive, directory, entry.relative, error.reason) from None
    return found


#: Files up to this size keep their bytes between the passes, within a
#: total budget, saving a second open and read per small file.
KEEP_FILE_BYTES = 64 << 10
KEEP_TOTAL_BYTES = 64 << 20
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _hash_small_file(entry: _SourceEntry, job: Job, archive, for_zip: bool) -> None:
    # os.open/os.read: a third of the cost of open() for a small file.
    descriptor = _open_descriptor(entry, archive)
    try:
        content = os.read(descriptor, entry.size + 1)
        while 0 < len(content) < entry.size:  # a short read (network file systems)
            more = os.read(descriptor, entry.size + 1 - len(content))
            if not more:
                break
            content += more
    finally:
        os.close(descriptor)
    if len(content) != entry.size:
        raise _changed(archive, entry)
    entry.content = content
    if for_zip:
        entry.deflate = worth_deflating(content)
    entry.sha256 = hashlib.sha256(content).hexdigest()
    job.advance(len(content))


def _hash_file(entry: _SourceEntry, buffer, job: Job, archive, for_zip: bool) -> None:
    digest = hashlib.sha256()
    view = memoryview(buffer)
    with _open_source(entry, archive) as handle:
        count = handle.readinto(buffer)
        if for_zip:
            entry.deflate = worth_deflating(view[:count])
        while count:
            digest.update(view[:count])
            job.advance(count)
            count = handle.readinto(buffer)
    entry.sha256 = digest.hexdigest()
    after = os.stat(entry.path)
    if (after.st_size, after.st_mtime_ns) != (entry.size, entry.mtime_ns):
        raise _changed(archive, entry)


def _open_descriptor(entry: _SourceEntry, archive) -> int:
    """The file the scan saw, never a link that replaced it since."""
    try:
        return os.open(entry.path, _OPEN_FLAGS)
    except OSError as error:
        raise _unreadable(archive, entry, error) from None


def _open_source(entry: _SourceEntry, archive):
    return open(_open_descriptor(entry, archive), "rb")


def _unreadable(archive, entry, error):
    return ArchiveSourceError(
        archive, f"cannot read {entry.path!r}: {error.strerror or error}",
        hint="check the file's permissions, or that nothing replaced it with a link",
    )


def _changed(archive, entry):
    return ArchiveSourceError(
        archive,
        f"{entry.path!r} changed while it was being packed",
        hint="pack again when nothing is writing to the directory",
    )


def _copy_file(entry: _SourceEntry, write, buffer, job: Job, archive) -> None:
    """Stream a file not kept in memory: exactly the bytes that were hashed
    (same size and mtime)."""
    remaining = entry.size
    view = memoryview(buffer)
    with _open_source(entry, archive) as handle:
        while remaining:
            count = handle.readinto(buffer)
            if not count:
                raise _changed(archive, entry)
            count = min(count, remaining)
            write(view[:count])
            remaining -= count
            job.advance(count)
        after = os.fstat(handle.fileno())
    if (after.st_size, after.st_mtime_ns) != (entry.size, entry.mtime_ns):
        raise _changed(archive, entry)


# A ustar header of ours differs from member to member only in name, mode,
# size and type; everything else (owner 0, fixed mtime, empty link, user and
# group names) is fixed, so it is built once.  Same bytes as tarfile's
# USTAR_FORMAT (a test compares them), at a tenth of the cost.
_USTAR_OWNER = b"0000000\0" * 2
_USTAR_MTIME = b"%011o\0" % C.FIXED_MTIME
_USTAR_AFTER_TYPE = (
    b"\0" * 100 + b"ustar\x0000" + b"\0" * 64 + b"0000000\0" * 2 + b"\0" * 167
)
_USTAR_FIXED_SUM = sum(_USTAR_OWNER) + sum(_USTAR_MTIME) + sum(b" " * 8) + sum(_USTAR_AFTER_TYPE)
_USTAR_TYPE = {FILE: b"0", DIRECTORY: b"5"}
_USTAR_MAX_SIZE = 8 ** 11  # 11 octal digits


def _ustar_header(name: bytes, kind: str, mode: int, size: int) -> bytes:
    mode_field = b"%07o\0" % mode
    size_field = b"%011o\0" % size
    typeflag = _USTAR_TYPE[kind]
    checksum = _USTAR_FIXED_SUM + sum(name) + sum(mode_field) + sum(size_field) + typeflag[0]
    return b"".join((
        name.ljust(100, b"\0"), mode_field, _USTAR_OWNER, size_field, _USTAR_MTIME,
        b"%06o\0 " % checksum, typeflag, _USTAR_AFTER_TYPE,
    ))


def _tar_header(name: str, kind: str, mode: int, size: int) -> bytes:
    if len(name) <= tarfile.LENGTH_NAME and name.isascii() and size < _USTAR_MAX_SIZE:
        return _ustar_header(name.encode("ascii"), kind, mode, size)
    # PAX for long or non-ASCII names and huge files.
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if kind == DIRECTORY else tarfile.REGTYPE
    info.mode = mode
    info.size = size
    info.mtime = C.FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return tarfile.NUL * (-size % tarfile.BLOCKSIZE)


def _write_tar(stream, manifest_bytes, entries, job, archive):
    """Members go out in batches of about CHUNK_SIZE bytes: one codec call
    per batch instead of three per small file."""
    written = 0
    batch = bytearray()

    def flush():
        nonlocal batch, written
        if batch:
            stream.write(batch)
            written += len(batch)
            batch = bytearray()  # the stream may still hold the old one

    def write_through(data):
        nonlocal written
        stream.write(data)
        written += len(data)

    batch += _tar_header(C.MANIFEST_NAME, FILE, 0o644, len(manifest_bytes))
    batch += manifest_bytes
    batch += _padding(len(manifest_bytes))
    buffer = None
    for entry in entries:
        if entry.type == DIRECTORY:
            batch += _tar_header(entry.relative + "/", DIRECTORY, entry.mode, 0)
            continue
        batch += _tar_header(entry.relative, FILE, entry.mode, entry.size)
        if entry.content is not None:
            batch += entry.content
            job.advance(entry.size)
        else:
            flush()
            buffer = buffer or bytearray(C.CHUNK_SIZE)
            _copy_file(entry, write_through, buffer, job, archive)
        batch += _padding(entry.size)
        if len(batch) >= C.CHUNK_SIZE:
            flush()
    # End of archive: two zero blocks, then pad to a whole record like tar(1).
    batch += tarfile.NUL * (2 * tarfile.BLOCKSIZE)
    batch += tarfile.NUL * (-(written + len(batch)) % tarfile.RECORDSIZE)
    flush()


def _zip_external_attr(kind, mode) -> int:
    if kind == DIRECTORY:
        return ((stat.S_IFDIR | mode) << 16) | 0x10  # 0x10: the MS-DOS directory flag
    return (stat.S_IFREG | mode) << 16


def _write_zip(raw, manifest_bytes, entries, job, archive, level=None):
    bundle = ZipWriter(raw, lambda: raw_deflate_compressor(level))
    bundle.add_bytes(C.MANIFEST_NAME, _zip_external_attr(FILE, 0o644), manifest_bytes, True)
    buffer = None
    for entry in entries:
        attr = _zip_external_attr(entry.type, entry.mode)
        if entry.type == DIRECTORY:
            bundle.add_directory(entry.relative + "/", attr)
        elif entry.content is not None:
            bundle.add_bytes(entry.relative, attr, entry.content, entry.deflate)
            job.advance(entry.size)
        else:
            buffer = buffer or bytearray(C.CHUNK_SIZE)
            bundle.add_stream(
                entry.relative, attr, entry.size, entry.deflate,
                lambda write, entry=entry: _copy_file(entry, write, buffer, job, archive),
            )
    bundle.close()


def pack_directory(
    directory,
    archive,
    *,
    model: Optional[dict] = None,
    level: Optional[int] = None,
    job: Optional[Job] = None,
    fmt: Optional[Format] = None,
    caller_holds_lock: bool = False,
) -> Manifest:
    """Pack ``directory`` into ``archive`` atomically; return its manifest.
    ``caller_holds_lock``: the caller already holds the archive's lock."""
    job = job or Job()
    archive = pathlib.Path(archive)
    fmt = fmt or format_for_path(archive)
    fmt.check_level(archive, level)
    directory = os.fspath(directory)
    if not directory:  # "" would silently mean the current directory
        raise ArchiveSourceError(
            archive, "the directory to pack is an empty path", hint="name the model directory"
        )
    if not os.path.isdir(directory):
        raise ArchiveSourceError(
            archive, f"{directory!r} is not a directory", hint="give the model directory to pack"
        )
    if archive.is_dir():
        raise ArchiveWriteError(
            archive, "is a directory, not an archive file",
            hint="name a new archive file: pack takes DIRECTORY, then ARCHIVE",
        )
    if is_within(os.path.dirname(os.path.realpath(archive)), directory):  # a link's file too
        raise ArchiveSourceError(
            archive,
            f"the archive would be written inside {directory!r}, the directory being packed",
            hint="write the archive outside the directory",
        )
    with os_errors_as(ArchiveWriteError, archive, f"cannot create {parent_directory(archive)!r}"):
        archive.parent.mkdir(parents=True, exist_ok=True)
    entries = _scan(directory, archive)
    _hash_files(entries, job, archive, for_zip=fmt.container == "zip")
    manifest = Manifest([entry.manifest_member() for entry in entries], model=model)
    manifest_bytes = manifest.to_bytes()
    held = contextlib.nullcontext() if caller_holds_lock else archive_lock(archive)
    with held:
        _write_archive(archive, fmt, level, manifest_bytes, entries, job)
    return manifest


def _write_archive(archive, fmt: Format, level, manifest_bytes, entries, job) -> None:
    """Write the hashed ``entries`` after the manifest, atomically (the
    caller holds the archive's lock)."""
    with atomic_write(archive) as raw:
        if fmt.container == "zip":
            _write_zip(raw, manifest_bytes, entries, job, archive, level)
        else:
            stream = fmt.open_writer(raw, level)
            try:
                _write_tar(stream, manifest_bytes, entries, job, archive)
            finally:
                stream.close()
    job.finish()


def _hash_files(entries, job, archive, for_zip):
    files = [entry for entry in entries if entry.type == FILE]
    job.start(2 * sum(entry.size for entry in files))
    buffer = None
    kept = 0
    for entry in files:
        if entry.size <= KEEP_FILE_BYTES and kept < KEEP_TOTAL_BYTES:
            _hash_small_file(entry, job, archive, for_zip)
            kept += entry.size
        else:
            buffer = buffer or bytearray(C.CHUNK_SIZE)
            _hash_file(entry, buffer, job, archive, for_zip)


def pack_stored(stored, archive, manifest_bytes: bytes, *, level=None, job=None, mismatch=None):
    """Write ``archive`` (atomically, format from its name) from stored
    files rather than a directory: a repository image.  ``stored`` is the
    manifest's members in order, each with the path of a file holding its
    bytes (None for directories); ``manifest_bytes`` goes in as is, so one
    image always packs to the same bytes.  Every file is hashed before it is
    written and must match its member's sha256: else ``mismatch(member,
    actual_sha256)`` is raised."""
    job = job or Job()
    archive = pathlib.Path(archive)
    fmt = format_for_path(archive)
    fmt.check_level(archive, level)
    entries = []
    for member, path in stored:
        st = os.stat(path if path is not None else archive.parent)
        entry = _SourceEntry(path, member.path, member.type, st)
        entry.mode = member.mode
        entries.append(entry)
    _hash_files(entries, job, archive, for_zip=fmt.container == "zip")
    for (member, _), entry in zip(stored, entries):
        if member.type == FILE and entry.sha256 != member.sha256:
            raise mismatch(member, entry.sha256)
    with archive_lock(archive):
        _write_archive(archive, fmt, level, manifest_bytes, entries, job)


def scanned_tree(directory, subject):
    """The members of ``directory`` as packing would list them (same rules:
    no links, no special files, safe names), each with its file's path and
    without its sha256; ``subject`` is what errors name."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ArchiveSourceError(subject, f"{directory!r} is not a directory")
    return [(entry.manifest_member(), entry.path if entry.type == FILE else None)
            for entry in _scan(directory, subject)]

