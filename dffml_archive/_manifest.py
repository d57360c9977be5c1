"""The manifest: the first member of every archive we write.

It lists every member with its type, size, mode and sha256, records who wrote
the archive and carries a free ``model`` slot (entry point, full config) for
the model layer.  It gives integrity, not authenticity: anyone who can write
the archive can write a matching manifest.
"""
import dataclasses
import functools
import json
import platform
from typing import Dict, List, Optional

from . import _constants as C
from .errors import CorruptArchiveError
from .version import __version__


@dataclasses.dataclass(frozen=True)
class ManifestMember:
    """One member: relative POSIX ``path``, ``type`` ("file" or
    "directory"), permission ``mode``, and for files ``size`` and ``sha256``."""

    path: str
    type: str  # "file" or "directory"
    mode: int
    size: int = 0
    sha256: Optional[str] = None

    def to_json(self):
        data = {"path": self.path, "type": self.type, "mode": f"{self.mode:04o}"}
        if self.type == "file":
            data["size"] = self.size
            data["sha256"] = self.sha256
        return data


def _distribution_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def created_by() -> Dict[str, Optional[str]]:
    return {
        "dffml-archive": __version__,
        "dffml": _distribution_version("dffml"),
        "python": platform.python_version(),
    }


@dataclasses.dataclass
class Manifest:
    """The manifest of an archive: its ``members``, the free ``model`` slot,
    ``created_by`` (writer versions) and the manifest format ``version``."""

    members: List[ManifestMember]
    model: Optional[dict] = None
    created_by: Dict[str, Optional[str]] = dataclasses.field(default_factory=created_by)
    version: int = C.MANIFEST_VERSION
    #: False when the archive had no manifest (made by another tool) and
    #: this one was built from what extraction found.
    verified: bool = dataclasses.field(default=True, compare=False, repr=False)

    def to_json(self) -> dict:
        return {**self._header_json(), "members": [member.to_json() for member in self.members]}

    def _header_json(self) -> dict:
        return {
            "format": C.MANIFEST_FORMAT,
            "version": self.version,
            "created_by": self.created_by,
            "model": self.model,
        }

    def to_bytes(self) -> bytes:
        """Compact, sorted-key JSON: exactly ``json.dumps(self.to_json(),
        sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, with
        the member list encoded one member at a time: one json.dumps call
        over thousands of members holds the GIL (stalls the event loop)
        for tens of milliseconds."""
        try:
            text = _dumps(self._header_json())
        except ValueError as error:
            raise ValueError(
                f"model information for the manifest is not strict JSON: {error}"
            ) from None
        # Sorted keys: created_by, format, *members*, model, version.
        split = text.index(',"model":')
        members = ",".join(_member_json(member) for member in self.members)
        return f'{text[:split]},"members":[{members}]{text[split:]}'.encode("utf-8") + b"\n"

    def by_path(self) -> Dict[str, ManifestMember]:
        return {member.path: member for member in self.members}

    @property
    def total_size(self) -> int:
        return sum(member.size for member in self.members)

    @classmethod
    def from_bytes(cls, archive, data: bytes) -> "Manifest":
        corrupt = functools.partial(_corrupt, archive)
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise corrupt(f"manifest is not valid JSON ({type(error).__name__})") from None
        return cls.from_json(archive, obj)

    @classmethod
    def from_json(cls, archive, obj) -> "Manifest":
        corrupt = functools.partial(_corrupt, archive)
        if not isinstance(obj, dict) or obj.get("format") != C.MANIFEST_FORMAT:
            raise corrupt("manifest has an unknown format")
        if obj.get("version") != C.MANIFEST_VERSION:
            raise corrupt(
                f"manifest version {obj.get('version')!r} is not supported by "
                f"dffml-archive {__version__} (upgrade dffml-archive)"
            )
        try:
            members = [_member_from_json(item) for item in obj["members"]]
        except (KeyError, TypeError, ValueError) as error:
            raise corrupt(f"manifest member list is malformed ({error!r})") from None
        return cls(
            members=members,
            model=obj.get("model"),
            created_by=obj.get("created_by") or {},
            version=obj["version"],
        )


def _dumps(value) -> str:
    # Compact: indentation forces json's pure-Python encoder, a measurable
    # cost with thousands of members (inspect pretty-prints).
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


_json_string = json.encoder.encode_basestring  # what ensure_ascii=False writes


def _member_json(member: ManifestMember) -> str:
    """``_dumps(member.to_json())``, at a third of the cost."""
    if type(member.mode) is not int or type(member.size) is not int:
        return _dumps(member.to_json())
    if member.type == "directory":
        return '{"mode":"%04o","path":%s,"type":"directory"}' % (
            member.mode, _json_string(member.path),
        )
    if member.type == "file" and type(member.sha256) is str:
        return '{"mode":"%04o","path":%s,"sha256":%s,"size":%d,"type":"file"}' % (
            member.mode, _json_string(member.path), _json_string(member.sha256), member.size,
        )
    return _dumps(member.to_json())


def _corrupt(archive, reason):
    return CorruptArchiveError(archive, reason, member=C.MANIFEST_NAME)


def _member_from_json(item) -> ManifestMember:
    if not isinstance(item["path"], str) or not isinstance(item["mode"], str):
        raise ValueError("member path and mode must be strings")
    kind = item["type"]
    if kind not in ("file", "directory"):
        raise ValueError(f"unknown member type {kind!r}")
    if kind == "file":
        size = int(item["size"])
        sha256 = str(item["sha256"])
        if size < 0 or len(sha256) != 64:
            raise ValueError(f"bad size or sha256 for {item['path']!r}")
        return ManifestMember(item["path"], kind, int(item["mode"], 8), size, sha256)
    return ManifestMember(item["path"], kind, int(item["mode"], 8))
