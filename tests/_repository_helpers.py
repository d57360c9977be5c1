"""Reaching behind the repository's back (what a damaged disk or a careless
admin does), for either blob store: local files or S3 objects."""
import contextlib
import os


async def stored_digests(repo) -> set:
    return {digest async for digest, _, _ in repo.blobs.listing()}


async def replace_blob(repo, digest: str, data: bytes) -> None:
    if hasattr(repo.blobs, "client"):  # S3: overwrite the object, drop the read cache
        await repo.blobs.client.put_object(
            Bucket=repo.blobs.bucket, Key=repo.blobs.key(digest), Body=data
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(repo.blobs.cached_path(digest))
        return
    path = repo.blobs.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(data)


async def remove_blob(repo, digest: str) -> None:
    if hasattr(repo.blobs, "client"):
        await repo.blobs.client.delete_object(Bucket=repo.blobs.bucket, Key=repo.blobs.key(digest))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(repo.blobs.cached_path(digest))
        return
    repo.blobs.path(digest).unlink()
