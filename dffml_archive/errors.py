"""The exception hierarchy.  Every message names the archive, the member (when
there is one) and the reason, and says what to do where there is something to do."""
import contextlib
import errno
import os
import re

#: The public names (exported by the package).  ``ModelArchiveNotFound``
#: lives in :mod:`dffml_archive.model`: it is also DFFML's ``ModelNotTrained``,
#: and importing dffml here would slow every command down.
__all__ = [
    "ArchiveError",
    "UnsupportedArchiveError",
    "UnsafeArchiveError",
    "ArchiveLimitError",
    "CorruptArchiveError",
    "ModelInfoError",
    "ConfigMismatchError",
    "WrongBackendError",
    "ArchiveSourceError",
    "DestinationError",
    "ArchiveWriteError",
    "RepositoryError",
    "ReferenceNotFoundError",
    "BadReferenceError",
    "CorruptBlobError",
    "ExperimentError",
    "DefinitionError",
    "ComputeContextError",
    "VersionFailedError",
    "ArchiveWarning",
    "UnverifiedArchiveWarning",
    "ArchiveNotUpdatedWarning",
    "ArchiveLockWaitWarning",
    "HubError",
    "HubSourceError",
    "HubDownloadError",
    "HubIntegrityError",
    "HubOfflineError",
    "HubLockTimeoutError",
]


class ArchiveError(Exception):
    """Base class of every error raised by dffml-archive."""

    def __init__(self, archive, reason, member=None, hint=None):
        self.archive = str(archive) if archive is not None else None
        self.member = member
        self.reason = reason
        self.hint = hint
        super().__init__(self._message())

    def _message(self):
        where = self.archive or "archive"
        if self.member is not None:
            where += f": member {self.member!r}"
        text = f"{where}: {self.reason}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class UnsupportedArchiveError(ArchiveError):
    """Unknown extension, or content that does not match the extension."""


class UnsafeArchiveError(ArchiveError):
    """A member that could escape, overwrite or smuggle something on extraction."""


class ArchiveLimitError(UnsafeArchiveError):
    """An extraction limit (size, member count, compression ratio) was exceeded."""


class CorruptArchiveError(ArchiveError):
    """Damaged, truncated or tampered with: it does not match its manifest."""


class ModelInfoError(CorruptArchiveError):
    """The manifest's model section (entry point, upstream, extra, config) is
    not what a dffml-archive model writes: it was edited or made by hand."""


class ConfigMismatchError(ArchiveError):
    """The options given differ from the configuration stored in the archive."""


class WrongBackendError(ArchiveError):
    """The archive holds a model of another backend."""


class ArchiveSourceError(ArchiveError):
    """The directory to pack holds something an archive must not store."""


class DestinationError(ArchiveError):
    """The extraction destination cannot be used as asked."""


class ArchiveWriteError(ArchiveError):
    """The archive cannot be written there (permissions, a read-only or full
    disk, a directory in the way).  A previous archive is left unchanged."""


class RepositoryError(ArchiveError):
    """Base class of the model repository's errors.  ``archive`` is what the
    error is about: a reference (``credit-risk:3``) or the repository root."""


class ReferenceNotFoundError(RepositoryError, LookupError):
    """No such repository, version or tag."""


class BadReferenceError(RepositoryError, ValueError):
    """A repository name, tag, version or ``models:`` location that is not
    well formed (``../x``, empty, control characters, a reserved tag)."""


class CorruptBlobError(RepositoryError, CorruptArchiveError):
    """A stored member's bytes no longer match the sha256 they are stored
    under: the repository's disk changed them.  ``member`` names it."""


_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def shown(text) -> str:
    """``text`` safe to print: control characters (newlines, terminal escape
    sequences) as ``\\xNN`` escapes, so that text read from an archive can
    never forge a line or colour a terminal."""
    return _CONTROL_CHARACTERS.sub(lambda found: repr(found.group())[1:-1], str(text))


