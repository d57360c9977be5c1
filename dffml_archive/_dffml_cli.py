"""One-line errors and warnings on the ``dffml`` command line.

dffml's CLI lets every exception out, so a user's mistake (an archive that
does not exist, options that differ from the stored ones, a read-only
location) printed 30-60 lines of traceback with our message at the bottom.
In a ``dffml`` process only, and for our errors only (each names the file or
option at fault and what to do), the message is printed as one line and the
process exits with status 1.  ``-log debug`` or ``DFFML_ARCHIVE_TRACEBACK=1``
keeps the traceback.

Our warnings likewise print as one ``warning: ...`` line instead of Python's
``file:line: Category: message`` followed by the source line that warned;
other libraries' warnings are left as they are.
"""
import logging
import os
import sys
import warnings

from . import _constants as C
from .errors import ArchiveError, ArchiveWarning


def is_dffml_command_line() -> bool:
    program = sys.argv[0] if sys.argv else ""
    return os.path.basename(program) == "dffml" or program.endswith(
        os.path.join("dffml", "__main__.py")
    )


def _wants_traceback() -> bool:
    return C.tracebacks_wanted() or logging.getLogger().isEnabledFor(logging.DEBUG)


def install_one_line_errors() -> None:
    """Chain an excepthook for our errors and a ``showwarning`` for our
    warnings (once each, and only in ``dffml``)."""
    if not is_dffml_command_line():
        return
    _install_one_line_warnings()
    if getattr(sys.excepthook, "dffml_archive", False):
        return
    previous = sys.excepthook

    def one_line_errors(kind, error, traceback):
        if issubclass(kind, ArchiveError) and not _wants_traceback():
            print(f"error: {error}", file=sys.stderr)
        else:
            previous(kind, error, traceback)

    one_line_errors.dffml_archive = True
    sys.excepthook = one_line_errors


def _install_one_line_warnings() -> None:
    previous = warnings.showwarning
    if getattr(previous, "dffml_archive", False):
        return

    def one_line_warnings(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ArchiveWarning) and not _wants_traceback():
            try:
                print(f"warning: {message}", file=file or sys.stderr, flush=True)
            except OSError:  # no stderr to warn on: as Python's own does
                pass
        else:
            previous(message, category, filename, lineno, file, line)

    one_line_warnings.dffml_archive = True
    warnings.showwarning = one_line_warnings
