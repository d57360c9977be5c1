"""What a repository name, a tag, a reference and a ``models:`` location may be.

* A repository name is ``NAME`` or ``NAMESPACE/NAME``; each part starts with
  a letter or digit and holds letters, digits, ``.``, ``_`` and ``-`` (at
  most 100 characters): nothing a path, a shell or a terminal reads as
  special, so ``../x``, an empty name or control characters are refused
  before anything is touched.
* A tag starts with a letter (so it never reads as a version number).
  ``latest`` is kept by the repository itself: it always names the newest
  live version.
* A reference is ``NAME``, ``NAME:VERSION`` or ``NAME:TAG``; a model
  location is ``models:`` followed by a reference.  ``:`` survives DFFML's
  config parsing (which turns the location into a path, collapsing ``//``).
"""
import dataclasses
import re
from typing import Optional, Union

from .. import _constants as C
from ..errors import BadReferenceError, shown

_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
_REPOSITORY_NAME = re.compile(rf"(?:{_PART}/)?{_PART}\Z")
_TAG = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,99}\Z")
_VERSION = re.compile(r"[1-9][0-9]{0,17}\Z")


def checked_name(name) -> str:
    """``name`` if it is a well-formed repository name, else BadReferenceError."""
    if not isinstance(name, str) or not _REPOSITORY_NAME.match(name) or ".." in name:
        raise BadReferenceError(
            shown(name) if isinstance(name, str) else repr(name),
            "is not a repository name",
            hint="use letters, digits, '.', '_' and '-' (at most 100), optionally "
            "after one 'namespace/', e.g. credit-risk or team/credit-risk",
        )
    return name


def checked_tag(tag, *, settable: bool = False) -> str:
    """``tag`` if well formed; ``settable``: also refuse ``latest``."""
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise BadReferenceError(
            shown(tag) if isinstance(tag, str) else repr(tag),
            "is not a tag",
            hint="a tag starts with a letter, then letters, digits, '.', '_' or '-' "
            "(at most 100), e.g. production",
        )
    if settable and tag == C.LATEST_TAG:
        raise BadReferenceError(
            tag, "is kept by the repository: it always names the newest version",
            hint="choose another tag name",
        )
    return tag


def checked_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BadReferenceError(
            repr(version), "is not a version number", hint="versions are 1, 2, 3, ..."
        )
    return version


@dataclasses.dataclass(frozen=True)
class Reference:
    """``name``, and at most one of ``version`` and ``tag`` (neither: the
    repository itself, or its newest version where an image is meant)."""

    name: str
    version: Optional[int] = None
    tag: Optional[str] = None

    def __str__(self):
        ref = self.version if self.version is not None else self.tag
        return self.name if ref is None else f"{self.name}:{ref}"


def parse_reference(text: str) -> Reference:
    """``NAME``, ``NAME:VERSION`` or ``NAME:TAG``."""
    if not isinstance(text, str):
        raise BadReferenceError(repr(text), "is not a reference", hint="NAME[:VERSION|TAG]")
    name, colon, ref = text.partition(":")
    checked_name(name)
    if not colon:
        return Reference(name)
    if _VERSION.match(ref):
        return Reference(name, version=int(ref))
    if not _TAG.match(ref):
        raise BadReferenceError(
            shown(text), f"{shown(ref)!r} is neither a version number nor a tag",
            hint="write NAME:VERSION (e.g. credit-risk:3) or NAME:TAG (e.g. credit-risk:production)",
        )
    return Reference(name, tag=ref)


def is_repository_location(location: Union[str, "object"]) -> bool:
    """True for ``models:...`` (a str or the path DFFML made of it)."""
    return str(location).startswith(C.REPOSITORY_SCHEME)


def parse_location(location) -> Reference:
    """The reference of a ``models:NAME[:VERSION|TAG]`` model location."""
    text = str(location)
    if not text.startswith(C.REPOSITORY_SCHEME):
        raise BadReferenceError(
            shown(text), f"is not a repository location (it must start with {C.REPOSITORY_SCHEME!r})"
        )
    try:
        return parse_reference(text[len(C.REPOSITORY_SCHEME):])
    except BadReferenceError as error:
        raise BadReferenceError(
            shown(text), f"is not a repository location: {error.reason}",
            hint="models:NAME (train: a new version), models:NAME:VERSION or models:NAME:TAG",
        ) from None
