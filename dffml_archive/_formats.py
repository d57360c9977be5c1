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
import warnings
from typing import Callable, Optional, Tuple

from .errors import UnsupportedArchiveError


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


def _gzip_writer(raw, level):
    igzip = _isal_igzip()
    # filename="" and mtime=0 keep the gzip header free of the temp file name
    # and the clock, so archives are byte-reproducible.
    if igzip is not None:
        return igzip.IGzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0
        )
    return gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0
    )


def _gzip_reader(raw):
    igzip = _isal_igzip()
    if igzip is not None:
        from isal import igzip_threaded

        # Decompresses in a background thread, overlapping with our hashing
        # and writing on the other core.
        return igzip_threaded.open(raw, "rb", threads=1)
    return gzip.GzipFile(fileobj=raw, mode="rb")


def raw_deflate_compressor(level=2):
    """A zlib-compatible raw-deflate compressor object (ISA-L when present),
    as zip members need: wbits -15, no header."""
    try:
        from isal import isal_zlib
    except ImportError:
        import zlib

        return zlib.compressobj(6, zlib.DEFLATED, -15)
    return isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)


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

    threads = -1 if (os.cpu_count() or 1) > 1 else 0
    compressor = zstandard.ZstdCompressor(
        level=level, threads=threads, write_checksum=True
    )
    return compressor.stream_writer(raw, closefd=False)


def _zstd_reader(raw):
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(
        raw, read_across_frames=True, closefd=False
    )


@dataclasses.dataclass(frozen=True)
class Codec:
    name: str
    magic: bytes
    default_level: int
    open_writer: Callable
    open_reader: Callable


GZIP = Codec("gzip", b"\x1f\x8b", 2, _gzip_writer, _gzip_reader)
BZIP2 = Codec(
    "bzip2",
    b"BZh",
    9,
    lambda raw, level: bz2.BZ2File(raw, "wb", compresslevel=level),
    lambda raw: bz2.BZ2File(raw, "rb"),
)
XZ = Codec(
    "xz",
    b"\xfd7zXZ\x00",
    6,
    lambda raw, level: lzma.LZMAFile(raw, "wb", preset=level),
    lambda raw: lzma.LZMAFile(raw, "rb"),
)
ZSTD = Codec("zstd", b"\x28\xb5\x2f\xfd", 3, _zstd_writer, _zstd_reader)

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    extensions: Tuple[str, ...]
    container: str  # "tar" or "zip"
    codec: Optional[Codec] = None

    def open_writer(self, raw, level=None):
        if self.codec is None:
            return _Uncloseable(raw)
        if level is None:
            level = self.codec.default_level
        return self.codec.open_writer(raw, level)

    def open_reader(self, raw):
        if self.codec is None:
            return _Uncloseable(raw)
        return self.codec.open_reader(raw)


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
