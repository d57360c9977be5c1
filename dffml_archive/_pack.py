"""Pack a directory into an archive: scan, hash, then write atomically.

Hashing comes first so the manifest, which lists every sha256, can be the
first member: a reader then knows the full member list before any data, and
a truncated archive can never pass as complete.
"""
import contextlib
import dataclasses
import hashlib
import io
import os
import pathlib
import stat
import tarfile
import zipfile
from typing import List, Optional

from . import _constants as C
from ._atomic import atomic_write
from ._formats import Format, format_for_path, raw_deflate_compressor, worth_deflating
from ._job import Job
from ._lock import archive_lock
from ._manifest import Manifest, ManifestMember
from ._safety import DIRECTORY, FILE, Limits, MemberTracker, clean_member_name
from .errors import ArchiveSourceError, UnsafeArchiveError

_UNLIMITED = Limits(max_size=float("inf"), max_members=float("inf"), max_ratio=float("inf"))


@dataclasses.dataclass
class _SourceEntry:
    member: ManifestMember
    path: str
    stat: Optional[os.stat_result] = None
    deflate: bool = True  # zip only: deflate or store (see worth_deflating)
    #: Small files' bytes, kept from the hash pass so they are read once.
    content: Optional[bytes] = None


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
                relative = f"{relative_dir}{entry.name}"
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    found.append((relative, DIRECTORY, entry.path, st))
                    pending.append((relative + "/", entry.path))
                elif stat.S_ISREG(st.st_mode):
                    found.append((relative, FILE, entry.path, st))
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
    found.sort(key=lambda item: item[0])
    tracker = MemberTracker(archive, _UNLIMITED, 1)
    entries = []
    for relative, kind, path, st in found:
        if relative == C.MANIFEST_NAME:
            raise _source_error(
                archive, directory, relative, "this name is reserved for the manifest"
            )
        try:
            clean = clean_member_name(archive, relative)
            tracker.add(clean, kind, st.st_size if kind == FILE else 0)
        except UnsafeArchiveError as error:
            raise _source_error(archive, directory, relative, error.reason) from None
        mode = st.st_mode & C.ALLOWED_MODE_BITS
        member = ManifestMember(relative, kind, mode, st.st_size if kind == FILE else 0)
        entries.append(_SourceEntry(member, path, st))
    return entries


#: Files up to this size keep their bytes between the passes, within a
#: total budget, saving a second open and read per small file.
KEEP_FILE_BYTES = 64 << 10
KEEP_TOTAL_BYTES = 64 << 20


def _hash_small_file(entry: _SourceEntry, job: Job, archive) -> None:
    with open(entry.path, "rb") as handle:
        content = handle.read()
    if len(content) != entry.stat.st_size:
        raise _changed(archive, entry)
    entry.content = content
    entry.deflate = worth_deflating(content)
    entry.member = dataclasses.replace(entry.member, sha256=hashlib.sha256(content).hexdigest())
    job.advance(len(content))


def _hash_file(entry: _SourceEntry, buffer, job: Job, archive) -> None:
    digest = hashlib.sha256()
    view = memoryview(buffer)
    with open(entry.path, "rb") as handle:
        count = handle.readinto(buffer)
        entry.deflate = worth_deflating(view[:count])
        while count:
            digest.update(view[:count])
            job.advance(count)
            count = handle.readinto(buffer)
    entry.member = dataclasses.replace(entry.member, sha256=digest.hexdigest())
    after = os.stat(entry.path)
    if (after.st_size, after.st_mtime_ns) != (entry.stat.st_size, entry.stat.st_mtime_ns):
        raise _changed(archive, entry)


def _changed(archive, entry):
    return ArchiveSourceError(
        archive,
        f"{entry.path!r} changed while it was being packed",
        hint="pack again when nothing is writing to the directory",
    )


def _copy_file(entry: _SourceEntry, write, buffer, job: Job, archive) -> None:
    """Write exactly the bytes that were hashed (same size and mtime)."""
    if entry.content is not None:
        write(entry.content)
        job.advance(len(entry.content))
        return
    remaining = entry.member.size
    view = memoryview(buffer)
    with open(entry.path, "rb") as handle:
        while remaining:
            count = handle.readinto(buffer)
            if not count:
                raise _changed(archive, entry)
            count = min(count, remaining)
            write(view[:count])
            remaining -= count
            job.advance(count)
        after = os.fstat(handle.fileno())
    if (after.st_size, after.st_mtime_ns) != (entry.stat.st_size, entry.stat.st_mtime_ns):
        raise _changed(archive, entry)


