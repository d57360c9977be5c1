"""Blobs in an S3-compatible object store (AWS S3, MinIO, SeaweedFS, ...).

``s3://BUCKET/PREFIX``: blob ``D`` is the object ``PREFIX/sha256/D[:2]/D``.
The endpoint, region and credentials come from the usual AWS environment
(``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, or botocore's other sources); addressing is
path-style, which every self-hosted store understands.

Uploads stream: a member up to ``S3_PART_BYTES`` is one ``PutObject`` of
bytes already hashed; a larger one is a multipart upload whose parts go out
``S3_PARALLEL_PARTS`` at a time (memory stays bounded) while the whole file
is hashed in order, and which is completed only if the file hashes to the
name it is stored under.  A file ``ingest`` has just hashed (and whose
times lie outside the racy window) is not hashed again: its upload is
committed only if its stat (device, inode, size, mtime, ctime) is still
the one it was hashed with, the rule the hash cache trusts
(``_sources.stat_key``, ``_sources.settled``).  An interrupted upload
therefore never leaves an object a reader could take for a whole one (S3
shows a multipart object only once completed; gc aborts stale ones).  Reads go through a local read cache
(verified, least recently used out first, ``DFFML_ARCHIVE_BLOB_CACHE_BYTES``):
re-opening an image on the same host transfers nothing.
"""
import asyncio
import contextlib
import hashlib
import os
import pathlib
import time
from typing import Optional
from urllib.parse import urlparse

from .. import _constants as C
from .._api import in_thread
from ..errors import RepositoryError
from ._blobs import BlobMismatch, BlobStore, SourceChanged, _copy_hashing, _hash_file
from ._sources import settled, stat_key


def is_s3_location(location) -> bool:
    return str(location).startswith("s3://")


