"""Archive formats and the codec seam.

A :class:`Format` is a container (``tar`` or ``zip``) plus, for tar, an
optional :class:`Codec`.  Codecs only turn a raw binary file into a
compressing writer or a decompressing reader; all member logic lives in
``_pack`` and ``_extract`` and is shared by every format.
"""
import bz2
import dataclasses
import gzip
import lzma
import os
import pathlib
import queue
import threading
import warnings
from typing import Callable, Optional, Tuple

from .errors import ArchiveError, UnsupportedArchiveError


class _Uncloseable:
    """Lets a codec stream close itself without closing the underlying file."""

    def __init__(self, raw):
        self._raw = raw

    def __getattr__(self, name):
        return getattr(self._raw, name)

    def close(self):
        pass

    @property
    def closed(self):
        return False


def _isal_igzip():
    try:
        from isal import igzip  # noqa: F401  (availability probe)
    except ImportError:
        if not _isal_igzip.warned:
            warnings.warn(
                "isal is not installed: .tar.gz uses the slower zlib codec "
                "(pip install isal)",
                RuntimeWarning,
                stacklevel=3,
            )
            _isal_igzip.warned = True
        return None
    return igzip


_isal_igzip.warned = False


def isal_level(level: int) -> int:
    """gzip's levels 0-9 onto ISA-L's 0-3 (6, gzip's default, gives ISA-L's
    default 2)."""
    return min(3, level // 3)


def _gzip_writer(raw, level):
    igzip = _isal_igzip()
    # filename="" and mtime=0 keep the gzip header free of the temp file name
    # and the clock, so archives are byte-reproducible.
    if igzip is not None:
        return igzip.IGzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=isal_level(level), mtime=0
        )
    return gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0
    )


def _gzip_reader(raw):
    igzip = _isal_igzip()
    if igzip is not None:
        return igzip.IGzipFile(fileobj=raw, mode="rb")
    return gzip.GzipFile(fileobj=raw, mode="rb")


def raw_deflate_compressor(level=None):
    """A zlib-compatible raw-deflate compressor object (ISA-L when present),
    as zip members need: wbits -15, no header.  ``level``: gzip's 0-9."""
    level = ZIP_LEVELS.default if level is None else level
    try:
        from isal import isal_zlib
    except ImportError:
        import zlib

        return zlib.compressobj(level, zlib.DEFLATED, -15)
    return isal_zlib.compressobj(isal_level(level), isal_zlib.DEFLATED, -15)


def raw_deflate_decompressor():
    try:
        from isal import isal_zlib
    except ImportError:
        import zlib

        return zlib.decompressobj(-15)
    return isal_zlib.decompressobj(-15)


#: A member is stored rather than deflated when a sample of it shrinks by
#: less than this: trained weights barely compress, and storing them is
#: ~10x faster to write and read.
DEFLATE_MIN_SAVING = 0.03
DEFLATE_SAMPLE_BYTES = 64 << 10


def worth_deflating(sample) -> bool:
    if len(sample) < 4096:
        return True  # small files (JSON, configs): always deflate
    sample = bytes(sample[:DEFLATE_SAMPLE_BYTES])
    compressor = raw_deflate_compressor(1)
    packed = len(compressor.compress(sample)) + len(compressor.flush())
    return packed < (1 - DEFLATE_MIN_SAVING) * len(sample)


def _zstd_writer(raw, level):
    import zstandard

    # zstd's single-threaded mode (0) writes different bytes than its
    # multi-threaded mode (any count >= 1), so never use 0: archives must not
    # depend on the machine's CPU count.
    # A fixed 1 MiB job size keeps the output identical for any thread
    # count >= 1 and bounds the workers' buffers (zstd's automatic job size
    # cost ~80 MB of memory); more than 4 workers buys nothing on weights.
    threads = max(1, min(4, os.cpu_count() or 1))
    parameters = zstandard.ZstdCompressionParameters.from_level(
        level, threads=threads, job_size=1 << 20, write_checksum=True
    )
    compressor = zstandard.ZstdCompressor(compression_params=parameters)
    return compressor.stream_writer(raw, closefd=False)


_ZSTD_SKIPPABLE = range(0x184D2A50, 0x184D2A60)


