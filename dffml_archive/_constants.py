"""Every tunable rule of the engine in one place: defaults, names, environment.

Environment variables (all optional):

``DFFML_ARCHIVE_CACHE``
    Root of the cache (extraction cache, lock files, and the ``rescued-*``
    model directories of sessions whose save failed).  Default:
    ``$XDG_CACHE_HOME/dffml-archive`` or ``~/.cache/dffml-archive``.
``DFFML_ARCHIVE_EXTRACT_CACHE``
    ``0`` disables the verified extraction cache used by
    :func:`dffml_archive.archive_location`.
``DFFML_ARCHIVE_MAX_SIZE`` / ``DFFML_ARCHIVE_MAX_MEMBERS`` / ``DFFML_ARCHIVE_MAX_RATIO``
    Default extraction limits (bytes, members, uncompressed:compressed; the
    ratio only for archives without a manifest, after RATIO_GRACE_BYTES).
``DFFML_ARCHIVE_REPOSITORY``
    Root directory of the embedded model repository (``models:`` locations,
    ``dffml service models``).  Default: ``$XDG_DATA_HOME/dffml-archive/
    repository`` or ``~/.local/share/dffml-archive/repository``.
``DFFML_ARCHIVE_REPOSITORY_DB`` / ``DFFML_ARCHIVE_REPOSITORY_BLOBS``
    The repository's metadata database (a SQLAlchemy URL:
    ``sqlite+aiosqlite:///PATH`` or ``postgresql+asyncpg://USER@HOST/DB``) and
    blob store (a directory or ``s3://BUCKET/PREFIX``, with ``AWS_ENDPOINT_URL``,
    ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``); they take
    precedence over ``DFFML_ARCHIVE_REPOSITORY`` and its ``repository.json``.
``DFFML_ARCHIVE_BLOB_CACHE_BYTES``
    Size bound of the local read cache of blobs fetched from an S3 store
    (default 10 GiB).
``DFFML_ARCHIVE_TRACEBACK``
    ``1`` keeps the Python traceback of our errors on the ``dffml`` command
    line (by default they print as one line, as ``-log debug`` also undoes).
"""
import os
import pathlib

#: Name of the manifest member, always the first member of archives we write.
MANIFEST_NAME = ".dffml-archive-manifest.json"
MANIFEST_FORMAT = "dffml-archive-manifest"
MANIFEST_VERSION = 1

#: Fixed member timestamp: 1980-01-01T00:00:00Z, the earliest a zip can hold
#: (an mtime of 0 also makes GNU tar warn "implausibly old time stamp").
FIXED_MTIME = 315532800
FIXED_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)

#: Extracted members never keep setuid/setgid/sticky or group/world write.
ALLOWED_MODE_BITS = 0o755
#: Owners can always read/write what they extracted (and enter directories).
OWNER_FILE_BITS = 0o600
OWNER_DIR_BITS = 0o700

CHUNK_SIZE = 1 << 20
#: The compression ratio of an archive without a manifest (ours are judged by
#: the sizes their manifest declares) is only judged once this much has been
#: written, so small highly compressible files (JSON, zeros) are never refused.
RATIO_GRACE_BYTES = 16 << 20
#: A staging or session directory changed this recently is never judged
#: abandoned (its extract or session may not have locked it yet).
STAGE_GRACE_SECONDS = 60
#: A file whose mtime or ctime falls this close before a snapshot could be
#: rewritten within the same timestamp tick without its stats changing
#: (git's "racy" files): such files are compared by hash, never by stats.
RACY_WINDOW_NS = 50_000_000
#: A wait for an archive's lock longer than this is said once.
LOCK_WAIT_NOTICE_SECONDS = 1.0
#: Extraction refuses a manifest member larger than this.
MAX_MANIFEST_BYTES = 64 << 20
MAX_NAME_BYTES = 4096
MAX_COMPONENT_BYTES = 255
#: A model option written ``archive:PATH`` names PATH inside the model itself
#: (resolved against wherever it is opened: dffml_archive/_config_paths.py).
ARCHIVE_PATH_PREFIX = "archive:"


