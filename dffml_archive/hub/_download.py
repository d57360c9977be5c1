"""One file over HTTP(S), streamed: bounded memory, hashed while it arrives,
written to a partial file that is renamed only when complete and verified,
resumed with ``Range`` after a dropped connection, retried with backoff on
5xx, 429, timeouts and connection errors."""
import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import os
import pathlib
from typing import Callable, Optional

import httpx

from .. import _constants as C
from .._api import in_thread
from .._atomic import fsync_directory
from ..errors import HubDownloadError, HubIntegrityError
from ._locks import UNSUPPORTED_LOCK_ERRORS, touch_while


@dataclasses.dataclass
class Expected:
    """What the bytes must be: a sha256, a git blob id (a Hugging Face
    ETag of a small file), a size, or a sha256 prefix (torch's
    ``name-<prefix>.pth`` convention).  ``None`` for what is not known."""

    sha256: Optional[str] = None
    git_sha1: Optional[str] = None
    size: Optional[int] = None
    sha256_prefix: Optional[str] = None

    @property
    def anything(self) -> bool:
        return bool(self.sha256 or self.git_sha1 or self.sha256_prefix)


class _Hashes:
    def __init__(self, expected: Expected):
        self.expected = expected
        self.reset()

    def reset(self):
        self.sha256 = hashlib.sha256()
        self.git = None
        if self.expected.git_sha1 and self.expected.size is not None:
            self.git = hashlib.sha1(f"blob {self.expected.size}\0".encode())
        self.size = 0

    def update(self, block: bytes):
        self.sha256.update(block)
        if self.git is not None:
            self.git.update(block)
        self.size += len(block)

    def check(self, source) -> str:
        """The sha256, or :class:`HubIntegrityError` saying what differs."""
        expected, found = self.expected, self.sha256.hexdigest()
        problem = None
        if expected.size is not None and self.size != expected.size:
            problem = f"{self.size} bytes arrived, {expected.size} expected (truncated or padded)"
        elif expected.sha256 and found != expected.sha256:
            problem = f"sha256 {found}, expected {expected.sha256}"
        elif expected.sha256_prefix and not found.startswith(expected.sha256_prefix):
            problem = f"sha256 {found} does not start with {expected.sha256_prefix} (its file name)"
        elif expected.git_sha1 and (self.git is None or self.git.hexdigest() != expected.git_sha1):
            problem = f"git blob id differs from the ETag {expected.git_sha1}"
        if problem:
            raise HubIntegrityError(source, f"corrupt download refused: {problem}",
                                    hint="nothing entered the cache; try again, or check the "
                                    "checksum you gave")
        return found


class _Retry(Exception):
    pass


def partial_path(target: pathlib.Path, url: str, expected: Expected) -> pathlib.Path:
    """The partial file of ``target``: one per URL and expected content, so a
    partial is only ever resumed with the bytes it was started with."""
    key = hashlib.sha256(f"{url}\0{expected}".encode()).hexdigest()[:12]
    return target.with_name(f".{target.name}.{key}{C.HUB_PARTIAL_SUFFIX}")


async def copy_verified(source_file, target: pathlib.Path, expected: Expected, source) -> str:
    """Copy a framework cache's file into the cache, hashed on the way:
    the copy enters only if it matches ``expected``."""
    def copy():
        hashes = _Hashes(expected)
        temp = partial_path(target, str(source_file), expected)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(source_file, "rb") as reader, open(temp, "wb") as writer:
                for block in iter(lambda: reader.read(C.HUB_CHUNK_SIZE), b""):
                    hashes.update(block)
                    writer.write(block)
                writer.flush()
                os.fsync(writer.fileno())
            digest = hashes.check(source)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        fsync_directory(target.parent)
        return digest

    return await in_thread(copy)


async def fetch(
    client: httpx.AsyncClient, url: str, target: pathlib.Path, expected: Expected, *,
    source: str, attempts: int = C.HUB_ATTEMPTS, backoff: float = C.HUB_BACKOFF_SECONDS,
    progress: Optional[Callable[[int, int], None]] = None,
) -> str:
    """Download ``url`` into ``target`` (the caller holds its download lock);
    returns the sha256.  A mismatch removes the partial file; a network
    failure after every try keeps it, to be resumed next time."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target, url, expected)
    await in_thread(_remove_dead_partials, target, partial)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    with contextlib.ExitStack() as stack:
        stack.callback(os.close, fd)
        _flock_if_possible(fd)  # tells prune it is alive (this host)
        beating = asyncio.ensure_future(touch_while(partial))  # (other hosts)
        stack.callback(beating.cancel)
        with os.fdopen(os.dup(fd), "r+b") as handle:
            hashes = _Hashes(expected)
            await in_thread(_rehash, handle, hashes)
            await _transfer(client, url, handle, hashes, expected, source, attempts,
                            backoff, progress)
            try:
                digest = hashes.check(source)
            except HubIntegrityError:
                os.unlink(partial)
                raise
            await in_thread(_sync, handle)
        os.replace(partial, target)
        fsync_directory(target.parent)
        return digest


def _flock_if_possible(fd) -> None:
    """A filesystem without flock was accepted in lease mode only (see
    HubCache.locked), where the partial's heartbeat tells prune instead."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as error:
        if error.errno not in UNSUPPORTED_LOCK_ERRORS:
            raise


