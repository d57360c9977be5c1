"""The versioned model repository: model images (members stored once each,
by sha256), metadata, attachments, tags; usable as ``models:NAME[:REF]``.

``async with Repository() as repo:`` opens the embedded repository at
``$DFFML_ARCHIVE_REPOSITORY`` (see :mod:`dffml_archive._constants`); the
rest is reached from it::

    models = await repo.create("credit-risk", exist_ok=True)
    image = models.new_image("model.tar.gz")
    image["Accuracy"] = 0.89
    saved = await image.save(comment="first")        # saved.version == 1
    await models.add_tag("production", saved.version)
    model = await (await models.get_model_image(tag="production")).get_model()
"""
import importlib

# Loaded on first use: the model layer checks every location for ``models:``
# (``_names``), and must not import SQLAlchemy to do it.
_LAZY_MODULES = {
    "._store": ("Repository", "ModelRepository", "find"),
    "._images": ("NewImage", "ModelImage", "AUTOMATIC_METADATA"),
    "._maintenance": ("GcReport", "Damage", "gc", "verify"),
    "._names": ("Reference", "parse_reference", "parse_location", "is_repository_location"),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}

__all__ = list(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dffml_archive.repository' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