#: errno -> (why, what to do), for the failures a user can act on.
_OS_ERROR_ADVICE = {
    errno.EACCES: ("permission denied", "choose a place you may write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a place you may write to"),
    errno.EROFS: ("read-only file system", "choose a writable place"),
    errno.ENOSPC: ("no space left on the device", "free some space, then try again"),
    errno.EDQUOT: ("disk quota exceeded", "free some space, then try again"),
    errno.EISDIR: ("a directory is in the way", "choose a path that is not a directory"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "check the path"),
    errno.EEXIST: ("a part of the path is a file, not a directory", "check the path"),
    errno.ENAMETOOLONG: (
        "a name in the path is longer than the file system allows (255 bytes a name)",
        "choose a shorter name",
    ),
}

#: Errors that come from writing, never from reading a source or an archive.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def explain_os_error(error: OSError, doing: str, reading: bool = False):
    """(reason, hint) for ``error``, raised while ``doing`` (a phrase naming
    the path a user knows, never a hidden temporary file)."""
    why, hint = _OS_ERROR_ADVICE.get(error.errno, (error.strerror or str(error), None))
    if reading and error.errno in (errno.EACCES, errno.EPERM):
        hint = "fix its permissions, or run as a user who may read it"
    return f"{doing}: {why}", hint


@contextlib.contextmanager
def os_errors_as(error_class, subject, doing: str, hint: str = None):
    """Raise an OSError from inside as ``error_class(subject, ...)`` (with
    ``hint`` instead of the usual advice, when given)."""
    try:
        yield
    except OSError as error:
        reason, usual_hint = explain_os_error(error, doing)
        raise error_class(subject, reason, hint=hint or usual_hint) from error


def cache_errors(subject, directory):
    """OSErrors while using the cache at ``directory``, said as such."""
    return os_errors_as(
        ArchiveError, subject, f"cannot use the cache directory {str(directory)!r}",
        hint="set DFFML_ARCHIVE_CACHE to a writable directory",
    )


def parent_directory(path) -> str:
    """The directory ``path`` is in, absolute (for messages and checks)."""
    return os.path.dirname(os.path.abspath(path))


class ArchiveWarning(UserWarning):
    """Base class of every warning of dffml-archive."""


class UnverifiedArchiveWarning(ArchiveWarning):
    """Extracted an archive without a manifest: sizes and hashes not checked."""


class ArchiveNotUpdatedWarning(ArchiveWarning):
    """Reading a model (``predict``, ``accuracy``) changed its state (scikit
    stores the confidence ``accuracy`` measures), but the archive cannot be
    written: the results stand, the changed state is not kept."""


class ArchiveLockWaitWarning(ArchiveWarning):
    """Another process (or thread) holds the archive's lock: waiting for it."""


class HubError(ArchiveError):
    """Base class of the model hub's errors; ``archive`` is the source
    (``hf:org/name/file``, a URL) or the cache path the error is about."""


class HubSourceError(HubError, ValueError):
    """A source, revision or file name that is not well formed or not safe
    (``..``, an absolute path, control characters)."""


class HubDownloadError(HubError):
    """The server refused or kept failing (404, 5xx after every retry,
    timeouts, a body shorter than announced)."""


class HubIntegrityError(HubError):
    """The bytes do not match the expected sha256 (or git blob id): refused,
    nothing entered the cache."""


class HubOfflineError(HubError):
    """Offline mode (``MODELHUB_OFFLINE=1`` or ``offline=True``) and the file
    is in no cache."""


class HubLockTimeoutError(HubError):
    """Another task or process kept downloading the same file for longer
    than the lock timeout."""


class ExperimentError(ArchiveError):
    """Base class of the experiment runner's errors (``dffml service
    experiments``).  ``archive`` is the definition file, or the
    ``experiment/version`` at fault."""


class DefinitionError(ExperimentError, ValueError):
    """The experiment definition (or an allow/deny list) is not valid: the
    message names the file, the line and the key."""


class ComputeContextError(ExperimentError):
    """A version asks for resources (CPU threads, GPUs, a framework device)
    that the machine or cluster running it cannot give; raised before
    training starts."""


class VersionFailedError(ExperimentError):
    """A version's training or accuracy failed (test mode stops at the first)."""
