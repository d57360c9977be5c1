"""``ModelHub``: ``download_model`` into the cache and ``stage_model`` into a
DFFML model archive, one implementation per kind of hub.

Order of a download: our own cache (the lock file's entry), then the
framework's own cache (a copy taken only once verified), then, unless
offline, the network under the file's download lock (re-checking the cache
once the lock is held: another task or process may have just fetched it)."""
import abc
import contextlib
import enum
import hashlib
import os
import pathlib
import re
import time
import urllib.parse
import warnings
from typing import Callable, Optional

from .. import _constants as C
from .._api import in_thread
from ..errors import HubDownloadError, HubError, HubOfflineError, HubSourceError
from ._cache import CacheEntry, HubCache
from ._download import Expected, copy_verified, fetch
from ._sources import COMMIT, SHA256, Source, check_sha256, parse_source, safe_component


class StorageType(enum.Enum):
    """COMPRESSED: the file as published; UNCOMPRESSED: an archive file
    unpacked (by our own safe extractor) beside it, its directory returned."""

    COMPRESSED = "compressed"
    UNCOMPRESSED = "uncompressed"


class ModelHub(abc.ABC):
    """One kind of hub.  ``cache``: a :class:`HubCache` or its root;
    ``offline``: None follows ``MODELHUB_OFFLINE``."""

    framework = "url"

    def __init__(self, cache=None, *, offline: Optional[bool] = None,
                 timeout: float = C.HUB_TIMEOUT_SECONDS, attempts: int = C.HUB_ATTEMPTS,
                 backoff: float = C.HUB_BACKOFF_SECONDS, lock_timeout: Optional[float] = None,
                 progress: Optional[Callable[[int, int], None]] = None):
        self.cache = cache if isinstance(cache, HubCache) else HubCache(cache, lock_timeout)
        self.offline = C.hub_offline() if offline is None else offline
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff
        self.progress = progress

    # -- the interface -------------------------------------------------------

    async def download_model(self, source, *, sha256: Optional[str] = None,
                             storage: StorageType = StorageType.COMPRESSED) -> pathlib.Path:
        """The cached file of ``source`` (downloaded if needed), or with
        UNCOMPRESSED the directory it was unpacked into."""
        parsed = parse_source(source)
        entry = await self._download(parsed, check_sha256(sha256, parsed.text))
        if StorageType(storage) is StorageType.UNCOMPRESSED:
            return await self._unpacked(entry)
        return self.cache.root / entry.path

    async def stage_model(self, source, archive, *, sha256: Optional[str] = None,
                          repository: Optional[str] = None, **options) -> pathlib.Path:
        """Download ``source`` and write it as the DFFML model archive
        ``archive`` (usable offline with ``-model-location`` and
        ``load_model``); with ``repository``, also push it there as a new
        version.  Returns the archive's path."""
        staged = await self._stage(source, pathlib.Path(archive), sha256, options)
        if repository:
            from ._stage import push_to_repository

            await push_to_repository(staged, repository, source)
        return staged

    async def _stage(self, source, archive, sha256, options):
        raise HubError(source, f"the {self.framework} hub does not stage models",
                       hint="use torch:/torchvision:, spacy: or tfhub: sources")

    # -- shared machinery ------------------------------------------------------

    def client(self):
        import httpx

        headers = {"User-Agent": "dffml-archive-modelhub"}
        return httpx.AsyncClient(timeout=self.timeout, follow_redirects=True, headers=headers)

    def _hit(self, relative: str, sha256: Optional[str]) -> Optional[CacheEntry]:
        entry = self.cache.read_entries().get(relative)
        if entry is None or (sha256 and entry.sha256 != sha256):
            return None
        path = self.cache.root / relative
        if not path.is_file() or path.stat().st_size != entry.size:
            return None
        return entry

    def _refuse_offline(self, source: Source) -> None:
        if self.offline:
            raise HubOfflineError(
                source.text, "not in the hub cache, and offline mode forbids downloading",
                hint=f"unset MODELHUB_OFFLINE (or drop --offline) once, or copy it into "
                f"{self.cache.root}",
            )

    async def _record(self, source: Source, relative, url, digest, **extra) -> CacheEntry:
        entry = CacheEntry(
            path=relative, source=extra.pop("key", source.text), framework=source.framework,
            url=url, sha256=digest, size=(self.cache.root / relative).stat().st_size,
            time=time.time(), **extra,
        )
        await self.cache.record(entry)
        return entry

    async def _fetch_locked(self, source: Source, relative, url, expected, sha256, **extra):
        """Download under the file's lock, unless a concurrent one just did."""
        self._refuse_offline(source)
        async with self.cache.locked(relative, relative):
            entry = self._hit(relative, sha256)
            if entry is not None:
                return entry
            target = self.cache.path_of(relative)
            async with self.client() as client:
                digest = await fetch(client, url, target, expected, source=source.text,
                                     attempts=self.attempts, backoff=self.backoff,
                                     progress=self.progress)
            return await self._record(source, relative, url, digest, **extra)

    async def _from_framework_cache(self, source, candidate, relative, url, expected, **extra):
        """A verified copy of the framework cache's ``candidate``, or None."""
        if candidate is None or not expected.anything or not os.path.isfile(candidate):
            return None
        return await self._copied_in(
            source, candidate, relative, url, expected.sha256,
            lambda target: copy_verified(candidate, target, expected, source.text), **extra)

    async def _copied_in(self, source, candidate, relative, url, sha256, copy, **extra):
        """The entry of ``await copy(target)`` (which checks ``candidate``,
        a framework cache's copy, on its way to the cache path ``target``
        and returns its sha256), under the file's lock unless a concurrent
        task just did it; None, with a warning, when the checks fail."""
        async with self.cache.locked(relative, relative):
            entry = self._hit(relative, sha256)
            if entry is not None:
                return entry
            try:
                digest = await copy(self.cache.path_of(relative))
            except HubError as error:
                warnings.warn(f"ignored {candidate} in the framework's cache: {error}")
                return None
            return await self._record(source, relative, url, digest, origin=str(candidate),
                                      **extra)

    async def _unpacked(self, entry: CacheEntry) -> pathlib.Path:
        from .._formats import is_archive_path

        archive = self.cache.root / entry.path
        if not is_archive_path(str(archive)):
            raise HubError(archive, "is not an archive file, so it cannot be stored uncompressed",
                           hint="use the COMPRESSED storage type (the default)")
        relative = _unpacked_name(entry.path)
        directory = self.cache.root / relative
        async with self.cache.locked(relative, relative):
            current = self.cache.read_entries().get(entry.path)
            if current and current.unpacked == relative and directory.is_dir():
                return directory
            await in_thread(_extract_foreign, archive, directory)
            entry.unpacked = relative
            await self.cache.record(entry)
        return directory

    @abc.abstractmethod
    async def _download(self, source: Source, sha256: Optional[str]) -> CacheEntry:
        """The entry of ``source``, downloading it if needed."""


