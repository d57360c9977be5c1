"""dffml-archive: every DFFML model in one verified archive file.

The public surface is what this module exports (``__all__``); everything in
a module whose name starts with an underscore is private."""
import importlib

from . import errors as _errors
from .errors import *  # noqa: F401,F403 (the exceptions and warnings: errors.__all__)
from .version import __version__

# Module -> the names it exports here, imported on first access.  dffml
# imports our CLI service (and so this package) in every ``dffml`` command,
# and the model layer needs only part of the engine: nothing is loaded until
# something asks for it.  The model layer imports dffml (slow) too.
_LAZY_MODULES = {
    "._api": ("pack", "extract", "verify", "inspect"),
    "._location": ("archive_location", "WorkingCopy"),
    ".model": (
        "archive_model", "load_model", "ArchiveModel", "BackendAdapter", "ModelArchiveNotFound",
    ),
    "._manifest": ("Manifest", "ManifestMember"),
    "._inspect": ("ArchiveInfo",),
    "._safety": ("Limits",),
    "._formats": ("SUPPORTED_EXTENSIONS", "is_archive_path"),
    "._atomic": ("atomic_replace",),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}

__all__ = [*_LAZY, *_errors.__all__, "__version__"]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dffml_archive' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