def _remove_dead_partials(target: pathlib.Path, keep: pathlib.Path) -> None:
    """Partial files of ``target`` for another URL or checksum, left by
    downloads that died (the caller holds the target's lock, so none is
    being written; an ``flock`` check spares one anyway)."""
    prefix = f".{target.name}."
    for entry in os.scandir(target.parent):
        if (entry.name.startswith(prefix) and entry.name.endswith(C.HUB_PARTIAL_SUFFIX)
                and entry.name != keep.name and entry.is_file(follow_symlinks=False)):
            with contextlib.suppress(OSError):
                fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.unlink(entry.path)
                finally:
                    os.close(fd)


def _rehash(handle, hashes):
    """Hash what an earlier try left, to resume after it."""
    handle.seek(0)
    for block in iter(lambda: handle.read(C.HUB_CHUNK_SIZE), b""):
        hashes.update(block)
    if hashes.expected.size is not None and hashes.size > hashes.expected.size:
        _restart(handle, hashes)


def _restart(handle, hashes):
    handle.seek(0)
    handle.truncate()
    hashes.reset()


def _sync(handle):
    handle.flush()
    os.fsync(handle.fileno())


def _write(handle, hashes, block):
    handle.write(block)
    hashes.update(block)


async def _transfer(client, url, handle, hashes, expected, source, attempts, backoff, progress):
    failure = None
    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(min(backoff * 2 ** (attempt - 1), C.HUB_BACKOFF_MAX_SECONDS))
        if expected.size is not None and hashes.size == expected.size:
            return  # an earlier try got every byte
        try:
            await _one_request(client, url, handle, hashes, source, progress)
            return
        except _Retry as error:
            failure = str(error)
        except httpx.TimeoutException:
            failure = "timed out"
        except httpx.TransportError as error:  # dropped connections, short bodies
            failure = f"{type(error).__name__}: {error}"
    raise HubDownloadError(
        source, f"download failed after {attempts} tries ({failure}); "
        f"{hashes.size} bytes kept to resume from",
        hint="try again later (it resumes), or set MODELHUB_OFFLINE=1 to use the cache only",
    )


async def _one_request(client, url, handle, hashes, source, progress):
    headers = {"Accept-Encoding": "identity"}
    if hashes.size:
        headers["Range"] = f"bytes={hashes.size}-"
    async with client.stream("GET", url, headers=headers) as response:
        status = response.status_code
        if status == 416 and hashes.size:
            await in_thread(_restart, handle, hashes)
            raise _Retry("the server refused to resume (416): starting again")
        if status in (408, 429) or status >= 500:
            raise _Retry(f"HTTP {status}")
        if status >= 400:
            raise HubDownloadError(source, f"the server answered HTTP {status} for {url}",
                                   hint="check the source" if status == 404 else None)
        if status == 206 and not _resumes_at(response, hashes.size):
            await in_thread(_restart, handle, hashes)
            raise _Retry("the server resumed at another offset: starting again")
        if status != 206 and hashes.size:
            await in_thread(_restart, handle, hashes)  # 200: the whole file again
        handle.seek(hashes.size)
        length = response.headers.get("Content-Length")
        total = hashes.size + int(length) if length and length.isdigit() else 0
        # Blocks gathered up to HUB_CHUNK_SIZE and written off the loop;
        # what arrived before a dropped connection is written too (resumed).
        # One write in flight while the next block arrives (at most two
        # blocks in memory).
        pending, held, writing = [], 0, None
        try:
            async for block in response.aiter_raw():
                pending.append(block)
                held += len(block)
                if held >= C.HUB_CHUNK_SIZE:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(
                        in_thread(_write, handle, hashes, b"".join(pending)))
                    pending, held = [], 0
                    if progress is not None:
                        progress(hashes.size, total)
        finally:
            if writing is not None:
                await writing
            if pending:
                await in_thread(_write, handle, hashes, b"".join(pending))


def _resumes_at(response, offset) -> bool:
    value = response.headers.get("Content-Range", "")
    unit, _, span = value.partition(" ")
    start = span.split("-", 1)[0]
    return unit == "bytes" and start.isdigit() and int(start) == offset
