"""The cache layout: every path under the cache root, from one key function.

The root is ``$DFFML_ARCHIVE_CACHE``, else ``$XDG_CACHE_HOME/dffml-archive``,
else ``~/.cache/dffml-archive`` (:func:`dffml_archive._constants.cache_root`)::

    <root>/
    ├── locks/
    │   └── <key>.lock                 one per archive: flock of its sessions and saves
    ├── extract/
    │   ├── <key>/                     the verified extraction cache of one archive
    │   │   ├── tree/                  its working copy
    │   │   ├── state.json             archive identity + tree snapshot + manifest
    │   │   └── archive-path           the archive's real path (for pruning)
    │   └── session-XXXXXXXX/          an uncached session's working copy,
    │       └── tree/                  flocked by its process while it lives
    ├── hashes/
    │   └── <key>.json                 sha256 of a directory's files by their stats,
    │                                  so a repository save reads only what changed
    ├── rescued-<name>-<time>-<random>/        the tree of a session whose save failed
    └── rescued-<name>-<time>-<random>.model.json   and its model information

``<key>`` is :func:`archive_key`: the first 32 hex digits of the SHA-256 of
the archive's (or directory's) real path, so every spelling of one archive (relative,
through links) shares one lock and one slot.
"""
import hashlib
import os
import pathlib
import secrets
import time

from . import _constants as C

LOCKS = "locks"
EXTRACT = "extract"
TREE = "tree"
STATE_FILE = "state.json"
ARCHIVE_PATH_FILE = "archive-path"
SESSION_PREFIX = "session-"
HASHES = "hashes"
RESCUED_PREFIX = "rescued-"
MODEL_INFORMATION_SUFFIX = ".model.json"


def archive_key(archive) -> str:
    real = os.path.realpath(os.fspath(archive))
    return hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def locks_directory() -> pathlib.Path:
    return C.cache_root() / LOCKS


def lock_path(archive) -> pathlib.Path:
    return locks_directory() / f"{archive_key(archive)}.lock"


def extract_directory() -> pathlib.Path:
    return C.cache_root() / EXTRACT


def slot_path(archive) -> pathlib.Path:
    """The cached extraction slot of ``archive``."""
    return extract_directory() / archive_key(archive)


def hash_cache_path(directory) -> pathlib.Path:
    """The hash cache of ``directory`` (keyed like an archive: its real path)."""
    return C.cache_root() / HASHES / f"{archive_key(directory)}.json"


def rescue_path(archive) -> pathlib.Path:
    """Where the working directory of a session whose save failed is kept
    (its model information beside it, with MODEL_INFORMATION_SUFFIX)."""
    from ._atomic import name_within

    stamp = time.strftime("%Y%m%dT%H%M%S")
    unique = secrets.token_hex(4)
    # The name must fit the component limit with the suffix added: a long
    # archive name must never cost the rescue of a finished training.
    fixed = len(f"{RESCUED_PREFIX}--{stamp}-{unique}{MODEL_INFORMATION_SUFFIX}")
    name = name_within(pathlib.Path(archive).name, C.MAX_COMPONENT_BYTES - fixed)
    return C.cache_root() / f"{RESCUED_PREFIX}{name}-{stamp}-{unique}"
