"""Turn tar and zip containers into one stream of :class:`Entry` objects.

Readers only describe members; every decision about them is taken by
``_extract``, so all formats pass through the same checks.
"""
import bz2
import dataclasses
import lzma
import stat
import tarfile
import zipfile
import zlib
from typing import BinaryIO, Callable, Iterator, Optional

from ._formats import Format
from .errors import CorruptArchiveError, UnsafeArchiveError, UnsupportedArchiveError

FILE, DIRECTORY = "file", "directory"
SYMLINK, HARDLINK, DEVICE, FIFO, OTHER = (
    "symbolic link", "hard link", "device file", "FIFO", "special member"
)

# What a damaged stream raises, by codec and container.
STREAM_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,  # gzip.BadGzipFile, bz2 "Invalid data stream", isal errors
    ValueError,
)
try:  # zstandard raises its own error type
    import zstandard

    STREAM_ERRORS = STREAM_ERRORS + (zstandard.ZstdError,)
except ImportError:  # pragma: no cover - zstandard is a dependency
    pass


@dataclasses.dataclass
class Entry:
    name: str
    kind: str
    size: int
    mode: int
    open: Optional[Callable[[], BinaryIO]] = None


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.issparse():
        return OTHER
    if info.isreg():
        return FILE
    if info.isdir():
        return DIRECTORY
    if info.issym():
        return SYMLINK
    if info.islnk():
        return HARDLINK
    if info.ischr() or info.isblk():
        return DEVICE
    if info.isfifo():
        return FIFO
    return OTHER


def iter_tar(fmt: Format, raw) -> Iterator[Entry]:
    stream = fmt.open_reader(raw)
    try:
        # "r|" reads strictly forward, so compressed streams never seek.
        with tarfile.open(fileobj=stream, mode="r|", bufsize=1 << 20) as bundle:
            for info in bundle:
                kind = _tar_kind(info)
                opener = None
                if kind == FILE:
                    opener = lambda info=info: bundle.extractfile(info)  # noqa: E731
                yield Entry(info.name, kind, info.size, info.mode, opener)
    finally:
        stream.close()


def _zip_kind(info: zipfile.ZipInfo) -> str:
    unix_mode = info.external_attr >> 16
    file_type = stat.S_IFMT(unix_mode) if info.create_system == 3 else 0
    if file_type == stat.S_IFLNK:
        return SYMLINK
    if file_type in (stat.S_IFCHR, stat.S_IFBLK):
        return DEVICE
    if file_type == stat.S_IFIFO:
        return FIFO
    if file_type == stat.S_IFSOCK:
        return OTHER
    if file_type == stat.S_IFDIR or info.orig_filename.endswith("/"):
        return DIRECTORY
    return FILE


def _zip_mode(info: zipfile.ZipInfo, kind: str) -> int:
    mode = (info.external_attr >> 16) & 0o7777 if info.create_system == 3 else 0
    if mode:
        return mode
    return 0o755 if kind == DIRECTORY else 0o644


def zip_infos(archive, raw):
    """The central directory in data order, with overlapping members (the
    "non-recursive zip bomb") and encryption refused up front."""
    bundle = zipfile.ZipFile(raw)
    infos = sorted(bundle.infolist(), key=lambda info: info.header_offset)
    for previous, current in zip(infos, infos[1:]):
        if previous.header_offset + previous.compress_size > current.header_offset:
            bundle.close()
            raise UnsafeArchiveError(
                archive,
                "overlaps the data of member "
                f"{previous.orig_filename!r} (overlapping-member zip bomb)",
                member=current.orig_filename,
            )
    for info in infos:
        if info.flag_bits & 0x1:
            bundle.close()
            raise UnsupportedArchiveError(
                archive, "encrypted members are not supported", member=info.orig_filename
            )
    return bundle, infos


def iter_zip(archive, raw) -> Iterator[Entry]:
    bundle, infos = zip_infos(archive, raw)
    with bundle:
        for info in infos:
            kind = _zip_kind(info)
            opener = None
            if kind == FILE:
                opener = lambda info=info: bundle.open(info)  # noqa: E731
            # orig_filename: ZipInfo.filename silently cuts names at a NUL.
            yield Entry(info.orig_filename, kind, info.file_size, _zip_mode(info, kind), opener)


def iter_entries(archive, fmt: Format, raw) -> Iterator[Entry]:
    if fmt.container == "zip":
        return iter_zip(archive, raw)
    return iter_tar(fmt, raw)


def corrupt_from(archive, error, member=None) -> CorruptArchiveError:
    reason = str(error) or type(error).__name__
    return CorruptArchiveError(
        archive,
        f"damaged or truncated archive ({reason})",
        member=member,
        hint="restore it from a good copy",
    )