def _unpacked_name(relative: str) -> str:
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tar", ".zip"):
        if relative.endswith(suffix):
            return relative[: -len(suffix)]
    return relative + ".d"


def _extract_foreign(archive, directory):
    """Our safe extractor on a published archive: it has no manifest of
    ours, but its sha256 was verified on download, so do not warn."""
    from .._extract import extract_archive
    from ..errors import UnverifiedArchiveWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedArchiveWarning)
        extract_archive(archive, directory, replace=True)


class UrlHub(ModelHub):
    """A plain http(s) URL whose sha256 is known (``--sha256``)."""

    framework = "url"
    require_sha256 = True

    def relative_path(self, source: Source) -> str:
        parts = urllib.parse.urlsplit(source.url)
        key = hashlib.sha256(source.url.encode()).hexdigest()[:12]
        host = safe_component(parts.hostname + (f"_{parts.port}" if parts.port else ""),
                              source.text)
        return f"{self.framework}/{host}/{key}/{source.file_name}"

    def expected(self, source: Source, sha256: Optional[str]) -> Expected:
        if sha256 is None and self.require_sha256:
            raise HubSourceError(source.text, "the sha256 of a URL's file must be given",
                                 hint="pass --sha256 HEX (sha256=...), the publisher's checksum")
        return Expected(sha256=sha256)

    def framework_cache_file(self, source: Source) -> Optional[pathlib.Path]:
        return None

    async def _download(self, source, sha256):
        relative = self.relative_path(source)
        expected = self.expected(source, sha256)
        entry = self._hit(relative, sha256)
        if entry is not None:
            return entry
        entry = await self._from_framework(source, relative, expected, sha256)
        if entry is not None:
            return entry
        return await self._fetch_locked(source, relative, source.url, expected, sha256)

    async def _from_framework(self, source, relative, expected, sha256):
        """A verified copy from the framework's own cache, or None."""
        return await self._from_framework_cache(
            source, self.framework_cache_file(source), relative, source.url, expected)


