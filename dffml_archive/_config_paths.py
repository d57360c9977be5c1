"""Options that name a path inside the model itself, stored as
``archive:PATH``.

A model may carry a file or directory its options point at (a staged
TensorFlow Hub embedding for ``text_classifier``'s ``model_path``).  The
working copy of an archive is a new temporary directory each time it is
opened, so an absolute path into it would be stale in the manifest.  The
manifest therefore stores such a value relative to the model's directory,
``archive:embedding``, and every open turns it back into the path inside
wherever the model now lives.  A directory-located model gets the same
rule, so it can be moved or packed too.
"""
import os
import pathlib
from typing import Any, Dict

from ._constants import ARCHIVE_PATH_PREFIX
from .errors import ArchiveError


def inside_model(value) -> bool:
    """True for a value written as ``archive:PATH``."""
    return isinstance(value, (str, pathlib.PurePath)) and str(value).startswith(
        ARCHIVE_PATH_PREFIX)


def resolve_archive_paths(values: Dict[str, Any], directory, location) -> Dict[str, Any]:
    """``values`` with each ``archive:PATH`` made the path of PATH in
    ``directory`` (of the same type: str or Path); a PATH that leaves the
    model or that the model does not hold is an error naming the option."""
    resolved = dict(values)
    for name, value in values.items():
        if not inside_model(value):
            continue
        relative = str(value)[len(ARCHIVE_PATH_PREFIX):]
        parts = pathlib.PurePosixPath(relative).parts
        if not parts or relative.startswith("/") or ".." in parts:
            raise ArchiveError(location, f"option {name}={str(value)!r} must name a path "
                               f"inside the model ({ARCHIVE_PATH_PREFIX}DIR/FILE)",
                               hint=f"give -model-{name} a relative path without '..'")
        path = pathlib.Path(directory, *parts)
        if not path.exists():
            raise ArchiveError(
                location, f"option {name}={str(value)!r} names {relative!r} inside the model, "
                "which the model does not hold",
                hint=f"stage the model again, or give -model-{name} a path outside it "
                "(with -model-retrain to train anew)")
        resolved[name] = path if isinstance(value, pathlib.PurePath) else str(path)
    return resolved


def stored_archive_path(value, directory):
    """``value`` as the manifest stores it: a path inside ``directory``
    becomes ``archive:PATH``; anything else is returned unchanged."""
    if directory is None or not isinstance(value, (str, pathlib.PurePath)):
        return value
    text = str(value)
    if not os.path.isabs(text):
        return value
    root = os.path.realpath(directory)
    full = os.path.realpath(text)
    if full == root or not full.startswith(root + os.sep):
        return value
    return ARCHIVE_PATH_PREFIX + pathlib.Path(os.path.relpath(full, root)).as_posix()
