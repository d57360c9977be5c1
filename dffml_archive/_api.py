"""The async engine API.  Every byte of CPU and disk work runs in a worker
thread; the event loop only awaits.  Cancelling the awaiting task stops the
worker at its next chunk and waits for its clean-up before re-raising."""
import asyncio
import contextlib
import functools
from typing import TYPE_CHECKING, Optional

from ._job import Job, ProgressCallback
from ._sessions import refuse_inside_session

if TYPE_CHECKING:  # pragma: no cover
    from ._inspect import ArchiveInfo
    from ._manifest import Manifest
    from ._safety import Limits


async def in_thread(function, *args):
    """``function(*args)`` in the default executor: the one way blocking work
    (file system, hashing) leaves the event loop; :func:`run_job` is the same
    for engine jobs, with progress and cancellation.  (Here, not in ``_job``:
    the command line imports ``_job`` and never needs asyncio.)"""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


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


# The workers import their module when called, in the worker thread: a
# process that only packs (or only reads a cached extraction) never loads
# the readers, and importing (compiling) a module on the event loop's thread
# would stall it for tens of milliseconds.


def _pack_directory(*args, **kwargs):
    from ._pack import pack_directory

    return pack_directory(*args, **kwargs)


def _extract_archive(*args, **kwargs):
    from ._extract import extract_archive

    return extract_archive(*args, **kwargs)


def _verify_archive(*args, **kwargs):
    from ._extract import verify_archive

    return verify_archive(*args, **kwargs)


def _inspect_archive(archive):
    from ._inspect import inspect_archive

    return inspect_archive(archive)


async def pack(
    directory,
    archive,
    *,
    model: Optional[dict] = None,
    level: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
) -> "Manifest":
    """Pack ``directory`` into ``archive`` (format from its extension).

    The archive is replaced atomically: until the new one is complete and
    synced, the previous one is untouched.  ``model`` (JSON) is stored in
    the manifest.  ``progress(done_bytes, total_bytes)`` is called on the
    event loop."""
    refuse_inside_session(archive)
    return await run_job(
        _pack_directory, directory, archive, model=model, level=level, progress=progress
    )


async def pack_holding_the_lock(directory, archive, model: Optional[dict]) -> "Manifest":
    """:func:`pack` for the one caller that already holds the archive's lock:
    an ``archive_location`` session saving its own archive (private)."""
    return await run_job(_pack_directory, directory, archive, model=model, caller_holds_lock=True)


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
        _extract_archive, archive, destination, limits=limits, replace=replace, progress=progress
    )


async def verify(
    archive, *, limits: "Optional[Limits]" = None, progress: Optional[ProgressCallback] = None
) -> "Manifest":
    """Check every member of ``archive`` as extraction would, writing nothing.
    Raises an :class:`~dffml_archive.ArchiveError` on the first problem."""
    return await run_job(_verify_archive, archive, limits=limits, progress=progress)


async def inspect(archive) -> "ArchiveInfo":
    """Format, size and manifest of ``archive`` (contents are not checked)."""
    return await in_thread(_inspect_archive, archive)