class TorchHub(UrlHub):
    """PyTorch hub / torchvision checkpoints: ``torch:URL`` or
    ``torchvision:MODEL``; stored as ``torch/NAME`` like torch.hub does, and
    taken from ``$TORCH_HOME/hub/checkpoints`` when it is there.  A name
    ``NAME-<hex>.pth`` carries its sha256's first digits, as torch checks."""

    framework = "torch"
    require_sha256 = False
    _PREFIX = re.compile(r"-([a-f0-9]{8,64})\.")

    def relative_path(self, source):
        return f"{self.framework}/{source.file_name}"

    def expected(self, source, sha256):
        found = self._PREFIX.search(source.file_name)
        return Expected(sha256=sha256, sha256_prefix=found.group(1) if found else None)

    def framework_cache_file(self, source):
        return C.torch_cache() / source.file_name

    async def _stage(self, source, archive, sha256, options):
        from ._stage import stage_torchvision

        if not options.get("model"):  # before a download it would make useless
            raise HubError(source, "staging torch weights needs the model's name",
                           hint="give --model resnet18 (model=...), or another pretrained "
                           "network")
        weights = await self.download_model(source, sha256=sha256)
        return await stage_torchvision(weights, archive, source=source, **options)


class SpacyHub(UrlHub):
    """spaCy pipeline packages (``spacy:URL`` of a ``.tar.gz``)."""

    framework = "spacy"
    require_sha256 = False

    def relative_path(self, source):
        return f"{self.framework}/{source.file_name}"

    async def _stage(self, source, archive, sha256, options):
        from ._stage import stage_spacy

        directory = await self.download_model(source, sha256=sha256,
                                              storage=StorageType.UNCOMPRESSED)
        return await stage_spacy(directory, archive, source=source, **options)


class TFHub(UrlHub):
    """TensorFlow Hub modules as compressed tarballs (``tfhub:URL``; a
    tfhub.dev/Kaggle handle gets ``?tf-hub-format=compressed``)."""

    framework = "tfhub"
    require_sha256 = False

    def relative_path(self, source):
        parts = urllib.parse.urlsplit(source.url)
        name = "_".join(p for p in parts.path.split("/") if p)
        if not name.endswith((".tar.gz", ".tgz")):
            name += ".tar.gz"
        return f"{self.framework}/{safe_component(parts.hostname, source.text)}/" \
               f"{safe_component(urllib.parse.unquote(name), source.text)}"

    async def _download(self, source, sha256):
        if "tfhub.dev" in (urllib.parse.urlsplit(source.url).hostname or "") and \
                "tf-hub-format" not in source.url:
            source = Source(source.text, source.kind, source.framework,
                            url=source.url + "?tf-hub-format=compressed")
        return await super()._download(source, sha256)

    async def _from_framework(self, source, relative, expected, sha256):
        """tensorflow_hub's cache keeps modules unpacked and unchecksummed
        (see ``_tfhub``): one is taken only when no sha256 is asked for and
        TensorFlow vouches for it, then packed into our cache."""
        from ._tfhub import cached_module, copy_checked_module

        handle = source.text.partition(":")[2]  # what the user gives tensorflow_hub
        module = None if sha256 else cached_module(handle)
        if module is None:
            return None
        return await self._copied_in(
            source, module, relative, source.url, None,
            lambda target: in_thread(copy_checked_module, module, target, str(module)))

    async def _stage(self, source, archive, sha256, options):
        from ._stage import stage_tfhub

        directory = await self.download_model(source, sha256=sha256,
                                              storage=StorageType.UNCOMPRESSED)
        return await stage_tfhub(directory, archive, source=source, **options)


