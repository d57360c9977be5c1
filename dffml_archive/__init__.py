"""dffml-archive: every DFFML model in one verified archive file.

The public surface is what this module exports (``__all__``); everything in
a module whose name starts with an underscore is private."""
from . import errors as _errors
from ._lazy import lazy_exports
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
__getattr__, __dir__, _names = lazy_exports(globals(), _LAZY_MODULES)
__all__ = [*_names, *_errors.__all__, "__version__"]
