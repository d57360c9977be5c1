"""gc and verify: what keeps a repository small and honest.

gc removes images no version uses, then blobs no image or attachment uses
and no save has claimed within the grace period, then what killed saves
left behind (temporary files, unfinished multipart uploads).  A save claims
its blobs (a committed row in ``blobs``) before it checks that the store
holds them, and gc deletes a blob only while it holds that row (a row lock
on PostgreSQL, the write lock on SQLite): so gc on one host never removes a
blob that a save on another host is about to reference.  Saves on this host
are also waited for through the repository's gc lock.

verify hashes every referenced blob and names the versions and members each
damaged or missing one belongs to.  It reads only the repository itself.
"""
import dataclasses
import fcntl
import os
import re
import time
from typing import Dict, List, Optional, Tuple

from sqlalchemy import and_, delete, select

from .. import _constants as C
from .._api import in_thread
from .._atomic import remove_abandoned_directories
from .._manifest import Manifest
from . import _schema as S
from ._images import STAGE_PREFIX
from ._store import Repository

_STAGE = re.compile(re.escape(STAGE_PREFIX) + r"\w+")


@dataclasses.dataclass
class GcReport:
    images: int = 0
    blobs: int = 0
    freed_bytes: int = 0
    uploads_freed_bytes: int = 0


async def gc(store: Repository, grace_seconds: Optional[float] = None) -> GcReport:
    """Remove what nothing references any more (see the module docstring)."""
    grace = C.GC_GRACE_SECONDS if grace_seconds is None else grace_seconds
    report = GcReport()
    store.require_writable()
    fd = await in_thread(store._lock_gc, fcntl.LOCK_EX)
    try:
        cutoff = time.time() - grace
        async with store.transaction() as db:
            used = select(S.versions.c.image)
            result = await db.execute(delete(S.images).where(S.images.c.digest.not_in(used)))
            report.images = result.rowcount or 0
            candidates = [digest for (digest,) in await db.execute(
                select(S.blobs.c.digest).where(_unused(cutoff))
            )]
            claimed = {digest for (digest,) in await db.execute(select(S.blobs.c.digest))}
        for digest in candidates:
            report.freed_bytes += await _delete_if_still_unused(store, digest, cutoff, report)
        # Objects without a claim (older stores, a lost deletion) past the grace period.
        async for digest, size, modified in store.blobs.listing():
            if digest not in claimed and modified < cutoff:
                await store.blobs.delete(digest)
                report.blobs += 1
                report.freed_bytes += size
        report.uploads_freed_bytes = await _remove_abandoned(store, grace)
    finally:
        os.close(fd)
    return report


def _unused(cutoff: float):
    return and_(
        S.blobs.c.claimed < cutoff,
        S.blobs.c.digest.not_in(select(S.image_blobs.c.blob)),
        S.blobs.c.digest.not_in(select(S.attachments.c.blob)),
    )


async def _delete_if_still_unused(store, digest: str, cutoff: float, report) -> int:
    """Delete one blob while holding its claim row (a save claiming it now
    waits, then finds it gone and uploads it again)."""
    async with store.transaction() as db:
        row = (await db.execute(
            select(S.blobs.c.size).where(and_(S.blobs.c.digest == digest, _unused(cutoff)))
            .with_for_update()
        )).first()
        if row is None:
            return 0
        await store.blobs.delete(digest)
        await db.execute(delete(S.blobs).where(S.blobs.c.digest == digest))
    report.blobs += 1
    return row.size


async def _remove_abandoned(store: Repository, grace: float) -> int:
    freed = 0
    if hasattr(store.blobs, "remove_abandoned_uploads"):
        freed += await in_thread(store.blobs.remove_abandoned_uploads, grace)
    if hasattr(store.blobs, "remove_abandoned_uploads_async"):
        await store.blobs.remove_abandoned_uploads_async(grace)
    await in_thread(remove_abandoned_directories, store.root / "tmp", _STAGE, grace)
    return freed


@dataclasses.dataclass
class Damage:
    """One blob that does not hash to its name, and where it is used."""

    blob: str
    found: str  # "missing" or the sha256 it has
    used_by: List[Tuple[str, str]]  # (NAME:VERSION, member path or "attachment NAME")


async def verify(store: Repository, progress=None) -> Tuple[int, List[Damage]]:
    """(blobs checked, damaged ones)."""
    uses: Dict[str, List[Tuple[str, str]]] = {}
    async with store.transaction() as db:
        rows = await db.execute(
            select(S.repositories.c.name, S.versions.c.version, S.images.c.manifest)
            .join(S.versions, S.versions.c.repository_id == S.repositories.c.id)
            .join(S.images, S.images.c.digest == S.versions.c.image)
        )
        for name, version, manifest_bytes in rows:
            reference = f"{name}:{version}"
            manifest = Manifest.from_bytes(reference, manifest_bytes)
            for member in manifest.members:
                if member.type == "file":
                    uses.setdefault(member.sha256, []).append((reference, member.path))
        rows = await db.execute(
            select(S.repositories.c.name, S.versions.c.version, S.attachments.c.name,
                   S.attachments.c.blob)
            .join(S.versions, S.versions.c.repository_id == S.repositories.c.id)
            .join(S.attachments, S.attachments.c.version_id == S.versions.c.id)
        )
        for name, version, attachment, blob in rows:
            uses.setdefault(blob, []).append((f"{name}:{version}", f"attachment {attachment}"))
    damaged = []
    for index, blob in enumerate(sorted(uses)):
        found = await store.blobs.check(blob)
        if found is not None:
            damaged.append(Damage(blob, found, uses[blob]))
        if progress is not None:
            progress(index + 1, len(uses))
    return len(uses), damaged