class HuggingFaceHub(ModelHub):
    """A Hugging Face-style hub: ``hf:ORG/NAME/PATH[@REVISION]`` fetched as
    ``{endpoint}/{ORG/NAME}/resolve/{commit}/{PATH}`` once the revision is
    pinned to its commit (``X-Repo-Commit``); verified against the ETag
    (``X-Linked-Etag``: the sha256 of an LFS file, else the git blob id).
    ``endpoint``: default ``$HF_ENDPOINT`` or https://huggingface.co."""

    framework = "huggingface"

    def __init__(self, cache=None, *, endpoint: Optional[str] = None, **options):
        super().__init__(cache, **options)
        self.endpoint = (endpoint or C.hf_endpoint()).rstrip("/")

    def client(self):
        client = super().client()
        token = os.environ.get("HF_TOKEN")
        if token:  # httpx drops it on a redirect to another host (the CDN)
            client.headers["Authorization"] = f"Bearer {token}"
        return client

    @staticmethod
    def key(source: Source) -> str:
        return f"hf:{source.repo}/{source.path}"

    def relative_path(self, source: Source, commit: str) -> str:
        return f"{self.framework}/{source.repo}/{commit}/{source.path}"

    def _own(self, source, revision) -> Optional[CacheEntry]:
        entry = self.cache.find(self.key(source), revision)
        return self._hit(entry.path, entry.sha256) if entry else None

    async def _download(self, source, sha256):
        key = self.key(source)
        known = COMMIT.fullmatch(source.revision) or self.offline
        if known:
            entry = self._own(source, source.revision)
            if entry is not None:
                return entry
            entry = await self._from_hf_cache(source, sha256, key)
            if entry is not None:
                return entry
        self._refuse_offline(source)
        commit, expected = await self._resolve(source, sha256)
        entry = self._own(source, commit)
        if entry is not None and (not sha256 or entry.sha256 == sha256):
            return entry
        relative = self.relative_path(source, commit)
        url = self._url(source, commit)
        extra = dict(key=key, revision=source.revision, commit=commit)
        entry = await self._from_framework_cache(
            source, self._hf_blob(source, expected), relative, url, expected, **extra)
        if entry is not None:
            return entry
        return await self._fetch_locked(source, relative, url, expected, sha256, **extra)

    def _url(self, source, revision) -> str:
        quote = urllib.parse.quote
        return (f"{self.endpoint}/{quote(source.repo)}/resolve/{quote(revision, safe='')}/"
                f"{quote(source.path)}")

    async def _resolve(self, source, sha256):
        """(commit, Expected) from a HEAD of the file at its revision."""
        import httpx

        url = self._url(source, source.revision)
        failure = None
        async with self.client() as client:
            for attempt in range(self.attempts):
                if attempt:
                    await _backoff(self.backoff, attempt)
                try:
                    response = await client.head(url, follow_redirects=False,
                                                 headers={"Accept-Encoding": "identity"})
                except httpx.TransportError as error:
                    failure = f"{type(error).__name__}: {error}" or "timed out"
                    continue
                if response.status_code in (408, 429) or response.status_code >= 500:
                    failure = f"HTTP {response.status_code}"
                    continue
                if response.status_code >= 400:
                    raise HubDownloadError(
                        source.text, f"the hub answered HTTP {response.status_code} for {url}",
                        hint="check the repository, file and revision (and HF_TOKEN for "
                        "a private repository)")
                return _pinned(source, response.headers, sha256)
        raise HubDownloadError(source.text, f"the hub failed after {self.attempts} tries "
                               f"({failure}) for {url}", hint="try again later")

    def _hf_blob(self, source, expected) -> Optional[pathlib.Path]:
        etag = expected.sha256 or expected.git_sha1
        if not etag:
            return None
        return _hf_repo_cache(source) / "blobs" / etag

    async def _from_hf_cache(self, source, sha256, key):
        """The snapshot file of a known commit (or, offline, of the ref's
        commit) in huggingface_hub's cache, verified against its blob name."""
        repo_cache = _hf_repo_cache(source)
        commit = source.revision
        if not COMMIT.fullmatch(commit):
            with contextlib.suppress(OSError):
                commit = (repo_cache / "refs" / safe_component(commit.replace("/", "_"), key)) \
                    .read_text().strip()
            if not COMMIT.fullmatch(commit or ""):
                return None
        snapshot = repo_cache / "snapshots" / commit / source.path
        if not snapshot.is_file():
            return None
        blob = os.path.basename(os.path.realpath(snapshot))
        if SHA256.fullmatch(blob):
            expected = Expected(sha256=blob)
        elif COMMIT.fullmatch(blob):
            expected = Expected(git_sha1=blob, size=snapshot.stat().st_size)
        else:
            return None
        if sha256:
            expected.sha256 = sha256
        return await self._from_framework_cache(
            source, snapshot, self.relative_path(source, commit), self._url(source, commit),
            expected, key=key, revision=source.revision, commit=commit)


