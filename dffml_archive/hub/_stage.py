"""Staging: a downloaded model written as a DFFML model archive that works
offline with ``-model-location`` and ``load_model`` (and, when asked, pushed
into the model repository as a new version)."""
import contextlib
import json
import math
import os
import pathlib
import shutil
import tempfile

from .. import _constants as C
from .._api import in_thread, pack
from ..errors import HubError


async def stage_torchvision(weights, archive, *, model: str, source=None, **options):
    """A pretrained torchvision network of dffml-model-pytorch (``resnet18``
    ...) with the checkpoint ``weights``, as ``MODEL_archive`` at
    ``archive``.  ``options``: the model's (features, predict,
    classifications, imageSize, add_layers/layers, ...).

    dffml-model-pytorch builds the network with ``pretrained=True``, which
    makes torchvision load ``<torch.hub dir>/checkpoints/<name in its
    URL>``: we point torch.hub's directory (``torch.hub.set_dir``) at a
    private one holding only our verified file, so nothing is downloaded
    and the user's ``TORCH_HOME`` is left alone.  The network is saved
    whole in ``model.pt``, as upstream's training does, so predicting needs
    neither the weights nor torchvision's download."""
    import torch
    from dffml import Model

    from ._sources import torchvision_weights

    if not model:
        raise HubError(source, "staging torch weights needs the model's name",
                       hint="give --model resnet18 (or another pretrained network)")
    try:
        model_class = Model.load(f"{model}_archive")
    except Exception:
        raise HubError(source, f"no pretrained pytorch model {model!r}",
                       hint="pip install 'dffml-archive[pytorch]'; names: resnet18, ...") from None
    expected_name = torchvision_weights(model, source).url.rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="dffml-hub-stage-") as work:
        work = pathlib.Path(work)
        checkpoints = work / "torch" / "checkpoints"
        checkpoints.mkdir(parents=True)
        os.symlink(os.path.abspath(weights), checkpoints / expected_name)
        directory = work / "model"
        directory.mkdir()
        with _torch_hub_directory(torch, work / "torch"):
            instance = model_class(location=directory, **options)
            async with instance:
                async with instance() as context:
                    network = context.inner._model
                await in_thread(torch.save, network, str(directory / "model.pt"))
                info = instance.model_info(instance.inner)
        await pack(directory, archive, model=info)
    return pathlib.Path(archive)


@contextlib.contextmanager
def _torch_hub_directory(torch, directory):
    previous = getattr(torch.hub, "_hub_dir", None)  # None: torch computes it
    torch.hub.set_dir(str(directory))
    try:
        yield
    finally:
        torch.hub._hub_dir = previous


def find_spacy_pipeline(directory) -> pathlib.Path:
    """The pipeline directory inside an unpacked spaCy package (or pipeline)
    archive: the shallowest one with both ``config.cfg`` and ``meta.json``."""
    found = sorted(
        (p.parent for p in pathlib.Path(directory).rglob("config.cfg")
         if (p.parent / "meta.json").is_file()),
        key=lambda p: len(p.parts),
    )
    if not found:
        raise HubError(directory, "holds no spaCy pipeline (no config.cfg beside a meta.json)",
                       hint="give a spaCy pipeline package or an nlp.to_disk directory, packed")
    return found[0]


async def stage_spacy(directory, archive, *, source=None, **options):
    """A spaCy pipeline package as ``spacyner_archive``: the pipeline becomes
    its ``pipeline/``; ``spacyner.json`` gets the recogniser's labels and
    confidence NaN (not measured yet: ``dffml accuracy`` measures it)."""
    import spacy
    from dffml import Model

    from ..models.spacyner import PIPELINE_DIRECTORY, STATE_FILE

    pipeline = find_spacy_pipeline(directory)
    nlp = await in_thread(spacy.load, pipeline)
    labels = sorted(nlp.get_pipe("ner").labels) if "ner" in nlp.pipe_names else []
    options.setdefault("model_name_or_path", nlp.lang)
    with tempfile.TemporaryDirectory(prefix="dffml-hub-stage-") as work:
        model_directory = pathlib.Path(work, "model")
        await in_thread(shutil.copytree, pipeline, model_directory / PIPELINE_DIRECTORY)
        (model_directory / STATE_FILE).write_text(
            json.dumps({"confidence": math.nan, "labels": labels}, sort_keys=True))
        instance = Model.load("spacyner_archive")(location=model_directory, **options)
        async with instance:  # loads it as predicting will: a broken pipeline fails here
            info = instance.model_info(instance.inner)
        await pack(model_directory, archive, model=info)
    return pathlib.Path(archive)