def _tar_info(name, kind, mode, size):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if kind == DIRECTORY else tarfile.REGTYPE
    info.mode = mode
    info.size = size if kind == FILE else 0
    info.mtime = C.FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(stream, manifest_bytes, entries, job, archive):
    position = 0
    buffer = bytearray(C.CHUNK_SIZE)

    def write(data):
        nonlocal position
        stream.write(data)
        position += len(data)

    def header(name, kind, mode, size):
        info = _tar_info(name, kind, mode, size)
        # Plain ustar when it can hold the member (5x cheaper to build);
        # PAX only for long or non-ASCII names and huge files.
        simple = len(name) <= tarfile.LENGTH_NAME and name.isascii() and size < 8 << 30
        write(info.tobuf(tarfile.USTAR_FORMAT if simple else tarfile.PAX_FORMAT,
                         "utf-8", "surrogateescape"))

    def pad(size):
        remainder = size % tarfile.BLOCKSIZE
        if remainder:
            write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))

    header(C.MANIFEST_NAME, FILE, 0o644, len(manifest_bytes))
    write(manifest_bytes)
    pad(len(manifest_bytes))
    for entry in entries:
        member = entry.member
        if member.type == DIRECTORY:
            header(member.path + "/", DIRECTORY, member.mode, 0)
            continue
        header(member.path, FILE, member.mode, member.size)
        _copy_file(entry, write, buffer, job, archive)
        pad(member.size)
    # End of archive: two zero blocks, then pad to a whole record like tar(1).
    write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
    if position % tarfile.RECORDSIZE:
        write(tarfile.NUL * (tarfile.RECORDSIZE - position % tarfile.RECORDSIZE))


def _zip_info(name, kind, mode, size, deflate=True):
    info = zipfile.ZipInfo(name, date_time=C.FIXED_ZIP_DATE_TIME)
    info.create_system = 3  # unix, so external_attr carries the mode
    if kind == DIRECTORY:
        info.external_attr = ((stat.S_IFDIR | mode) << 16) | 0x10
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.external_attr = (stat.S_IFREG | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        info.file_size = size
    return info


def _write_zip(raw, manifest_bytes, entries, job, archive, level=None):
    buffer = bytearray(C.CHUNK_SIZE)
    with zipfile.ZipFile(raw, "w", allowZip64=True) as bundle:
        bundle.writestr(
            _zip_info(C.MANIFEST_NAME, FILE, 0o644, len(manifest_bytes)), manifest_bytes
        )
        for entry in entries:
            member = entry.member
            if member.type == DIRECTORY:
                bundle.writestr(_zip_info(member.path + "/", DIRECTORY, member.mode, 0), b"")
                continue
            info = _zip_info(member.path, FILE, member.mode, member.size, entry.deflate)
            with bundle.open(info, "w") as out:
                if entry.deflate:
                    # zipfile has no compressor hook; its writer only calls
                    # compress() and flush(), which ISA-L's object provides.
                    out._compressor = raw_deflate_compressor(level)
                _copy_file(entry, out.write, buffer, job, archive)


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
    if not os.path.isdir(directory):
        raise ArchiveSourceError(
            archive, f"{directory!r} is not a directory", hint="give the model directory to pack"
        )
    inside = os.path.realpath(os.path.dirname(os.path.abspath(archive)))
    if (inside + os.sep).startswith(os.path.realpath(directory) + os.sep):
        raise ArchiveSourceError(
            archive,
            f"the archive would be written inside {directory!r}, the directory being packed",
            hint="write the archive outside the directory",
        )
    archive.parent.mkdir(parents=True, exist_ok=True)
    entries = _scan(directory, archive)
    files = [entry for entry in entries if entry.member.type == FILE]
    total = sum(entry.member.size for entry in files)
    job.start(2 * total)
    buffer = bytearray(C.CHUNK_SIZE)
    kept = 0
    for entry in files:
        if entry.member.size <= KEEP_FILE_BYTES and kept < KEEP_TOTAL_BYTES:
            _hash_small_file(entry, job, archive)
            kept += entry.member.size
        else:
            _hash_file(entry, buffer, job, archive)
    manifest = Manifest([entry.member for entry in entries], model=model)
    manifest_bytes = manifest.to_bytes()
    held = contextlib.nullcontext() if caller_holds_lock else archive_lock(archive)
    with held, atomic_write(archive) as raw:
        if fmt.container == "zip":
            _write_zip(raw, manifest_bytes, entries, job, archive, level)
        else:
            stream = fmt.open_writer(raw, level)
            try:
                _write_tar(stream, manifest_bytes, entries, job, archive)
            finally:
                stream.close()
    job.finish()
    return manifest