def _hf_repo_cache(source) -> pathlib.Path:
    return C.hf_cache() / ("models--" + source.repo.replace("/", "--"))


def _pinned(source, headers, sha256):
    commit = headers.get("X-Repo-Commit", "").strip()
    if not COMMIT.fullmatch(commit):
        raise HubDownloadError(source.text, "the hub sent no X-Repo-Commit for the revision",
                               hint="is the endpoint (HF_ENDPOINT) a Hugging Face-style hub?")
    etag = headers.get("X-Linked-Etag") or headers.get("ETag") or ""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    etag = etag.strip('"').lower()
    size = headers.get("X-Linked-Size") or headers.get("Content-Length")
    size = int(size) if size and size.isdigit() else None
    if SHA256.fullmatch(etag):
        expected = Expected(sha256=etag, size=size)
    elif COMMIT.fullmatch(etag) and size is not None:
        expected = Expected(git_sha1=etag, size=size)
    else:
        expected = Expected(size=size)
    if sha256:
        if expected.sha256 and expected.sha256 != sha256:
            raise HubDownloadError(source.text, f"the hub says its sha256 is {expected.sha256}, "
                                   f"not {sha256}", hint="check --sha256 and the revision")
        expected.sha256 = sha256
    if not expected.anything:
        raise HubDownloadError(source.text, "the hub sent no ETag to verify the file with",
                               hint="pass --sha256 HEX")
    return commit, expected


async def _backoff(base, attempt):
    import asyncio

    await asyncio.sleep(min(base * 2 ** (attempt - 1), C.HUB_BACKOFF_MAX_SECONDS))


_HUBS = {"url": UrlHub, "huggingface": HuggingFaceHub, "torch": TorchHub,
         "tfhub": TFHub, "spacy": SpacyHub}


def hub_for(source, cache=None, **options) -> ModelHub:
    """The hub that serves ``source`` (``https://...``, ``hf:...``,
    ``torch:...``, ``torchvision:...``, ``tfhub:...``, ``spacy:...``)."""
    return _HUBS[parse_source(source).framework](cache, **options)
