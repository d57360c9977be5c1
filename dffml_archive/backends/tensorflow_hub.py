"""dffml-model-tensorflow-hub: ``text_classifier``.

Quirks, and what we do about them:

* State is a Keras SavedModel written after training into
  ``<dir>/<sha384 of the features, predict, number of classes and
  model_path>/``.  The name hashes ``model_path`` (a URL or a local path)
  and upstream creates that directory whenever a context is made, even to
  predict.  Inside the archive we keep the SavedModel under the fixed name
  :data:`CANONICAL` and move it to the hashed name (computed by the
  plugin's own ``_model_dir_path``) around the upstream model's use, then
  back, removing the empty directory upstream made when nothing was
  trained.  The archive's layout is independent of ``model_path``, and
  predicting leaves its tree as it was (no repack).
* The SavedModel holds the embedding's graph and weights: predicting
  needs neither ``model_path`` nor the network, so it works after the
  original embedding is moved or deleted.
* ``model_path`` defaults to a tfhub.dev URL: *training* then downloads
  it.  Offline, pass a local SavedModel directory, or ``archive:embedding``
  for a module the model hub staged inside the archive (resolved by the
  model layer: dffml_archive/_config_paths.py).
* ``add_layers``/``layers``: upstream's config turns the layer strings into
  live Keras layers, which no manifest can store; refused with a clear
  error rather than failing after training.
* Keras prints progress bars on *stdout* while predicting and assessing
  accuracy, so ``dffml predict all`` would no longer print pure JSON.
  While the model is open, Keras' interactive logging is off (in this
  thread: Keras keeps the switch per thread) and restored afterwards.
* ``clstype`` is a class; the manifest stores its name.
"""
import os
import pathlib
import shutil

import tensorflow as tf

from dffml_archive.errors import ArchiveError
from dffml_archive.model import BackendAdapter, wrap_distribution
from dffml_archive.backends._table import distribution_and_extra

#: Where the trained SavedModel lives inside the archive.
CANONICAL = "text_classifier"
SAVED_MODEL = "saved_model.pb"


def _hashed_directory(inner) -> pathlib.Path:
    """Upstream's directory for this config (it creates it if missing)."""
    inner._make_config_directory()  # as making a context does (a new directory location)
    return pathlib.Path(inner.CONTEXT(inner)._model_dir_path())


class TensorflowHubAdapter(BackendAdapter):
    distribution, extra = distribution_and_extra(__name__)

    def after_enter(self, model, inner) -> None:
        if inner.config.add_layers:
            raise ArchiveError(
                model.config.location,
                "text_classifier_archive cannot store add_layers/layers (the "
                "upstream config turns them into live Keras layers)",
                hint="train without -model-add_layers, or use text_classifier "
                "with -model-directory",
            )
        model._keras_interactive = tf.keras.utils.is_interactive_logging_enabled()
        tf.keras.utils.disable_interactive_logging()
        canonical = pathlib.Path(inner.config.directory, CANONICAL)
        hashed = _hashed_directory(inner)
        if canonical.is_dir() and not (hashed / SAVED_MODEL).is_file():
            os.rmdir(hashed)  # the empty one upstream just made
            os.rename(canonical, hashed)

    def before_exit(self, model, inner) -> None:
        if getattr(model, "_keras_interactive", False):
            tf.keras.utils.enable_interactive_logging()
        canonical = pathlib.Path(inner.config.directory, CANONICAL)
        hashed = _hashed_directory(inner)
        if (hashed / SAVED_MODEL).is_file():
            if canonical.exists():
                shutil.rmtree(canonical)
            os.rename(hashed, canonical)
        elif not any(hashed.iterdir()):
            os.rmdir(hashed)


ADAPTER = TensorflowHubAdapter()


UPSTREAM_NAMES = wrap_distribution("dffml-model-tensorflow-hub", ADAPTER, globals())
