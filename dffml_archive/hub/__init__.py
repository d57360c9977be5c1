"""The model hub: download models from hubs into one verified cache and stage
them as DFFML model archives.

::

    from dffml_archive.hub import hub_for, StorageType

    hub = hub_for("hf:org/name/model.bin@main")
    path = await hub.download_model("hf:org/name/model.bin@main")
    await hub.stage_model("torch:https://.../resnet18-f37072fd.pth",
                          "resnet18.tar.gz", model="resnet18", ...)

The cache is ``$MODELHUB_PATH`` (default ``~/.modelhub``), one directory per
framework, original file names, and ``modelhub-lock.json`` recording every
download.  ``MODELHUB_OFFLINE=1`` forbids every network call.
"""
from .._lazy import lazy_exports

# Loaded on first use: building the command line parser imports nothing heavy.
_LAZY_MODULES = {
    "._hubs": ("ModelHub", "StorageType", "UrlHub", "HuggingFaceHub", "TorchHub",
               "TFHub", "SpacyHub", "hub_for"),
    "._cache": ("HubCache", "CacheEntry"),
    "._sources": ("Source", "parse_source"),
    "._stage": ("stage_torchvision", "stage_spacy", "stage_tfhub"),
}
__getattr__, __dir__, __all__ = lazy_exports(globals(), _LAZY_MODULES)
