"""DFFML dataflow operations: ``archive_pack``, ``archive_extract``,
``archive_verify``.

A leaf adapter, like the command line: thin wrappers over the engine's API
(:mod:`dffml_archive._api`), which the model layer calls directly.
"""
from typing import Optional

from dffml import Definition, config, field, op

from . import _constants as C
from ._api import extract, pack, verify
from ._manifest import Manifest
from ._safety import Limits
from .errors import ArchiveError

ARCHIVE_PATH = Definition(name="archive_path", primitive="str")
ARCHIVE_DIRECTORY = Definition(name="archive_directory", primitive="str")
# Outputs get definitions of their own: dffml links an operation's inputs to
# every output of the same definition, so sharing one would make pack and
# extract wait on their own results instead of the flow's inputs.
ARCHIVE_PACKED = Definition(name="archive_packed", primitive="str")
ARCHIVE_EXTRACTED = Definition(name="archive_extracted", primitive="str")
ARCHIVE_MANIFEST = Definition(name="archive_manifest", primitive="map")
ARCHIVE_VERIFIED = Definition(name="archive_verified", primitive="bool")
ARCHIVE_ERROR = Definition(name="archive_error", primitive="str")


@config
class ArchiveLimitsConfig:
    max_size: int = field(
        "Refuse archives that would extract to more bytes than this",
        default_factory=C.default_max_size,
    )
    max_members: int = field(
        "Refuse archives with more members than this",
        default_factory=C.default_max_members,
    )
    max_ratio: int = field(
        "Refuse compression ratios above this in archives without a manifest (bombs)",
        default_factory=C.default_max_ratio,
    )
    replace: bool = field(
        "Replace a non-empty destination directory", default=False
    )

    def limits(self) -> Limits:
        return Limits(self.max_size, self.max_members, self.max_ratio)


def _limits_config(config) -> "ArchiveLimitsConfig":
    # Without a config in the dataflow, dffml passes a bare BaseConfig.
    return config if isinstance(config, ArchiveLimitsConfig) else ArchiveLimitsConfig()


def _manifest_output(manifest: Manifest) -> dict:
    return {"manifest": manifest.to_json(), "verified": manifest.verified}


@op(
    name="archive_pack",
    inputs={"directory": ARCHIVE_DIRECTORY, "archive": ARCHIVE_PATH},
    outputs={"archive": ARCHIVE_PACKED, "manifest": ARCHIVE_MANIFEST},
)
async def archive_pack(directory: str, archive: str, model: Optional[dict] = None):
    """Pack ``directory`` into ``archive`` atomically (format from the extension).
    ``model`` (JSON, stored in the manifest) is for direct calls."""
    manifest = await pack(directory, archive, model=model)
    return {"archive": str(archive), "manifest": manifest.to_json()}


@op(
    name="archive_extract",
    inputs={"archive": ARCHIVE_PATH, "directory": ARCHIVE_DIRECTORY},
    outputs={
        "directory": ARCHIVE_EXTRACTED,
        "manifest": ARCHIVE_MANIFEST,
        "verified": ARCHIVE_VERIFIED,
    },
    config_cls=ArchiveLimitsConfig,
)
async def archive_extract(
    archive: str, directory: str, config: ArchiveLimitsConfig = None
):
    """Extract ``archive`` into ``directory`` through every safety check."""
    config = _limits_config(config)
    manifest = await extract(
        archive, directory, limits=config.limits(), replace=config.replace
    )
    return {"directory": str(directory), **_manifest_output(manifest)}


@op(
    name="archive_verify",
    inputs={"archive": ARCHIVE_PATH},
    outputs={
        "verified": ARCHIVE_VERIFIED,
        "error": ARCHIVE_ERROR,
        "manifest": ARCHIVE_MANIFEST,
    },
    config_cls=ArchiveLimitsConfig,
)
async def archive_verify(archive: str, config: ArchiveLimitsConfig = None):
    """Check ``archive`` completely without extracting.  A bad archive is a
    result (``verified`` false, ``error`` says why), not a failed flow."""
    config = _limits_config(config)
    try:
        manifest = await verify(archive, limits=config.limits())
    except ArchiveError as error:
        return {"verified": False, "error": str(error), "manifest": None}
    return {"error": None, **_manifest_output(manifest)}
