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
import importlib

# Loaded on first use: building the command line parser imports nothing heavy.
_LAZY_MODULES = {
    "._hubs": ("ModelHub", "StorageType", "UrlHub", "HuggingFaceHub", "TorchHub",
               "TFHub", "SpacyHub", "hub_for"),
    "._cache": ("HubCache", "CacheEntry"),
    "._sources": ("Source", "parse_source"),
    "._stage": ("stage_torchvision", "stage_spacy", "stage_tfhub"),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}

__all__ = list(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dffml_archive.hub' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