def zstd_frames_end_at_eof(raw) -> bool:
    """Walk the frame and block headers of a zstd file (seeking, not
    decompressing): True when its last frame is complete.  zstandard's
    stream reader silently stops at a cut-off frame."""
    raw.seek(0, os.SEEK_END)
    end = raw.tell()
    position = 0
    while position < end:
        raw.seek(position)
        header = raw.read(18)
        magic = int.from_bytes(header[:4], "little")
        if magic in _ZSTD_SKIPPABLE:
            position += 8 + int.from_bytes(header[4:8], "little")
            continue
        if len(header) < 5 or header[:4] != ZSTD.magic:
            return False
        descriptor = header[4]
        single_segment = descriptor & 0x20
        position += 5 + (0 if single_segment else 1)
        position += (0, 1, 2, 4)[descriptor & 0x03]
        position += (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
        while True:
            raw.seek(position)
            block = raw.read(3)
            if len(block) < 3:
                return False
            value = int.from_bytes(block, "little")
            size = 1 if (value >> 1) & 0x3 == 1 else value >> 3
            position += 3 + size
            if value & 1:
                break
        position += 4 if descriptor & 0x04 else 0
    return position == end


class _ZstdReader:
    """zstandard's stream reader plus the truncation check it lacks."""

    def __init__(self, raw):
        import zstandard

        self._raw = raw
        self._stream = zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, closefd=False
        )

    def _at_eof(self):
        if not zstd_frames_end_at_eof(self._raw):
            raise EOFError("zstd stream ended before the end of its frame")

    def read(self, size=-1):
        data = self._stream.read(size)
        if not data and size != 0:
            self._at_eof()
        return data

    def readinto(self, view):
        count = self._stream.readinto(view)
        if not count and len(view):
            self._at_eof()
        return count

    def close(self):
        self._stream.close()


class _ReadAhead:
    """Decompress a few blocks ahead in a background thread.

    The codecs release the GIL while they decompress, so this runs them on
    one core while our hashing and writing use the other, the way GNU tar's
    ``zstd -d | tar -x`` pipeline does; inline, the two costs add up.  The
    stream's errors reach the reader, in order, as if read inline."""

    def __init__(self, stream, block_size=4 << 20, depth=2):
        self._stream = stream
        self._block_size = block_size
        self._blocks = queue.Queue(depth)
        self._closing = threading.Event()
        self._block = memoryview(b"")
        self._offset = 0
        self._finished = False
        self._thread = threading.Thread(
            target=self._decompress, name="dffml-archive-read-ahead", daemon=True
        )
        self._thread.start()

    def _decompress(self):
        _yield_to_the_application()
        try:
            while not self._closing.is_set():
                block = self._stream.read(self._block_size)
                self._hand_over(block)
                if not block:
                    return
        except BaseException as error:  # raised again in the reading thread
            self._hand_over(error)

    def _hand_over(self, item):
        while not self._closing.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _available(self) -> int:
        left = len(self._block) - self._offset
        if left or self._finished:
            return left
        item = self._blocks.get()
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        self._finished = not item
        self._block, self._offset = memoryview(item), 0
        return len(item)

    def readinto(self, view) -> int:
        count = min(len(view), self._available())
        view[:count] = self._block[self._offset : self._offset + count]
        self._offset += count
        return count

    def read(self, size=-1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(self._block_size), b""))
        count = min(size, self._available())
        data = self._block[self._offset : self._offset + count].tobytes()
        self._offset += count
        return data

    def close(self):
        self._closing.set()
        self._thread.join()
        self._stream.close()


#: How much lower than its process the read-ahead thread runs (nice steps).
READ_AHEAD_NICENESS = 5


def _yield_to_the_application():
    """Run this thread at a lower priority (Linux: nice is per thread): with
    every core busy, the application's threads, an event loop above all,
    get the CPU first, and decompression takes what they leave."""
    try:
        thread = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, nice + READ_AHEAD_NICENESS))
    except (AttributeError, OSError):  # not Linux, or not allowed: run as is
        pass


def _zstd_reader(raw):
    return _ZstdReader(raw)


@dataclasses.dataclass(frozen=True)
class Levels:
    low: int
    high: int
    default: int


ZIP_LEVELS = Levels(0, 9, 6)


@dataclasses.dataclass(frozen=True)
class Codec:
    name: str
    magic: bytes
    levels: Levels
    open_writer: Callable
    open_reader: Callable


