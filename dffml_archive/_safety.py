"""Fail-closed rules for member names, types and sizes.

The same checks run for every container and codec, on pack (so we never
write an archive we would refuse to open) and on extraction.  They do not
depend on ``tarfile``'s extraction filters, which only some 3.8 patch
releases have.
"""
import dataclasses
import os
import re
import unicodedata

from . import _constants as C
from .errors import ArchiveLimitError, CorruptArchiveError, UnsafeArchiveError

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")

#: The member types an archive may hold (the manifest's ``type`` values).
FILE, DIRECTORY = "file", "directory"


@dataclasses.dataclass(frozen=True)
class Limits:
    """Extraction limits: total uncompressed bytes, member count and
    compression ratio.  Defaults come from ``DFFML_ARCHIVE_MAX_SIZE``,
    ``DFFML_ARCHIVE_MAX_MEMBERS`` and ``DFFML_ARCHIVE_MAX_RATIO`` (else 32 GiB,
    200,000 and 100); pass your own to raise or lower them.  The ratio is
    judged only for archives without a manifest: ours are held to the sizes
    their manifest declares."""

    max_size: int = dataclasses.field(default_factory=C.default_max_size)
    max_members: int = dataclasses.field(default_factory=C.default_max_members)
    max_ratio: float = dataclasses.field(default_factory=C.default_max_ratio)

    def __post_init__(self):
        for name in ("max_size", "max_members", "max_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"Limits({name}={value!r}): give a number above 0")


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UNDECODABLE_BYTE = re.compile("[\udc80-\udcff]")  # surrogateescape of bad UTF-8


#: Names that pass every rule below, recognized in one step (most names):
#: ASCII letters, digits and ``_.+,=@-`` in components of at most
#: MAX_COMPONENT_BYTES characters that are not ``.`` or ``..``, separated by
#: single slashes.
_PLAIN_NAME = re.compile(
    r"(?:(?!\.\.?(?:/|\Z))[\w.+,=@-]{1,%d}(?:/|\Z))+" % C.MAX_COMPONENT_BYTES, re.ASCII
)


def clean_member_name(archive, raw_name):
    """Return the normalized relative POSIX name, or ``None`` for the root
    entry (``.`` or ``./``).  Refuse anything that could leave the destination
    or mean different things on different systems."""

    if (
        isinstance(raw_name, str)
        and len(raw_name) <= C.MAX_NAME_BYTES
        and _PLAIN_NAME.fullmatch(raw_name)
    ):
        return raw_name[:-1] if raw_name.endswith("/") else raw_name
    return _checked_member_name(archive, raw_name)


def _checked_member_name(archive, raw_name):
    """:func:`clean_member_name`, every rule checked one by one."""

    def refuse(reason):
        raise UnsafeArchiveError(archive, reason, member=raw_name)

    if not isinstance(raw_name, str) or raw_name == "":
        refuse("empty member name")
    if _UNDECODABLE_BYTE.search(raw_name):
        refuse("member name is not valid UTF-8")
    if "\x00" in raw_name:
        refuse("NUL character in member name")
    if _CONTROL_CHARACTER.search(raw_name):
        refuse("control character in member name")
    if "\\" in raw_name:
        refuse("backslash in member name (Windows separator)")
    if raw_name.startswith("/"):
        refuse("absolute path")
    if _DRIVE_LETTER.match(raw_name):
        refuse("Windows drive letter in member name")
    if len(raw_name.encode("utf-8")) > C.MAX_NAME_BYTES:
        refuse(f"member name longer than {C.MAX_NAME_BYTES} bytes")
    body = raw_name[:-1] if raw_name.endswith("/") else raw_name
    parts = []
    for part in body.split("/"):
        if part == "..":
            refuse("'..' component in member name (path traversal)")
        if part == "":
            refuse("empty component in member name ('//')")
        if part == ".":
            continue
        if len(part.encode("utf-8")) > C.MAX_COMPONENT_BYTES:
            refuse(f"name component longer than {C.MAX_COMPONENT_BYTES} bytes")
        parts.append(part)
    if not parts:
        return None
    return "/".join(parts)


def _folded(name: str) -> str:
    # What a case-insensitive or normalizing file system would see.
    if name.isascii():
        return name.lower()
    return unicodedata.normalize(
        "NFKC", unicodedata.normalize("NFKC", name).casefold()
    )


def is_within(path, directory) -> bool:
    """``path`` is ``directory`` or below it, links resolved."""
    real = os.path.realpath(path)
    return (real + os.sep).startswith(os.path.realpath(directory) + os.sep)


def sanitized_file_mode(mode: int) -> int:
    return (mode & C.ALLOWED_MODE_BITS) | C.OWNER_FILE_BITS


def sanitized_dir_mode(mode: int) -> int:
    return (mode & C.ALLOWED_MODE_BITS) | C.OWNER_DIR_BITS


class MemberTracker:
    """Sees every member once, in order: counts, sizes, duplicates, collisions
    and file/directory conflicts."""

    def __init__(self, archive, limits: Limits, archive_size: int):
        self.archive = archive
        self.limits = limits
        self.archive_size = max(archive_size, 1)
        self.members = 0
        self.declared = 0
        self.written = 0
        self._seen = {}  # folded name -> (name, kind)
        self._implicit_dirs = {}  # folded parent -> name of a child
        #: The manifest's sizes by path once it is read: then every member is
        #: held to its declared size instead of the compression ratio.
        self._declared_sizes = None
        self._member_limit = 0
        self._member_written = 0

    def expect(self, declared_sizes: dict) -> None:
        """Hold every following member to ``declared_sizes`` (path -> bytes,
        from a manifest): a member not listed, or larger than declared, is
        refused before more than its declared size is written."""
        self._declared_sizes = declared_sizes
        self._check_size(sum(declared_sizes.values()), None, "declared")

    def add(self, name: str, kind: str, size: int = 0) -> None:
        self.members += 1
        self._member_limit, self._member_written = size, 0
        if self._declared_sizes is not None and kind != DIRECTORY:
            declared = self._declared_sizes.get(name)
            if declared != size:
                raise CorruptArchiveError(
                    self.archive,
                    "is not listed in the manifest (tampered?)" if declared is None else
                    f"its header says {size} bytes but the manifest declares {declared}",
                    member=name, hint="restore it from a good copy",
                )
        if self.members > self.limits.max_members:
            raise ArchiveLimitError(
                self.archive,
                f"more than {self.limits.max_members} members",
                member=name,
                hint="raise the member limit (max_members, --max-members, "
                "DFFML_ARCHIVE_MAX_MEMBERS) if you trust this archive",
            )
        self.declared += size
        self._check_size(self.declared, name, "declared")
        key = _folded(name)
        if key in self._seen:
            other = self._seen[key][0]
            if other == name:
                reason = "duplicate member name"
            else:
                reason = (
                    f"collides with member {other!r} after case folding or "
                    "Unicode normalization"
                )
            raise UnsafeArchiveError(self.archive, reason, member=name)
        if kind != DIRECTORY and key in self._implicit_dirs:
            raise UnsafeArchiveError(
                self.archive,
                f"is a file but {self._implicit_dirs[key]!r} uses it as a directory",
                member=name,
            )
        # Deepest parent first: a parent already known as one was checked,
        # with all its ancestors, when first seen (and no file can take a
        # known parent's name since), so the walk stops there.
        parent = name
        while "/" in parent:
            parent = parent[: parent.rindex("/")]
            parent_key = _folded(parent)
            if parent_key in self._implicit_dirs:
                break
            seen = self._seen.get(parent_key)
            if seen is not None and seen[1] != DIRECTORY:
                raise UnsafeArchiveError(
                    self.archive,
                    f"its parent {seen[0]!r} is a file, not a directory",
                    member=name,
                )
            self._implicit_dirs[parent_key] = name
        self._seen[key] = (name, kind)

    def wrote(self, nbytes: int, member: str) -> None:
        self.written += nbytes
        self._member_written += nbytes
        if self._member_written > self._member_limit:
            raise CorruptArchiveError(
                self.archive, f"holds more than the {self._member_limit} bytes declared",
                member=member, hint="restore it from a good copy",
            )
        self._check_size(self.written, member, "uncompressed")
        if (
            self._declared_sizes is None
            and self.written > C.RATIO_GRACE_BYTES
            and self.written / self.archive_size > self.limits.max_ratio
        ):
            raise ArchiveLimitError(
                self.archive,
                f"compression ratio above {self.limits.max_ratio}:1 in an archive "
                "without a manifest (possible decompression bomb)",
                member=member,
                hint="raise max_ratio (--max-ratio, DFFML_ARCHIVE_MAX_RATIO) "
                "if you trust this archive",
            )

    def _check_size(self, total, member, what):
        if total > self.limits.max_size:
            raise ArchiveLimitError(
                self.archive,
                f"{what} size exceeds the limit of {self.limits.max_size} bytes",
                member=member,
                hint="raise max_size (--max-size, DFFML_ARCHIVE_MAX_SIZE) "
                "if you trust this archive",
            )
