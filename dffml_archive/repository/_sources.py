"""Saving a directory: its members and their sha256, each file read at most once.

A file is read once, copied into the blob store and hashed in the same pass
(the copy is kept only if the store lacks it).  A file whose stats (device,
inode, size, mtime, ctime) are what they were when an earlier save of the
same directory hashed it is not read at all: its sha256 comes from the hash
cache (``hashes/`` in the cache, see :mod:`dffml_archive._cache`), the way
git's index spares unchanged files.  An entry is trusted only if the file's
mtime and ctime fell more than ``RACY_WINDOW_NS`` before that hashing
began: a file rewritten within one timestamp tick of being read could keep
its stats with other content.  ctime cannot be set by users, so a file put
back with an old mtime is read again.  A missing, damaged or foreign cache
only means reading everything.
"""
import json
import os
import time
from typing import Dict, Optional, Tuple

from .. import _cache
from .. import _constants as C
from .._api import in_thread
from .._atomic import atomic_replace
from .._manifest import ManifestMember
from ..errors import ArchiveSourceError
from ._blobs import SourceChanged

_CACHE_FORMAT = 1


def stat_key(st) -> list:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _load(directory) -> Tuple[Dict[str, list], int]:
    """(relative path -> [stat key, sha256], when that hashing began)."""
    try:
        with open(_cache.hash_cache_path(directory), "rb") as handle:
            data = json.loads(handle.read())
        if data.get("format") != _CACHE_FORMAT or data.get("directory") != os.path.realpath(
            directory
        ):
            return {}, 0
        return dict(data["files"]), int(data["hashed_ns"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, 0


def _store(directory, files: Dict[str, list], hashed_ns: int) -> None:
    """Best effort: a cache that cannot be written costs the next save time."""
    path = _cache.hash_cache_path(directory)
    data = {"format": _CACHE_FORMAT, "directory": os.path.realpath(directory),
            "hashed_ns": hashed_ns, "files": files}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_replace(path) as temporary:
            temporary.write_text(json.dumps(data, separators=(",", ":")))
    except OSError:
        pass


def settled(key: list, hashed_ns: int) -> bool:
    """Whether the file of stat ``key`` last changed more than the racy
    window before its hashing began at ``hashed_ns``: any later change
    then changes its key, so an unchanged key vouches for the digest."""
    return max(key[3], key[4]) < hashed_ns - C.RACY_WINDOW_NS


def _trusted(entry: Optional[list], key: list, hashed_ns: int) -> Optional[str]:
    if not entry or entry[0] != key or not settled(key, hashed_ns):
        return None
    return entry[1]


def _known_digests(directory, members) -> Tuple[Dict[str, str], Dict[str, list]]:
    """(relative path -> sha256 for the files the cache vouches for, the
    stat key of every file now)."""
    cached, hashed_ns = _load(directory)
    known, keys = {}, {}
    for member, path in members:
        if path is None:
            continue
        key = stat_key(os.stat(path, follow_symlinks=False))
        keys[member.path] = key
        digest = _trusted(cached.get(member.path), key, hashed_ns)
        if digest is not None:
            known[member.path] = digest
    return known, keys


async def directory_members(store, directory, subject):
    """Every member of ``directory`` with its sha256, each file's bytes in
    the blob store unless the hash cache vouched for it; returns ([(member,
    file, whether the file may be taken)], bytes newly stored).  The caller
    claims and checks all the blobs afterwards (``_images._store_blobs``)."""
    from .._pack import scanned_tree
    from .._safety import is_within

    # A tree of our own (an extracted archive, a training session) is never
    # seen again: no cache for it, and its files may be linked, not copied.
    ours = is_within(os.path.realpath(directory), os.path.realpath(store.root / "tmp"))
    hashing_began = time.time_ns()
    members = await in_thread(scanned_tree, directory, subject)
    known, keys = ({}, {}) if ours else await in_thread(_known_digests, directory, members)
    unknown = [(member, path) for member, path in members
               if path is not None and member.path not in known]
    try:
        stored = await store.blobs.ingest([path for _, path in unknown], take=ours)
    except SourceChanged as error:
        raise _changed(subject, error.path) from None
    digests = dict(known)
    new_bytes = 0
    for (member, _), (digest, size, new) in zip(unknown, stored):
        if size != member.size:
            raise _changed(subject, os.path.join(directory, member.path))
        digests[member.path] = digest
        new_bytes += new
    result = [
        (ManifestMember(m.path, m.type, m.mode, m.size, digests.get(m.path)), path, ours)
        for m, path in members
    ]
    if not ours:
        await in_thread(_store, directory, {
            path: [keys[path], digest] for path, digest in digests.items() if path in keys
        }, hashing_began)
    return result, new_bytes


def _changed(subject, path) -> ArchiveSourceError:
    return ArchiveSourceError(
        subject, f"{os.fspath(path)!r} changed while it was being saved",
        hint="save again when nothing is writing to the model directory",
    )
