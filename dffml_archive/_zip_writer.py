"""A zip writer for members whose names, modes and sizes are known up front.

It writes the same bytes as :mod:`zipfile` would for our members (a test
compares them), without zipfile's per-member cost: zipfile seeks, flushes
and rewrites every local header, which made packing thousands of small
files twice as slow as tar.  Here a member held in memory is compressed
first and written once, behind a header that is already right; only a
member streamed from disk gets its header rewritten after its data.
"""
import struct
import zipfile
import zlib

from . import _constants as C

try:
    from isal.isal_zlib import crc32  # same value, several times faster
except ImportError:  # pragma: no cover - isal is a declared dependency
    crc32 = zlib.crc32

_LOCAL_HEADER = struct.Struct(zipfile.structFileHeader)
_CENTRAL_HEADER = struct.Struct(zipfile.structCentralDir)
_YEAR, _MONTH, _DAY, _HOUR, _MINUTE, _SECOND = C.FIXED_ZIP_DATE_TIME
_DOS_DATE = (_YEAR - 1980) << 9 | _MONTH << 5 | _DAY
_DOS_TIME = _HOUR << 11 | _MINUTE << 5 | _SECOND // 2
_UNIX = 3  # create_system: the mode is in the high bits of external_attr
_UTF8_NAME = 0x800
_LIMIT = zipfile.ZIP64_LIMIT


class _Member:
    __slots__ = ("name", "flags", "method", "external_attr", "offset", "crc", "packed", "size",
                 "version")

    def __init__(self, name: str, method: int, external_attr: int, offset: int):
        try:
            self.name, self.flags = name.encode("ascii"), 0
        except UnicodeEncodeError:
            self.name, self.flags = name.encode("utf-8"), _UTF8_NAME
        self.method = method
        self.external_attr = external_attr
        self.offset = offset
        self.crc = self.packed = self.size = 0
        self.version = zipfile.DEFAULT_VERSION

    def local_header(self, zip64: bool) -> bytes:
        packed, size, extra = self.packed, self.size, b""
        if zip64:
            extra = struct.pack("<HHQQ", 1, 16, size, packed)
        if size > _LIMIT or packed > _LIMIT:
            packed = size = 0xFFFFFFFF
            self.version = zipfile.ZIP64_VERSION
        return _LOCAL_HEADER.pack(
            zipfile.stringFileHeader, self.version, 0, self.flags, self.method,
            _DOS_TIME, _DOS_DATE, self.crc, packed, size, len(self.name), len(extra),
        ) + self.name + extra

    def central_header(self) -> bytes:
        packed, size, offset, extra = self.packed, self.size, self.offset, []
        if size > _LIMIT or packed > _LIMIT:
            extra += [size, packed]
            packed = size = 0xFFFFFFFF
        if offset > _LIMIT:
            extra.append(offset)
            offset = 0xFFFFFFFF
        version = self.version
        extra_data = b""
        if extra:
            extra_data = struct.pack("<HH" + "Q" * len(extra), 1, 8 * len(extra), *extra)
            version = max(version, zipfile.ZIP64_VERSION)
        return _CENTRAL_HEADER.pack(
            zipfile.stringCentralDir, version, _UNIX, version, 0, self.flags, self.method,
            _DOS_TIME, _DOS_DATE, self.crc, packed, size, len(self.name), len(extra_data),
            0, 0, 0, self.external_attr, offset,
        ) + self.name + extra_data


class ZipWriter:
    """Write members in order to ``raw`` (a seekable binary file opened at
    its start), then :meth:`close` writes the central directory."""

    def __init__(self, raw, compressor_factory):
        self._raw = raw
        self._new_compressor = compressor_factory
        self._members = []
        self._batch = bytearray()
        self._flushed = raw.tell()  # bytes of the archive already handed to raw

    @property
    def _offset(self) -> int:
        return self._flushed + len(self._batch)

    def _flush(self) -> None:
        if self._batch:
            self._raw.write(self._batch)
            self._flushed += len(self._batch)
            self._batch = bytearray()

    def add_directory(self, name: str, external_attr: int) -> None:
        member = _Member(name, zipfile.ZIP_STORED, external_attr, self._offset)
        self._batch += member.local_header(zip64=False)
        self._members.append(member)

    def add_bytes(self, name: str, external_attr: int, content: bytes, deflate: bool) -> None:
        method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        member = _Member(name, method, external_attr, self._offset)
        member.crc, member.size = crc32(content), len(content)
        if deflate:
            compressor = self._new_compressor()
            # ISA-L emits a byte for compress(b""): only flush an empty file.
            content = (compressor.compress(content) if content else b"") + compressor.flush()
        member.packed = len(content)
        self._batch += member.local_header(zip64=False)
        self._batch += content
        self._members.append(member)
        if len(self._batch) >= C.CHUNK_SIZE:
            self._flush()

    def add_stream(self, name: str, external_attr: int, size: int, deflate: bool, copy) -> None:
        """``copy(write)`` must call ``write`` with exactly ``size`` bytes."""
        method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        member = _Member(name, method, external_attr, self._offset)
        member.size = size
        # Deflate can grow incompressible data a little: zipfile's margin.
        zip64 = size * 1.05 > _LIMIT
        self._flush()
        self._raw.write(member.local_header(zip64))  # rewritten below
        compressor = self._new_compressor() if deflate else None
        crc, packed, seen = 0, 0, 0

        def write(data):
            nonlocal crc, packed, seen
            crc = crc32(data, crc)
            seen += len(data)
            if compressor is not None:
                data = compressor.compress(data)
            packed += len(data)
            self._raw.write(data)

        copy(write)
        if compressor is not None:
            tail = compressor.flush()
            packed += len(tail)
            self._raw.write(tail)
        if seen != size:
            raise ValueError(f"{name!r}: {seen} bytes written, {size} declared")
        if not zip64 and packed > _LIMIT:
            raise ValueError(f"{name!r} deflated to more than the zip limit without ZIP64")
        member.crc, member.packed = crc, packed
        end = self._raw.tell()
        self._raw.seek(member.offset)
        self._raw.write(member.local_header(zip64))
        self._raw.seek(end)
        self._flushed = end
        self._members.append(member)

    def close(self) -> None:
        start = self._offset
        for member in self._members:
            self._batch += member.central_header()
            if len(self._batch) >= C.CHUNK_SIZE:
                self._flush()
        end = self._offset
        count, size, offset = len(self._members), end - start, start
        if count > zipfile.ZIP_FILECOUNT_LIMIT or offset > _LIMIT or size > _LIMIT:
            self._batch += struct.pack(
                zipfile.structEndArchive64, zipfile.stringEndArchive64,
                44, 45, 45, 0, 0, count, count, size, offset,
            )
            self._batch += struct.pack(
                zipfile.structEndArchive64Locator, zipfile.stringEndArchive64Locator, 0, end, 1
            )
            count, size, offset = min(count, 0xFFFF), min(size, 0xFFFFFFFF), min(offset, 0xFFFFFFFF)
        self._batch += struct.pack(
            zipfile.structEndArchive, zipfile.stringEndArchive, 0, 0, count, count, size, offset, 0
        )
        self._flush()
