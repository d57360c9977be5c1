"""The exception hierarchy.  Every message names the archive, the member (when
there is one) and the reason, and says what to do where there is something to do."""


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


class ArchiveSourceError(ArchiveError):
    """The directory to pack holds something an archive must not store."""


class DestinationError(ArchiveError):
    """The extraction destination cannot be used as asked."""


class UnverifiedArchiveWarning(UserWarning):
    """Extracted an archive without a manifest: sizes and hashes not checked."""
