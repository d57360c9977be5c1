"""Inspect an archive: its format, size and manifest, without extracting."""
import dataclasses
import os
from typing import List, Optional

from . import _constants as C
from ._extract import _read_manifest
from ._formats import check_content, format_for_path
from ._manifest import Manifest, ManifestMember
from ._readers import FILE, STREAM_ERRORS, corrupt_from, iter_entries, open_archive_file
from ._safety import clean_member_name
from .errors import ArchiveError, UnsafeArchiveError, shown


@dataclasses.dataclass
class ArchiveInfo:
    """What :func:`dffml_archive.inspect` returns: ``path``, ``format`` name,
    ``size`` in bytes, the ``manifest`` (None for archives made by other
    tools) and the ``members`` it lists."""

    path: str
    format: str
    size: int
    manifest: Optional[Manifest]
    #: Members as the archive lists them (from the manifest when present).
    members: List[ManifestMember]

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "size": self.size,
            "verified_manifest": self.manifest is not None,
            "manifest": self.manifest.to_json() if self.manifest else None,
            "members": [member.to_json() for member in self.members],
        }


def inspect_archive(archive) -> ArchiveInfo:
    """Read the manifest (the first member) or, for archives made by other
    tools, the member headers.  Contents are not checked: use verify."""
    fmt = format_for_path(archive)
    listed = []
    manifest = None
    try:
        with open_archive_file(archive) as raw:
            check_content(archive, fmt, raw)
            size = os.fstat(raw.fileno()).st_size
            for index, entry in enumerate(iter_entries(archive, fmt, raw)):
                if index == 0 and entry.name == C.MANIFEST_NAME and entry.kind == FILE:
                    manifest = _read_manifest(archive, entry)
                    break
                name = _shown_name(archive, entry.name)
                if name is not None:
                    listed.append(ManifestMember(name, entry.kind, entry.mode & 0o7777, entry.size))
    except ArchiveError:
        raise
    except STREAM_ERRORS as error:
        raise corrupt_from(archive, error) from None
    members = manifest.members if manifest else listed
    return ArchiveInfo(os.fspath(archive), fmt.name, size, manifest, members)


def _shown_name(archive, raw_name: str) -> Optional[str]:
    """The name extract would write (None for the root entry ``./``); a name
    extract would refuse is shown as it is, escaped (verify says why)."""
    try:
        return clean_member_name(archive, raw_name)
    except UnsafeArchiveError:
        return shown(raw_name)
