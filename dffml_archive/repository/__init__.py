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
from .._lazy import lazy_exports

# Loaded on first use: the model layer checks every location for ``models:``
# (``_names``), and must not import SQLAlchemy to do it.
_LAZY_MODULES = {
    "._store": ("Repository", "ModelRepository", "find"),
    "._images": ("NewImage", "ModelImage", "AUTOMATIC_METADATA"),
    "._maintenance": ("GcReport", "Damage", "gc", "verify"),
    "._names": ("Reference", "parse_reference", "parse_location", "is_repository_location"),
}
__getattr__, __dir__, __all__ = lazy_exports(globals(), _LAZY_MODULES)
