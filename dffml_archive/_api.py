"""The async engine API.  Every byte of CPU and disk work runs in a worker
thread; the event loop only awaits.  Cancelling the awaiting task stops the
worker at its next chunk and waits for its clean-up before re-raising."""
import asyncio
import contextlib
import functools
import importlib
import sys
from typing import TYPE_CHECKING, Optional

from ._job import Job, ProgressCallback

# The workers are imported by the call that needs them: a process that only
# packs (or only reads a cached extraction) never loads the readers.
# They are imported in the worker thread: importing (compiling) modules on
# the event loop's thread stalls it for tens of milliseconds.
if TYPE_CHECKING:  # pragma: no cover
    from ._inspect import ArchiveInfo
    from ._manifest import Manifest
    from ._safety import Limits


async def run_job(function, *args, progress: Optional[ProgressCallback] = None, **kwargs):
    loop = asyncio.get_running_loop()
    relay = None
    if progress is not None:
        # Deliver progress on the loop thread, where async callers expect it.
        def relay(done, total):
            loop.call_soon_threadsafe(progress, done, total)

    job = Job(relay)
    future = loop.run_in_executor(None, functools.partial(function, *args, job=job, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        job.cancel_event.set()
        with contextlib.suppress(BaseException):
            await future
        raise


def _engine(module: str, name: str):
    """``module.name``, imported when called (in the worker thread)."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module, __package__), name)(*args, **kwargs)

    return call


async def pack(
    directory,
    archive,
    *,
    model: Optional[dict] = None,
    level: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
    caller_holds_lock: bool = False,
) -> "Manifest":
    """Pack ``directory`` into ``archive`` (format from its extension).

    The archive is replaced atomically: until the new one is complete and
    synced, the previous one is untouched.  ``model`` (JSON) is stored in
    the manifest.  ``progress(done_bytes, total_bytes)`` is called on the
    event loop.  ``caller_holds_lock`` is for code already holding the
    archive's lock (an :func:`archive_location` session saving it)."""
    # No archive_location session can be open if its module was never
    # loaded (and loading it here would stall the loop).
    location = sys.modules.get(f"{__package__}._location")
    if location is not None and not caller_holds_lock:
        location.refuse_inside_session(archive)
    return await run_job(
        _engine("._pack", "pack_directory"),
        directory,
        archive,
        model=model,
        level=level,
        progress=progress,
        caller_holds_lock=caller_holds_lock,
    )


async def extract(
    archive,
    destination,
    *,
    limits: "Optional[Limits]" = None,
    replace: bool = False,
    progress: Optional[ProgressCallback] = None,
) -> "Manifest":
    """Extract ``archive`` into ``destination`` (created if missing; it must be
    empty unless ``replace``).  Every safety rule is enforced and the content
    verified against the manifest before the tree appears at ``destination``."""
    return await run_job(
        _engine("._extract", "extract_archive"),
        archive,
        destination,
        limits=limits,
        replace=replace,
        progress=progress,
    )


async def verify(
    archive, *, limits: "Optional[Limits]" = None, progress: Optional[ProgressCallback] = None
) -> "Manifest":
    """Check every member of ``archive`` as extraction would, writing nothing.
    Raises an :class:`~dffml_archive.ArchiveError` on the first problem."""
    return await run_job(
        _engine("._extract", "verify_archive"), archive, limits=limits, progress=progress
    )


async def inspect(archive) -> "ArchiveInfo":
    """Format, size and manifest of ``archive`` (contents are not checked)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _engine("._inspect", "inspect_archive"), archive)
