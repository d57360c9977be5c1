"""dffml-archive: every DFFML model in one verified archive file.

The public surface is what this module exports; everything in a module
whose name starts with an underscore is private."""
import importlib

from .errors import (
    ArchiveError,
    ArchiveLimitError,
    ArchiveLockWaitWarning,
    ArchiveNotUpdatedWarning,
    ArchiveSourceError,
    ArchiveWarning,
    ArchiveWriteError,
    CorruptArchiveError,
    DestinationError,
    ModelInfoError,
    UnsafeArchiveError,
    UnsupportedArchiveError,
    UnverifiedArchiveWarning,
)
from .version import __version__

# Exported name -> the module defining it, imported on first access.  dffml
# imports our CLI service (and so this package) in every ``dffml`` command,
# and the model layer needs only part of the engine: nothing is loaded until
# something asks for it.  The model layer imports dffml (slow) too.
_LAZY = {
    "pack": "._api",
    "extract": "._api",
    "verify": "._api",
    "inspect": "._api",
    "SUPPORTED_EXTENSIONS": "._formats",
    "is_archive_path": "._formats",
    "ArchiveInfo": "._inspect",
    "WorkingCopy": "._location",
    "archive_location": "._location",
    "Manifest": "._manifest",
    "ManifestMember": "._manifest",
    "Limits": "._safety",
    "archive_model": ".model",
    "load_model": ".model",
    "ArchiveModel": ".model",
    "BackendAdapter": ".model",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dffml_archive' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


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
    "ArchiveWriteError",
    "CorruptArchiveError",
    "DestinationError",
    "ModelInfoError",
    "UnsafeArchiveError",
    "UnsupportedArchiveError",
    "ArchiveWarning",
    "UnverifiedArchiveWarning",
    "ArchiveNotUpdatedWarning",
    "ArchiveLockWaitWarning",
    "__version__",
]
