"""``models:NAME[:VERSION|TAG]`` as a model location.

Entering materializes the image (verified, member by member) into a private
working directory in the repository's ``tmp``; there is no archive in
between.  ``models:NAME`` means the newest version; when the model trained,
a clean exit saves the working directory as a new version (so ``latest``
moves to it).  A version is immutable: ``models:NAME:VERSION`` and
``models:NAME:TAG`` are for predicting and assessing, and whatever a backend
changes in its files meanwhile is not kept.  An exception inside, or a save
that fails, adds no version; a failed save keeps the trained directory
(``rescued-*`` in the cache) and says how to push it.
"""
import contextlib
import json
import os
import pathlib
import shlex
import shutil

from .. import _cache
from .._api import in_thread
from .._location import WorkingCopy
from ..errors import ArchiveError, ReferenceNotFoundError, RepositoryError
from ._images import staging_directory
from ._names import Reference, parse_location
from ._store import Repository

TRAINED_COMMENT = "trained"


def is_immutable(reference: Reference) -> bool:
    """True for a location naming one version (a number or a tag)."""
    return reference.version is not None or reference.tag is not None


@contextlib.asynccontextmanager
async def repository_location(location):
    reference = parse_location(location)
    async with Repository() as store:
        # Read-only: predicting works in a private directory elsewhere.
        with staging_directory(None if store.read_only else store.root) as stage:
            tree = stage / "tree"
            image = await _image_or_none(store, reference)
            if image is not None:
                await image.materialize(tree)
            else:
                await in_thread(tree.mkdir, 0o700)
            manifest = image.manifest if image is not None else None
            copy = WorkingCopy(
                directory=tree, archive=pathlib.Path(str(location)), manifest=manifest,
                model=manifest.model if manifest else None,
            )
            yield copy
            if copy.save and not copy.best_effort and not is_immutable(reference):
                await _save(store, reference, copy)


async def _image_or_none(store: Repository, reference: Reference):
    try:
        return await store.get_model_image(reference)
    except ReferenceNotFoundError:
        if is_immutable(reference):
            raise
        return None  # a new repository, or one without versions: train into it


async def _save(store: Repository, reference: Reference, copy: WorkingCopy) -> None:
    try:
        repository = await store.create(reference.name, exist_ok=True)
        image = repository.new_image(copy.directory, model=copy.model)
        saved = await image.save(comment=TRAINED_COMMENT)
    except (ArchiveError, OSError) as error:
        rescued = await in_thread(_rescue, copy)
        if rescued is None:
            raise
        raise RepositoryError(
            reference.name,
            f"the trained model could not be saved as a new version ({error}); "
            f"the model directory is kept at {str(rescued)!r}",
            hint="push it when the cause is fixed: python -m dffml_archive models push "
            f"{shlex.quote(str(rescued))} {shlex.quote(reference.name)}"
            + (f" --model {shlex.quote(str(rescued) + _cache.MODEL_INFORMATION_SUFFIX)}"
               if copy.model is not None else ""),
        ) from error
    copy.manifest = saved.manifest


def _rescue(copy: WorkingCopy):
    target = _cache.rescue_path(copy.archive.name.replace(":", "-"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(copy.directory, target)
        except OSError:
            shutil.copytree(copy.directory, target, symlinks=True)
        if copy.model is not None:
            target.with_name(target.name + _cache.MODEL_INFORMATION_SUFFIX).write_text(
                json.dumps(copy.model)
            )
    except OSError:
        return None
    return target


def require_trainable(location) -> None:
    """Refuse, before training, a location a trained model cannot be saved
    to: a version (immutable) or a repository root that is not writable."""
    from .. import _constants as C

    reference = parse_location(location)
    if is_immutable(reference):
        raise RepositoryError(
            str(location), "names one saved version, and versions are immutable",
            hint=f"train into {C.REPOSITORY_SCHEME}{reference.name} (a new version), then "
            f"tag it: dffml service models tag {reference.name}:VERSION TAG",
        )
    from ._database import is_read_only

    root = C.repository_root()
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if is_read_only(existing):
        raise RepositoryError(
            str(existing), "is read-only: the trained model could not be saved into the "
            + ("repository" if existing == root else f"repository at {str(root)!r}"),
            hint="train where the repository is mounted writable, or set "
            "DFFML_ARCHIVE_REPOSITORY to a writable repository",
        )


async def stored_model_information(location) -> dict:
    """The model section of the image ``location`` names (for load_model)."""
    from ._images import image_not_a_model

    reference = parse_location(location)
    async with Repository() as store:
        image = await store.get_model_image(reference)
    if not image.manifest.model:
        raise image_not_a_model(str(location))
    return image.manifest.model
