"""Turn tar and zip containers into one stream of :class:`Entry` objects.

Readers only describe members; every decision about them is taken by
``_extract``, so all formats pass through the same checks.
"""
import dataclasses
import functools
import lzma
import stat
import tarfile
import zipfile
import zlib
from typing import Callable, Iterator, Optional

from ._constants import CHUNK_SIZE, MANIFEST_NAME
from ._formats import Format, raw_deflate_decompressor
from ._safety import DIRECTORY, FILE  # noqa: F401 (readers' Entry.kind values)
from .errors import (
    ArchiveError, CorruptArchiveError, UnsafeArchiveError, UnsupportedArchiveError,
    explain_os_error,
)

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
try:  # and so does ISA-L (gzip and zip's deflate), an Exception of its own
    from isal.igzip_lib import IsalError

    STREAM_ERRORS = STREAM_ERRORS + (IsalError,)
except ImportError:  # pragma: no cover - zlib's errors are listed above
    pass
#: zipfile's word for a compression method or encryption it cannot read.
UNREADABLE_ZIP_FEATURE = NotImplementedError
STREAM_ERRORS = STREAM_ERRORS + (UNREADABLE_ZIP_FEATURE,)


@dataclasses.dataclass
class Entry:
    name: str
    kind: str
    size: int
    mode: int
    #: For files: yields the content in chunks (views of a reused buffer:
    #: consume each before asking for the next).
    chunks: Optional[Callable[[], Iterator[bytes]]] = None


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


class _ForwardStream:
    """Exact-size reads from a decompressed stream, counting the position
    (codec readers may return short reads)."""

    def __init__(self, stream):
        self.stream = stream
        self.position = 0

    def read(self, size: int) -> bytes:
        parts, wanted = [], size
        while wanted:
            data = self.stream.read(wanted)
            if not data:
                break
            parts.append(data)
            wanted -= len(data)
        data = b"".join(parts)
        self.position += len(data)
        return data

    def readinto(self, view) -> int:
        filled = 0
        while filled < len(view):
            count = self.stream.readinto(view[filled:])
            if not count:
                break
            filled += count
        self.position += filled
        return filled

    def tell(self) -> int:
        return self.position


class MissingEndOfArchive(tarfile.ReadError):
    """A tar stream that ends at a member boundary: cut off there (the reader
    of a manifest can name what is missing)."""


class _TarHeaders:
    """The little of a TarFile that ``TarInfo.fromtarfile`` needs, so the
    stdlib parses headers (ustar, pax, GNU long names) while the data is
    read straight from the stream, without tarfile's extra buffer copies."""

    encoding = "utf-8"
    errors = "surrogateescape"

    def __init__(self, stream):
        self.fileobj = _ForwardStream(stream)
        self.pax_headers = {}
        self.offset = 0

    def next_member(self) -> Optional[tarfile.TarInfo]:
        try:
            return tarfile.TarInfo.fromtarfile(self)
        except tarfile.EOFHeaderError:
            return None  # a zero block: the end-of-archive marker begins
        except tarfile.EmptyHeaderError:
            if self.fileobj.position == 0:
                raise tarfile.ReadError("empty file") from None
            # A cut at a member boundary looks the same: fail closed.
            raise MissingEndOfArchive(
                "the archive ends without tar's end-of-archive marker (truncated)"
            ) from None

    def check_end(self, view, whole_records: bool) -> None:
        """Read the rest of the stream after the first zero block (which also
        makes the codec check its own end: checksums, frame ends): only
        zeros, at least the second zero block of the marker, whole blocks,
        and for archives we wrote whole records, as we pad them.  Anything
        less is a cut-off archive; anything else was not written as tar."""
        marker_start = self.fileobj.position - tarfile.BLOCKSIZE
        while True:
            count = self.fileobj.readinto(view)
            if not count:
                break
            if view[:count].tobytes().count(0) != count:
                raise tarfile.ReadError("data after the end-of-archive marker")
        end = self.fileobj.position
        block = tarfile.RECORDSIZE if whole_records else tarfile.BLOCKSIZE
        if end - marker_start < 2 * tarfile.BLOCKSIZE or end % block:
            raise tarfile.ReadError("the end-of-archive marker is cut off (truncated)")


