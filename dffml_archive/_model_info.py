"""The manifest's ``model`` section: what the model layer writes there and
the one check of everything it reads back.

The manifest gives integrity, not authenticity: anyone can write an archive
whose manifest verifies and whose model section says anything.  Its text is
later put in error messages and in commands we suggest (``pip install``,
``-model NAME``), so every field is checked against this schema before any
of it is used or shown::

    {
      "entrypoint": "<upstream>_archive",   # our dffml.model entry point
      "upstream":   "<name>",               # the upstream entry point
      "class":      "module:QualName",      # optional
      "extra":      "<extra of dffml-archive>" | null,
      "config":     {"<option>": <exported JSON value>, ...},
      "versions":   {"<distribution>": "<version>" | null, ...},
      "trained":    false                    # optional: a staged, untrained model
    }
"""
import re
from typing import Optional

from .backends._table import LABEL_SUFFIX
from .errors import ModelInfoError


#: Entry point, upstream and extra names: what setuptools accepts and no
#: shell or terminal gives a meaning to.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
_CLASS_PATH = re.compile(r"[A-Za-z_][\w.]{0,199}:[A-Za-z_][\w.]{0,199}\Z", re.ASCII)
_WHAT_TO_DO = (
    "the archive's model section was edited or not written by dffml-archive; "
    "retrain the model, or ask whoever made the archive for a good copy"
)


def archive_label(upstream: str) -> str:
    """Our entry point name for the upstream model ``upstream``."""
    return f"{upstream}{LABEL_SUFFIX}"


def known_extras() -> Optional[frozenset]:
    """The pip extras of the installed dffml-archive (None when it runs from
    a source tree without metadata: then any well-formed name passes)."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        return frozenset(metadata("dffml-archive").get_all("Provides-Extra") or ())
    except PackageNotFoundError:
        return None


def checked_model_info(archive, model) -> dict:
    """``model`` (a manifest's model section) if every field is what
    :meth:`ArchiveModel.model_info` writes; else :class:`ModelInfoError`
    naming the archive and the first field at fault."""

    def refuse(field: str, problem: str):
        raise ModelInfoError(archive, f"manifest field model.{field} {problem}", hint=_WHAT_TO_DO)

    if not isinstance(model, dict):
        refuse("", f"is a {type(model).__name__}, not an object")
    for field in ("entrypoint", "upstream"):
        value = model.get(field)
        if not isinstance(value, str) or not _NAME.match(value):
            refuse(field, f"is {_described(value)}, not an entry point name")
    upstream, entrypoint = model["upstream"], model["entrypoint"]
    if entrypoint != archive_label(upstream):
        refuse("entrypoint", f"is {_described(entrypoint)}, but a model of upstream "
               f"{upstream!r} is stored by {archive_label(upstream)!r}")
    class_path = model.get("class")
    if class_path is not None and not (isinstance(class_path, str) and _CLASS_PATH.match(class_path)):
        refuse("class", f"is {_described(class_path)}, not a 'module:Class' path")
    _check_extra(model.get("extra"), refuse)
    if not isinstance(model.get("config", {}), dict):
        refuse("config", f"is {_described(model['config'])}, not an object of options")
    if model.get("trained", False) is not False:
        refuse("trained", f"is {_described(model['trained'])}; only false may be written "
               "(a staged model; a trained one has no such field)")
    versions = model.get("versions", {})
    if not isinstance(versions, dict) or not all(
        isinstance(version, (str, type(None))) for version in versions.values()
    ):
        refuse("versions", "is not an object of distribution versions")
    return model


def _check_extra(extra, refuse) -> None:
    if extra is None:
        return
    if not isinstance(extra, str) or not _NAME.match(extra):
        refuse("extra", f"is {_described(extra)}, not a pip extra name")
    known = known_extras()
    if known is not None and extra not in known:
        refuse("extra", f"is {extra!r}, not an extra of dffml-archive "
               f"(known: {', '.join(sorted(known))})")


def _described(value) -> str:
    """``value`` for a message: its JSON type, and itself when short, escaped."""
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)  # repr escapes control characters
    if value is None:
        return "missing"
    return f"a {type(value).__name__}"
