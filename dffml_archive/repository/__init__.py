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
from ._images import AUTOMATIC_METADATA, ModelImage, NewImage
from ._maintenance import Damage, GcReport, gc, verify
from ._names import Reference, is_repository_location, parse_location, parse_reference
from ._store import ModelRepository, Repository, find

__all__ = [
    "Repository", "ModelRepository", "NewImage", "ModelImage", "Reference", "GcReport",
    "Damage", "AUTOMATIC_METADATA", "find", "gc", "verify", "parse_reference",
    "parse_location", "is_repository_location",
]