def _env_int(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(
            f"environment variable {name}={value!r} is not a positive whole number; "
            "unset it or give one"
        )
    return number


def default_max_size():
    return _env_int("DFFML_ARCHIVE_MAX_SIZE", 32 << 30)


def default_max_members():
    return _env_int("DFFML_ARCHIVE_MAX_MEMBERS", 200_000)


def default_max_ratio():
    return _env_int("DFFML_ARCHIVE_MAX_RATIO", 100)


def cache_root() -> pathlib.Path:
    explicit = os.environ.get("DFFML_ARCHIVE_CACHE")
    if explicit:  # absolute: paths in messages and commands must work anywhere
        return pathlib.Path(os.path.abspath(explicit))
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return pathlib.Path(xdg) / "dffml-archive"


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "")
    return default if value == "" else value not in ("0", "false", "no")


def extract_cache_enabled() -> bool:
    return _env_flag("DFFML_ARCHIVE_EXTRACT_CACHE", True)


def tracebacks_wanted() -> bool:
    return _env_flag("DFFML_ARCHIVE_TRACEBACK", False)


def repository_root() -> pathlib.Path:
    """The embedded model repository's root (the CLI's ``--repository``
    overrides it).  Data, not cache: it lives under XDG_DATA_HOME."""
    explicit = os.environ.get("DFFML_ARCHIVE_REPOSITORY")
    if explicit:
        return pathlib.Path(os.path.abspath(explicit))
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return pathlib.Path(data) / "dffml-archive" / "repository"


#: Model locations in the repository start with this (``models:NAME[:REF]``).
REPOSITORY_SCHEME = "models:"
#: The tag that always names a repository's newest live version.
LATEST_TAG = "latest"
#: gc leaves unreferenced blobs and abandoned uploads younger than this: a
#: save in flight (on another host sharing the store) may still use them.
GC_GRACE_SECONDS = 3600
#: SQLite waits this long for another process's write transaction.
DATABASE_BUSY_SECONDS = 60


def repository_database_url():
    return os.environ.get("DFFML_ARCHIVE_REPOSITORY_DB") or None


def repository_blobs_location():
    return os.environ.get("DFFML_ARCHIVE_REPOSITORY_BLOBS") or None


#: The repository root's optional configuration file ({"database": URL,
#: "blobs": LOCATION}), below options and the environment variables.
REPOSITORY_CONFIG_FILE = "repository.json"
#: S3 uploads: members up to this size are one PutObject; larger ones are
#: multipart uploads of parts this big, this many in flight at once.
S3_PART_BYTES = 16 << 20
S3_PARALLEL_PARTS = 4


def blob_cache_bytes() -> int:
    return _env_int("DFFML_ARCHIVE_BLOB_CACHE_BYTES", 10 << 30)


# -- the model hub (dffml_archive/hub) ----------------------------------------
# ``MODELHUB_PATH``: the hub's cache root (default ``~/.modelhub``).
# ``MODELHUB_OFFLINE=1``: no network call at all; a miss fails.
# ``HF_ENDPOINT``: the Hugging Face-style hub (default https://huggingface.co);
# ``HF_TOKEN``: its bearer token, sent to that endpoint only.
# ``MODELHUB_TORCH_ENDPOINT``: where torchvision checkpoints are fetched from
# (a mirror; default https://download.pytorch.org/models/).
# ``MODELHUB_LOCK_TIMEOUT``: seconds to wait for another download of a file.
# ``MODELHUB_LOCK_MODE``: ``flock`` (one host), ``lease`` (flock and a lease
# file: hosts sharing the cache on a network filesystem) or ``auto`` (the
# default: lease when the cache's statfs type is a network filesystem, see
# hub/_locks.py's NETWORK_FILESYSTEMS).

