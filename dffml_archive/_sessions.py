"""Which archives this task has open in an ``archive_location`` session.

Its own small module so that :func:`dffml_archive.pack` can check it without
loading the location machinery (a process that only packs never needs it).
"""
import contextvars
import os

from .errors import ArchiveError

#: The sessions this task is inside: real archive path -> [WorkingCopy, depth].
#: A context variable, so nesting is per task (and its child tasks): another
#: task entering the same archive waits for the lock instead of sharing.
SESSIONS: contextvars.ContextVar = contextvars.ContextVar("dffml_archive_sessions", default={})


def refuse_inside_session(archive) -> None:
    """Packing an archive that this task has open would wait forever for its
    own lock: say so instead."""
    if os.path.realpath(archive) in SESSIONS.get():
        raise ArchiveError(
            archive,
            "is open in an archive_location session of this task",
            hint="write into the session's directory; it is saved when the session ends",
        )
