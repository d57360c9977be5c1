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

# The model layer imports dffml (slow): load it only when asked for, so the
# CLI and the engine start fast.
_MODEL_LAYER = ("archive_model", "load_model", "ArchiveModel", "BackendAdapter")


def __getattr__(name):
    if name in _MODEL_LAYER:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'dffml_archive' has no attribute {name!r}")

__all__ = [
    "pack",
    "extract",
    "verify",
    "inspect",
    "archive_location",
    "archive_model",
    "load_model",
    "ArchiveModel",
    "BackendAdapter",
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
