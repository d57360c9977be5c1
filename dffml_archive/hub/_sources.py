"""Sources (``https://...``, ``hf:ORG/NAME/PATH[@REVISION]``, ``torch:...``,
``tfhub:URL``, ``spacy:URL``) and the one check of every file name that comes
from a URL, a header or a hub listing before it becomes a path in the cache."""
import dataclasses
import re
import urllib.parse
from typing import Optional, Tuple

from ..errors import HubSourceError

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")

#: source prefix -> framework (its directory in the cache)
FRAMEWORKS = {"hf": "huggingface", "torch": "torch", "torchvision": "torch",
              "tfhub": "tfhub", "spacy": "spacy"}


def safe_component(name: str, source: str) -> str:
    """``name`` if it can be one path component in the cache, else refused."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name
            or _CONTROL.search(name) or len(name.encode("utf-8", "surrogatepass")) > 255):
        raise HubSourceError(source, f"unsafe file name {name!r}",
                             hint="file names must be plain names: no '/', '..' or "
                             "control characters")
    return name


def safe_relative_path(path: str, source: str) -> str:
    """A relative ``a/b/c`` path, each part checked (no absolute, no ``..``)."""
    if not path or path.startswith("/") or path.startswith("\\"):
        raise HubSourceError(source, f"unsafe path {path!r}", hint="give a relative path")
    return "/".join(safe_component(part, source) for part in path.split("/"))


def check_sha256(value: Optional[str], source: str) -> Optional[str]:
    if value is None:
        return None
    value = value.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:"):]
    if not SHA256.fullmatch(value):
        raise HubSourceError(source, f"{value!r} is not a sha256 (64 hex digits)")
    return value


@dataclasses.dataclass(frozen=True)
class Source:
    """A parsed source.  ``kind``: ``url`` or ``hf``; ``framework``: the
    cache directory; ``url``: what is fetched (None for ``hf`` until the
    endpoint is known)."""

    text: str
    kind: str
    framework: str
    url: Optional[str] = None
    repo: Optional[str] = None
    path: Optional[str] = None
    revision: Optional[str] = None

    @property
    def file_name(self) -> str:
        if self.kind == "hf":
            return self.path.rsplit("/", 1)[-1]
        return url_file_name(self.url, self.text)


def url_file_name(url: str, source: str) -> str:
    """The last component of the URL's path, decoded and checked."""
    raw = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    return safe_component(urllib.parse.unquote(raw), source)


def check_url(url: str, source: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HubSourceError(source, "not an http:// or https:// URL",
                             hint="give http(s)://HOST/PATH or hf:ORG/NAME/PATH[@REVISION]")
    url_file_name(url, source)
    return url


def parse_source(text: str) -> Source:
    """``text`` as a :class:`Source`, or :class:`HubSourceError` saying why not."""
    text = str(text)
    if _CONTROL.search(text):
        raise HubSourceError(repr(text), "control characters in the source")
    if text.startswith(("http://", "https://")):
        return Source(text, "url", "url", url=check_url(text, text))
    prefix, _, rest = text.partition(":")
    if prefix == "hf":
        repo, path, revision = _parse_hf(rest, text)
        return Source(text, "hf", "huggingface", repo=repo, path=path, revision=revision)
    if prefix == "torchvision":
        return Source(text, "url", "torch", url=check_url(_torchvision_url(rest, text), text))
    if prefix in ("torch", "tfhub", "spacy"):
        return Source(text, "url", FRAMEWORKS[prefix], url=check_url(rest, text))
    raise HubSourceError(
        text, "unknown kind of source",
        hint="give an http(s):// URL, hf:ORG/NAME/PATH[@REVISION], torch:URL, "
        "torchvision:MODEL, tfhub:URL or spacy:URL",
    )


def _parse_hf(rest: str, text: str) -> Tuple[str, str, str]:
    body, _, revision = rest.partition("@")
    parts = body.split("/")
    if len(parts) < 3:
        raise HubSourceError(text, "a Hugging Face source is hf:ORG/NAME/PATH[@REVISION]")
    for part in parts[:2]:
        if not _REPO_PART.fullmatch(part) or ".." in part:
            raise HubSourceError(text, f"unsafe repository name part {part!r}")
    revision = revision or "main"
    if not _REVISION.fullmatch(revision) or ".." in revision:
        raise HubSourceError(text, f"unsafe revision {revision!r}")
    return "/".join(parts[:2]), safe_relative_path("/".join(parts[2:]), text), revision


def torchvision_weights(name: str, source: str):
    """The weights torchvision's ``pretrained=True`` loads for model ``name``
    (what dffml-model-pytorch asks for): ``IMAGENET1K_V1`` where there is one."""
    import torchvision.models as models

    wanted = name.replace("_", "").lower() + "weights"
    for attribute in dir(models):
        if attribute.replace("_", "").lower() == wanted:
            weights = getattr(models, attribute)
            return getattr(weights, "IMAGENET1K_V1", None) or weights.DEFAULT
    raise HubSourceError(source, f"torchvision has no pretrained model {name!r}",
                         hint="give a name such as resnet18, or torch:URL")


def _torchvision_url(name: str, text: str) -> str:
    """The checkpoint URL torchvision uses for model ``name``, under
    ``MODELHUB_TORCH_ENDPOINT`` (a mirror)."""
    from .. import _constants as C

    return C.torch_endpoint() + torchvision_weights(name, text).url.rsplit("/", 1)[-1]
