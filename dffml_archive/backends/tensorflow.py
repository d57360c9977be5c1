"""dffml-model-tensorflow: ``tfdnnc`` and ``tfdnnr`` (``tf.compat.v1``
Estimators), found from the plugin's entry points.

Quirks, and what we do about them:

* State is the Estimator's ``model_dir``, ``<dir>/DNNModel/``: checkpoints
  (``model.ckpt-N.*``), ``graph.pbtxt``, event files (``eval/`` after
  ``accuracy``) and ``checkpoint``, the index naming the latest checkpoint.
  That index records *paths*.  TensorFlow 2.11 writes them relative to the
  directory, but an index holding absolute paths (other versions, a
  directory copied by hand) breaks silently once the directory moves: the
  Estimator finds no checkpoint and predicts from freshly initialised
  weights.  We rewrite absolute paths naming a checkpoint of that very
  directory to bare names, before saving and, for archives made
  elsewhere, after extraction.
* ``predict`` iterates the Estimator's prediction generator, which holds its
  graph as the thread's default graph while suspended, and stops without
  closing it.  A caller that leaves the record iterator unfinished (DFFML's
  ``dffml.model.predict`` operation takes one record and leaves) interleaves
  graphs: TensorFlow then reports "Nesting violated" and leaves a finalized
  graph as the default, breaking any later TensorFlow/Keras code in that
  thread.  Our contexts run upstream's ``predict`` to its end before
  handing out the records, so no graph is held across a ``yield``.
* ``clstype`` is a class; the manifest stores its name (``"int"``) and the
  shared code turns it back into the class.
* ``tfdnnr`` predicts with NaN confidence (an upstream TODO); kept as is.
"""
import os
import pathlib

from google.protobuf import text_format
from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

from dffml_archive.model import BackendAdapter, wrap_distribution
from dffml_archive import atomic_replace
from dffml_archive.backends._table import distribution_and_extra

#: The name of the Estimator's checkpoint index file.
INDEX_FILE = "checkpoint"


def relative_checkpoint_index(index: pathlib.Path) -> bool:
    """Rewrite absolute paths in ``index`` that name checkpoints stored next
    to it as bare names.  True if the file changed."""
    state = text_format.Parse(index.read_text(encoding="utf-8"), CheckpointState())
    here = index.parent

    def local(path: str) -> str:
        if not os.path.isabs(path):
            return path
        name = os.path.basename(path)
        return name if (here / f"{name}.index").is_file() else path

    changed = False
    if state.model_checkpoint_path:
        new = local(state.model_checkpoint_path)
        changed |= new != state.model_checkpoint_path
        state.model_checkpoint_path = new
    paths = [local(path) for path in state.all_model_checkpoint_paths]
    if paths != list(state.all_model_checkpoint_paths):
        changed = True
        del state.all_model_checkpoint_paths[:]
        state.all_model_checkpoint_paths.extend(paths)
    if changed:
        with atomic_replace(index) as temp:
            temp.write_text(text_format.MessageToString(state), encoding="utf-8")
    return changed


def relative_checkpoint_indexes(directory) -> list:
    """Apply :func:`relative_checkpoint_index` below ``directory``; return
    the indexes that changed."""
    return [
        index
        for index in sorted(pathlib.Path(directory).rglob(INDEX_FILE))
        if index.is_file() and relative_checkpoint_index(index)
    ]


class GraphSafeContext:
    """Finishes upstream's ``predict`` (and so its Estimator generator and
    graph) before yielding any record (a mixin in front of upstream's
    context class, see ``BackendAdapter.context_mixin``)."""

    async def predict(self, sources):
        records = [record async for record in super().predict(sources)]
        for record in records:
            yield record


class TensorflowAdapter(BackendAdapter):
    distribution, extra = distribution_and_extra(__name__)

    context_mixin = GraphSafeContext

    def after_enter(self, model, inner) -> None:
        # A no-op for archives we wrote (already relative): nothing changes,
        # so predicting never repacks them.
        relative_checkpoint_indexes(inner.config.directory)

    def before_exit(self, model, inner) -> None:
        relative_checkpoint_indexes(inner.config.directory)


ADAPTER = TensorflowAdapter()


UPSTREAM_NAMES = wrap_distribution("dffml-model-tensorflow", ADAPTER, globals())