class S3BlobStore(BlobStore):
    def __init__(self, location: str):
        parsed = urlparse(location)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise RepositoryError(
                location, "is not an S3 location", hint="write s3://BUCKET or s3://BUCKET/PREFIX"
            )
        self.location = location.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
        self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.cache = C.cache_root() / "blobs"
        self.client = None
        self._stack = None

    # -- the connection ------------------------------------------------------

    @property
    def subject(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"{self.location}{where}"

    def key(self, digest: str) -> str:
        return f"{self.prefix}/sha256/{digest[:2]}/{digest}" if self.prefix else \
            f"sha256/{digest[:2]}/{digest}"

    async def open(self) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        self._stack = contextlib.AsyncExitStack()
        config = AioConfig(
            s3={"addressing_style": "path"}, connect_timeout=10, read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=C.S3_PARALLEL_PARTS * 2 + 8,
        )
        self.client = await self._stack.enter_async_context(get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name=self.region, config=config,
        ))
        try:
            with self.errors("cannot use the bucket"):
                await self.client.head_bucket(Bucket=self.bucket)
        except BaseException:
            await self.close()  # no unclosed connections left behind
            raise

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = self.client = None

    @contextlib.contextmanager
    def errors(self, doing: str):
        """Store failures as one RepositoryError naming the store."""
        try:
            yield
        except (BlobMismatch, SourceChanged, RepositoryError):
            raise
        except Exception as error:
            raise s3_error(self, doing, error) from error

    # -- writing -------------------------------------------------------------

    async def _exists(self, digest: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            await self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    async def missing(self, digests):
        digests = sorted(set(digests))
        limit = asyncio.Semaphore(16)

        async def probe(digest):
            async with limit:
                return digest, await self._exists(digest)

        with self.errors("cannot read the store"):
            found = await asyncio.gather(*(probe(d) for d in digests))
        return {digest for digest, exists in found if not exists}

    async def put_file(self, path, digest: str, *, take: bool = False,
                       hashed: Optional[os.stat_result] = None) -> int:
        """Upload ``path`` as blob ``digest``, its bytes checked against the
        digest while they go out; or, with ``hashed`` (the file's stat when
        it was just hashed, settled outside the racy window), checked by
        that stat staying the same until the object is committed: the hash
        cache's rule, which spares hashing every byte a second time."""
        size = os.stat(path).st_size
        with self.errors(f"cannot upload {os.fspath(path)!r}"):
            if size <= C.S3_PART_BYTES:
                data = await in_thread(_read_all, path)
                if hashed is not None:
                    _require_unchanged(path, hashed, digest)
                else:
                    actual = await in_thread(lambda: hashlib.sha256(data).hexdigest())
                    if actual != digest:
                        raise BlobMismatch(digest, actual)
                return size if await self._put_if_absent(digest, data) else 0
            await self._multipart(path, digest, size, hashed)
        return size

    async def _put_if_absent(self, digest: str, data: bytes) -> bool:
        """False if another saver stored the same bytes first."""
        from botocore.exceptions import ClientError

        try:
            await self.client.put_object(
                Bucket=self.bucket, Key=self.key(digest), Body=data, IfNoneMatch="*"
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "PreconditionFailed":
                raise
            return False
        return True

    async def _multipart(self, path, digest: str, size: int, hashed) -> None:
        key = self.key(digest)
        upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        try:
            parts = await self._upload_parts(path, key, upload_id, digest, hashed is None)
            if hashed is not None:
                _require_unchanged(path, hashed, digest)  # before the object exists
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                ))
            raise

    async def _upload_parts(self, path, key: str, upload_id: str, expected: str,
                            verify: bool) -> list:
        """Read in order (hashing when ``verify``, off the event loop so the
        parts in flight keep moving), upload up to S3_PARALLEL_PARTS at once."""
        digest = hashlib.sha256() if verify else None
        in_flight = set()
        parts = []
        handle = await in_thread(open, path, "rb")
        try:
            number = 0
            while True:
                chunk = await in_thread(handle.read, C.S3_PART_BYTES)
                if not chunk:
                    break
                if digest is not None:
                    await in_thread(digest.update, chunk)
                number += 1
                while len(in_flight) >= C.S3_PARALLEL_PARTS:
                    done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    parts += [task.result() for task in done]
                in_flight.add(asyncio.ensure_future(self._part(key, upload_id, number, chunk)))
            if in_flight:
                parts += await asyncio.gather(*in_flight)
                in_flight = set()
        finally:
            for task in in_flight:
                task.cancel()
            handle.close()
        if digest is not None and digest.hexdigest() != expected:
            raise BlobMismatch(expected, digest.hexdigest())
        return sorted(parts, key=lambda part: part["PartNumber"])

    async def _part(self, key, upload_id, number, chunk) -> dict:
        answer = await self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    async def ingest(self, paths, *, job=None, take: bool = False):
        stored = []
        for path in paths:
            hashing_began = time.time_ns()
            before = os.stat(path)
            digest = await in_thread(_hash_file, path)
            after = os.stat(path)
            if stat_key(before) != stat_key(after):
                raise SourceChanged(path)
            trusted = after if settled(stat_key(after), hashing_began) else None
            new = 0
            if await self.missing([digest]):
                try:
                    new = await self.put_file(path, digest, hashed=trusted)
                except BlobMismatch:
                    raise SourceChanged(path) from None
            stored.append((digest, after.st_size, new))
        return stored

    # -- reading -------------------------------------------------------------

    def cached_path(self, digest: str) -> pathlib.Path:
        return self.cache / digest[:2] / digest

    def local_path(self, digest: str) -> Optional[pathlib.Path]:
        path = self.cached_path(digest)
        return path if path.exists() else None

    async def _fetch(self, digest: str) -> pathlib.Path:
        """The blob in the read cache, downloaded (and verified) if needed."""
        cached = self.cached_path(digest)
        if cached.exists():
            with contextlib.suppress(OSError):
                os.utime(cached)  # recently used
            return cached
        await in_thread(lambda: cached.parent.mkdir(parents=True, exist_ok=True))
        partial = cached.with_name(f".{digest}.{os.getpid()}.{time.monotonic_ns()}.partial")
        try:
            with self.errors(f"cannot download blob {digest[:16]}..."):
                await self._download(digest, partial)
            await in_thread(os.replace, partial, cached)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
        await in_thread(self._evict)
        return cached

    async def _download(self, digest: str, target: pathlib.Path) -> None:
        from botocore.exceptions import ClientError

        try:
            answer = await self.client.get_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise BlobMismatch(digest, "missing") from None
            raise
        hashing = hashlib.sha256()
        body = answer["Body"]
        try:
            with open(target, "wb") as out:
                while True:
                    chunk = await body.read(C.CHUNK_SIZE)
                    if not chunk:
                        break
                    hashing.update(chunk)
                    await in_thread(out.write, chunk)
        finally:
            body.close()
        if hashing.hexdigest() != digest:
            raise BlobMismatch(digest, hashing.hexdigest())

    def _evict(self) -> None:
        """Least recently used out first, down to the cache's size bound."""
        limit = C.blob_cache_bytes()
        files = []
        for directory, _, names in os.walk(self.cache):
            for name in names:
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    st = os.stat(path)
                    files.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= limit:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size

    async def copy_to(self, digest: str, destination, mode: int) -> None:
        for attempt in (1, 2):
            cached = await self._fetch(digest)

            def copy():
                with open(cached, "rb") as source, open(destination, "xb") as out:
                    actual, _ = _copy_hashing(source, out, bytearray(C.CHUNK_SIZE))
                if actual != digest:
                    os.unlink(destination)
                    os.unlink(cached)  # a damaged cache entry: fetch it again
                    return False
                os.chmod(destination, mode)
                return True

            if await in_thread(copy):
                return
        raise BlobMismatch(digest, "damaged twice in the local read cache")

    async def check(self, digest: str) -> Optional[str]:
        partial = self.cache / f".check.{os.getpid()}.{time.monotonic_ns()}"
        await in_thread(lambda: self.cache.mkdir(parents=True, exist_ok=True))
        try:
            with self.errors("cannot read the store"):
                await self._download(digest, partial)
            return None
        except BlobMismatch as mismatch:
            return mismatch.actual
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)

    # -- gc --------------------------------------------------------------------

    async def delete(self, digest: str) -> None:
        with self.errors("cannot delete from the store"):
            await self.client.delete_object(Bucket=self.bucket, Key=self.key(digest))
        with contextlib.suppress(OSError):
            os.unlink(self.cached_path(digest))

    async def listing(self):
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = self.key("00")[: -len("00/00")]
        with self.errors("cannot list the store"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    digest = item["Key"].rsplit("/", 1)[-1]
                    if len(digest) == 64:
                        yield digest, item["Size"], item["LastModified"].timestamp()

    async def remove_abandoned_uploads_async(self, grace_seconds: float) -> int:
        """Abort multipart uploads older than the grace period (killed saves)."""
        cutoff = time.time() - grace_seconds
        aborted = 0
        with self.errors("cannot list unfinished uploads"):
            answer = await self.client.list_multipart_uploads(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for upload in answer.get("Uploads", []):
                if upload["Initiated"].timestamp() < cutoff:
                    await self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted


def _require_unchanged(path, hashed: os.stat_result, digest: str) -> None:
    """BlobMismatch unless ``path`` is still the file hashed as ``digest``."""
    if stat_key(os.stat(path)) != stat_key(hashed):
        raise BlobMismatch(digest, "the file changed after it was hashed")


def _read_all(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def s3_error(store: S3BlobStore, doing: str, error: Exception) -> RepositoryError:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "") if hasattr(
        error, "response") else ""
    text = str(error)
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
        reason, hint = "the store refused the credentials", (
            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    elif code in ("NoSuchBucket",) or (code == "404" and "HeadBucket" in text):
        reason, hint = f"bucket {store.bucket!r} does not exist", "create it, or fix the location"
    elif type(error).__name__ in ("EndpointConnectionError", "ConnectTimeoutError",
                                  "ConnectionClosedError", "ReadTimeoutError",
                                  "ClientConnectorError", "ServerDisconnectedError",
                                  "ClientOSError") or isinstance(error, OSError):
        reason, hint = "cannot reach the store", "check that it runs and AWS_ENDPOINT_URL"
    else:
        reason, hint = text.splitlines()[0] if text else type(error).__name__, None
    return RepositoryError(store.subject, f"{doing}: {reason}", hint=hint)