class _MemberData:
    def __init__(self, stream: _ForwardStream, size: int, view):
        self.stream = stream
        self.remaining = size
        self.view = view

    def chunks(self):
        while self.remaining:
            part = self.view[: min(self.remaining, len(self.view))]
            count = self.stream.readinto(part)
            if count != len(part):
                raise tarfile.ReadError("unexpected end of data")
            self.remaining -= count
            yield part

    def skip_rest(self, padding: int) -> None:
        for _ in self.chunks():
            pass
        if padding and len(self.stream.read(padding)) != padding:
            raise tarfile.ReadError("unexpected end of data")


def iter_tar(fmt: Format, raw) -> Iterator[Entry]:
    stream = fmt.open_reader(raw)
    view = memoryview(bytearray(CHUNK_SIZE))
    try:
        headers = _TarHeaders(stream)
        ours = None  # archives we write start with the manifest
        while True:
            info = headers.next_member()
            if info is None:
                headers.check_end(view, whole_records=bool(ours))
                return
            if ours is None:
                ours = info.name == MANIFEST_NAME
            kind = _tar_kind(info)
            if kind != FILE:
                yield Entry(info.name, kind, info.size, info.mode)
                continue
            data = _MemberData(headers.fileobj, info.size, view)
            yield Entry(info.name, kind, info.size, info.mode, data.chunks)
            data.skip_rest(-info.size % tarfile.BLOCKSIZE)
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
    unix_mode = info.external_attr >> 16
    if info.create_system == 3 and unix_mode:
        return unix_mode & 0o7777  # even 0000: made by a unix tool, meant
    return 0o755 if kind == DIRECTORY else 0o644


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The member name as its writer meant it.  Without the UTF-8 flag
    (bit 11) zipfile decodes names as cp437, but Info-ZIP's zip on Linux
    writes UTF-8 without setting the flag: undo cp437 when the bytes are UTF-8.
    ``orig_filename``: ZipInfo.filename silently cuts names at a NUL."""
    name = info.orig_filename
    if not info.flag_bits & 0x800:
        try:
            return name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name


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


def _zip_chunks(bundle, info):
    with bundle.open(info) as member:
        if info.compress_type == zipfile.ZIP_DEFLATED:
            # As in _pack: swap in ISA-L's zlib-compatible object before
            # the first read (zipfile has no hook for it).
            member._decompressor = raw_deflate_decompressor()
        while True:
            data = member.read(CHUNK_SIZE)
            if not data:
                return
            yield data


def iter_zip(archive, raw) -> Iterator[Entry]:
    bundle, infos = zip_infos(archive, raw)
    with bundle:
        for info in infos:
            kind = _zip_kind(info)
            chunks = functools.partial(_zip_chunks, bundle, info) if kind == FILE else None
            yield Entry(_zip_name(info), kind, info.file_size, _zip_mode(info, kind), chunks)


def iter_entries(archive, fmt: Format, raw) -> Iterator[Entry]:
    if fmt.container == "zip":
        return iter_zip(archive, raw)
    return iter_tar(fmt, raw)


def open_archive_file(archive):
    """``open(archive, "rb")``, failing with what is wrong with the path
    (missing, a directory, unreadable) rather than calling it damaged."""
    try:
        return open(archive, "rb")
    except FileNotFoundError:
        reason, hint = "no such archive", "check the path"
    except IsADirectoryError:
        reason, hint = "is a directory, not an archive file", "give the archive file's path"
    except OSError as error:
        reason, hint = explain_os_error(error, "cannot be read", reading=True)
    raise ArchiveError(archive, reason, hint=hint)


def corrupt_from(archive, error, member=None) -> ArchiveError:
    """The one error for whatever a damaged stream raised (``error`` is one
    of :data:`STREAM_ERRORS`)."""
    reason = str(error) or type(error).__name__
    if isinstance(error, UNREADABLE_ZIP_FEATURE):
        return UnsupportedArchiveError(
            archive, f"uses a zip feature that cannot be read ({reason})", member=member,
            hint="re-create it as a plain zip (deflate or stored, no encryption)",
        )
    return CorruptArchiveError(
        archive,
        f"damaged or truncated archive ({reason})",
        member=member,
        hint="restore it from a good copy",
    )
