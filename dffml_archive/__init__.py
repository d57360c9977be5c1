"""dffml-archive: every DFFML model in one verified archive file.

The public surface is what this module exports; everything in a module
whose name starts with an underscore is private."""
from ._api import extract, inspect, pack, verify
from ._formats import SUPPORTED_EXTENSIONS, is_archive_path
from ._inspect import ArchiveInfo
from ._location import WorkingCopy, archive_location
from ._manifest import Manifest, ManifestMember
from ._safety import Limits
from .errors import (
    ArchiveError,
    ArchiveLimitError,
    ArchiveSourceError,
    CorruptArchiveError,
    DestinationError,
    UnsafeArchiveError,
    UnsupportedArchiveError,
    UnverifiedArchiveWarning,
)
from .version import __version__

__all__ = [
    "pack",
    "extract",
    "verify",
    "inspect",
    "archive_location",
    "WorkingCopy",
    "Limits",
    "Manifest",
    "ManifestMember",
    "ArchiveInfo",
    "SUPPORTED_EXTENSIONS",
    "is_archive_path",
    "ArchiveError",
    "ArchiveLimitError",
    "ArchiveSourceError",
    "CorruptArchiveError",
    "DestinationError",
    "UnsafeArchiveError",
    "UnsupportedArchiveError",
    "UnverifiedArchiveWarning",
    "__version__",
]