#: Where a staged TF Hub module lives inside a ``text_classifier_archive``.
EMBEDDING_DIRECTORY = "embedding"


def find_saved_model(directory) -> pathlib.Path:
    """The module inside an unpacked TF Hub tarball: the shallowest
    directory holding a ``saved_model.pb``."""
    found = sorted((p.parent for p in pathlib.Path(directory).rglob("saved_model.pb")),
                   key=lambda p: len(p.parts))
    if not found:
        raise HubError(directory, "holds no TensorFlow SavedModel (no saved_model.pb)",
                       hint="give a TF Hub module in its compressed (tar.gz) format")
    return found[0]


def check_text_embedding(module, source, embed_type=None) -> None:
    """Load ``module`` as text_classifier will (``hub.KerasLayer``) and, but
    for BERT (whose inputs are token ids), embed a sentence: a module that
    is not a text embedding fails here, not after a day of training."""
    import tensorflow as tf
    import tensorflow_hub as hub

    try:
        layer = hub.KerasLayer(str(module))
        if embed_type != "bert":
            shape = tuple(layer(tf.constant(["a staged sentence"])).shape)
            if len(shape) != 2 or shape[0] != 1:
                raise ValueError(f"a sentence became shape {shape}, not (1, N)")
    except Exception as error:
        raise HubError(source, f"the module is not a text embedding text_classifier can "
                       f"use: {type(error).__name__}: {str(error)[:300]}",
                       hint="stage a TF Hub text embedding (e.g. gnews-swivel, nnlm, "
                       "universal-sentence-encoder), or give embedType=bert for BERT") from None


async def stage_tfhub(directory, archive, *, source=None, **options):
    """A TF Hub text embedding as an *untrained* ``text_classifier_archive``
    that carries it in ``embedding/`` with ``model_path`` set to
    ``archive:embedding``: ``dffml train -model-location ARCHIVE`` then
    trains offline from the archive alone, on any machine.  ``options``
    (features, predict, classifications, epochs, ...) are stored as given;
    the rest are given at training."""
    from dffml import Model

    if "model_path" in options:
        raise HubError(source, "staging sets model_path itself (to the module it stores)",
                       hint="drop the model_path option")
    module = find_saved_model(directory)
    await in_thread(check_text_embedding, module, source, options.get("embedType"))
    options["model_path"] = f"{C.ARCHIVE_PATH_PREFIX}{EMBEDDING_DIRECTORY}"
    model_class = Model.load("text_classifier_archive")
    with tempfile.TemporaryDirectory(prefix="dffml-hub-stage-") as work:
        model_directory = pathlib.Path(work, "model")
        await in_thread(shutil.copytree, module, model_directory / EMBEDDING_DIRECTORY)
        info = dict(model_class.describe(options, model_directory), trained=False)
        await pack(model_directory, archive, model=info)
    return pathlib.Path(archive)


async def push_to_repository(archive, name: str, source) -> int:
    """``archive`` as the next version of repository ``name`` (created if
    missing), its source recorded as metadata; returns the version."""
    from ..repository import Repository

    async with Repository() as store:
        repository = await store.create(name, exist_ok=True)
        image = repository.new_image(str(archive))
        image["hub_source"] = str(source)
        saved = await image.save(comment=f"staged from {source}")
    return saved.version