HUB_LOCK_FILE = "modelhub-lock.json"
HUB_LOCK_FORMAT = "dffml-archive-modelhub-lock"
HUB_LOCKS_DIRECTORY = ".locks"
HUB_PARTIAL_SUFFIX = ".partial"
HUB_DEFAULT_HF_ENDPOINT = "https://huggingface.co"
HUB_DEFAULT_TORCH_ENDPOINT = "https://download.pytorch.org/models/"
#: Tries of one download (5xx, 429, timeouts, dropped connections), with
#: exponential backoff from HUB_BACKOFF_SECONDS up to HUB_BACKOFF_MAX_SECONDS.
HUB_ATTEMPTS = 5
HUB_BACKOFF_SECONDS = 0.5
HUB_BACKOFF_MAX_SECONDS = 30.0
#: Connect and read timeouts of one request.
HUB_TIMEOUT_SECONDS = 30.0
#: Bytes a download holds in memory at once.
HUB_CHUNK_SIZE = 1 << 20
#: A partial file nobody has touched for this long is pruned at the next
#: download into its directory (a partial younger is kept to be resumed).
HUB_STALE_PARTIAL_SECONDS = 7 * 24 * 3600
#: A lease file (hub/_locks.py) not refreshed for this long is dead; its
#: holder refreshes it every HUB_LEASE_HEARTBEAT_SECONDS.  A new lease counts
#: once it still holds our token HUB_LEASE_SETTLE_SECONDS after its create
#: (some network filesystems let two O_EXCL creates both succeed).
HUB_LEASE_SECONDS = 30.0
HUB_LEASE_HEARTBEAT_SECONDS = 5.0
HUB_LEASE_SETTLE_SECONDS = 0.3
HUB_LOCK_MODES = ("auto", "flock", "lease")


def hub_root() -> pathlib.Path:
    explicit = os.environ.get("MODELHUB_PATH")
    if explicit:
        return pathlib.Path(os.path.abspath(os.path.expanduser(explicit)))
    return pathlib.Path(os.path.expanduser("~")) / ".modelhub"


def hub_offline() -> bool:
    return _env_flag("MODELHUB_OFFLINE", False)


def hub_lock_timeout() -> int:
    return _env_int("MODELHUB_LOCK_TIMEOUT", 600)


def hub_lock_mode() -> str:
    mode = (os.environ.get("MODELHUB_LOCK_MODE") or "auto").strip().lower()
    if mode not in HUB_LOCK_MODES:
        from .errors import HubError

        raise HubError("MODELHUB_LOCK_MODE", f"is {mode!r}",
                       hint="set it to auto, flock or lease, or unset it")
    return mode


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HUB_DEFAULT_HF_ENDPOINT).rstrip("/")


def torch_endpoint() -> str:
    value = os.environ.get("MODELHUB_TORCH_ENDPOINT") or HUB_DEFAULT_TORCH_ENDPOINT
    return value if value.endswith("/") else value + "/"


def torch_cache() -> pathlib.Path:
    """torch.hub's checkpoint directory, as torch computes it."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "torch",
    )
    return pathlib.Path(home) / "hub" / "checkpoints"


def hf_cache() -> pathlib.Path:
    """huggingface_hub's cache, as it computes it."""
    if os.environ.get("HF_HUB_CACHE"):
        return pathlib.Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    return pathlib.Path(home) / "hub"


def tfhub_cache() -> pathlib.Path:
    """tensorflow_hub's module cache, as it computes it for compressed
    modules (``$TFHUB_CACHE_DIR``, else ``<temp>/tfhub_modules``)."""
    import tempfile

    return pathlib.Path(os.environ.get("TFHUB_CACHE_DIR")
                        or os.path.join(tempfile.gettempdir(), "tfhub_modules"))


# -- experiments (dffml_archive/experiments/) ------------------------------------

#: Where a definition's results go, beside the definition file.
EXPERIMENT_OUTPUTS_DIRECTORY = "outputs"
#: Execution mode trains into ``<this>/<experiment>/<version><suffix>/``
#: beside the definition; test mode into ``outputs/test-models/`` (cleared).
EXPERIMENT_MODELS_DIRECTORY = "models"
#: The archive format of a version's model (any extension the engine packs).
EXPERIMENT_ARCHIVE_NAME = "model.tar.gz"
#: How much of a failed version's output (stderr) its error line and record keep.
EXPERIMENT_ERROR_TAIL_CHARS = 2000
def experiment_timeout_seconds() -> float:
    """$DFFML_ARCHIVE_EXPERIMENT_TIMEOUT: seconds a version may run before it
    is stopped as failed (unset or 0: no limit)."""
    try:
        return max(0.0, float(os.environ.get("DFFML_ARCHIVE_EXPERIMENT_TIMEOUT", "0") or 0))
    except ValueError:
        return 0.0