GZIP = Codec("gzip", b"\x1f\x8b", Levels(0, 9, 6), _gzip_writer, _gzip_reader)
BZIP2 = Codec(
    "bzip2",
    b"BZh",
    Levels(1, 9, 9),
    lambda raw, level: bz2.BZ2File(raw, "wb", compresslevel=level),
    lambda raw: bz2.BZ2File(raw, "rb"),
)
XZ = Codec(
    "xz",
    b"\xfd7zXZ\x00",
    Levels(0, 9, 6),
    lambda raw, level: lzma.LZMAFile(raw, "wb", preset=level),
    lambda raw: lzma.LZMAFile(raw, "rb"),
)
ZSTD = Codec("zstd", b"\x28\xb5\x2f\xfd", Levels(1, 22, 3), _zstd_writer, _zstd_reader)

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    extensions: Tuple[str, ...]
    container: str  # "tar" or "zip"
    codec: Optional[Codec] = None

    @property
    def levels(self) -> Optional[Levels]:
        return ZIP_LEVELS if self.container == "zip" else self.codec and self.codec.levels

    def check_level(self, archive, level: Optional[int]) -> None:
        """Refuse a level the codec does not have, before any work."""
        if level is None:
            return
        levels = self.levels
        if levels is None:
            raise UnsupportedArchiveError(
                archive, f"{self.name} is not compressed, so it takes no level",
                hint="leave the level out",
            )
        if not levels.low <= level <= levels.high:
            raise UnsupportedArchiveError(
                archive,
                f"compression level {level} is out of range for {self.name}",
                hint=f"use {levels.low} to {levels.high} (default {levels.default})",
            )

    def open_writer(self, raw, level=None):
        if self.codec is None:
            return _Uncloseable(raw)
        if level is None:
            level = self.codec.levels.default
        return self.codec.open_writer(raw, level)

    def open_reader(self, raw):
        if self.codec is None:
            return _Uncloseable(raw)
        # Every codec decompresses ahead, in its own thread (see _ReadAhead).
        return _ReadAhead(self.codec.open_reader(raw))


FORMATS = (
    Format("zip", (".zip",), "zip"),
    Format("tar", (".tar",), "tar"),
    Format("tar.gz", (".tar.gz", ".tgz"), "tar", GZIP),
    Format("tar.bz2", (".tar.bz2", ".tbz2", ".tbz"), "tar", BZIP2),
    Format("tar.xz", (".tar.xz", ".txz"), "tar", XZ),
    Format("tar.zst", (".tar.zst", ".tzst"), "tar", ZSTD),
)

SUPPORTED_EXTENSIONS = tuple(ext for fmt in FORMATS for ext in fmt.extensions)


def _matching_format(path) -> Optional[Format]:
    name = pathlib.PurePath(path).name.lower()
    # Longest extension first so ".tar.gz" wins over a bare ".gz" rule.
    best = None
    for fmt in FORMATS:
        for ext in fmt.extensions:
            if name.endswith(ext) and len(name) > len(ext):
                if best is None or len(ext) > len(best[1]):
                    best = (fmt, ext)
    return best[0] if best else None


#: Extensions of archive formats we do not write: a location ending in one is
#: refused instead of silently becoming a directory of that name.
UNSUPPORTED_ARCHIVE_EXTENSIONS = (
    ".rar", ".7z", ".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".tar.lz4",
    ".tar.lzma", ".tlz", ".cpio", ".jar", ".war", ".whl", ".egg",
    ".gzip", ".bzip2", ".zstd", ".lz", ".z", ".zipx",
)


def looks_like_unsupported_archive(path) -> bool:
    name = pathlib.PurePath(path).name.lower()
    return not is_archive_path(path) and name.endswith(UNSUPPORTED_ARCHIVE_EXTENSIONS)


def is_archive_path(path) -> bool:
    """True when ``path`` names an archive by its extension."""
    return _matching_format(path) is not None


def format_for_path(path) -> Format:
    """The format a path's extension asks for, or a clear error."""
    fmt = _matching_format(path)
    if fmt is None and os.path.isdir(path):
        raise ArchiveError(path, "is a directory, not an archive file",
                           hint="give the path of an archive file")
    if fmt is None:
        raise UnsupportedArchiveError(
            path,
            "unsupported archive extension",
            hint="use one of " + ", ".join(SUPPORTED_EXTENSIONS),
        )
    return fmt


def _describe_content(head: bytes) -> str:
    for codec in (GZIP, BZIP2, XZ, ZSTD):
        if head.startswith(codec.magic):
            return f"{codec.name}-compressed data"
    if head.startswith(ZIP_MAGICS):
        return "a zip archive"
    if head[257:262] == b"ustar":
        return "an uncompressed tar archive"
    if not head:
        return "an empty file"
    return "not an archive this library reads"


def content_matches(fmt: Format, head: bytes) -> bool:
    if fmt.container == "zip":
        return head.startswith(ZIP_MAGICS)
    if fmt.codec is not None:
        return head.startswith(fmt.codec.magic)
    # Plain tar: a ustar/pax/GNU header, or the all-zero end blocks of an
    # archive with no members.
    return head[257:262] == b"ustar" or (len(head) >= 512 and not any(head[:512]))


def check_content(path, fmt: Format, raw) -> None:
    """Refuse a file whose first bytes do not match its extension."""
    position = raw.tell()
    head = raw.read(512)
    raw.seek(position)
    if not content_matches(fmt, head):
        raise UnsupportedArchiveError(
            path,
            f"the extension says {fmt.name} but the content is "
            f"{_describe_content(head)}",
            hint="rename the file to match its content or re-create it",
        )
