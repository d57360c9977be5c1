"""dffml-model-scikit: every model the plugin registers, found from its entry
points at import time.

Quirk: the plugin stores accuracy (the prediction confidence) in
``Scikit.json`` under a sha384 of its config *including the directory path*,
so a moved or freshly extracted model would predict with NaN confidence.
Inside the archive we keep it under the key computed for a fixed placeholder
directory and swap keys around the upstream model's load and save, using the
plugin's own hash function.
"""
import contextlib
import dataclasses
import io
import logging
import warnings

from dffml_archive.model import BackendAdapter, wrap_distribution
from dffml_archive.backends._table import distribution_and_extra


@contextlib.contextmanager
def _daal4py_banner_silenced():
    """dffml-model-scikit calls ``daal4py.sklearn.patch_sklearn()`` on import
    when daal4py is installed, which prints a deprecation warning, a logging
    line and a banner to stderr in every command.  Its output is dropped
    while the plugin is imported; the patching itself (upstream's choice) is
    left alone."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore", FutureWarning)
        root.setLevel(logging.ERROR)
        try:
            yield
        finally:
            # logging.warning() on a bare root adds a handler writing to the
            # stderr of that moment: ours, dropped with it.
            root.handlers[:] = handlers
            root.setLevel(level)


with _daal4py_banner_silenced():
    from dffml_model_scikit import scikit_models  # noqa: E402

CANONICAL_DIRECTORY = "/__dffml_archive__/model"


class ScikitAdapter(BackendAdapter):
    distribution, extra = distribution_and_extra(__name__)

    @staticmethod
    def _confidence_key(inner, directory) -> str:
        probe = type(inner)(dataclasses.replace(inner.config, directory=directory))
        return inner.CONTEXT(probe)._features_hash

    def _move(self, inner, source, destination) -> None:
        if source != destination and source in inner.saved:
            inner.saved[destination] = inner.saved.pop(source)

    def after_enter(self, model, inner) -> None:
        canonical = self._confidence_key(inner, CANONICAL_DIRECTORY)
        self._move(inner, canonical, self._confidence_key(inner, inner.config.directory))

    def before_exit(self, model, inner) -> None:
        live = self._confidence_key(inner, inner.config.directory)
        self._move(inner, live, self._confidence_key(inner, CANONICAL_DIRECTORY))


ADAPTER = ScikitAdapter()


# The plugin builds ``scikitrfr`` but forgot to register it.
UPSTREAM_NAMES = wrap_distribution(
    "dffml-model-scikit",
    ADAPTER,
    globals(),
    also={"scikitrfr": scikit_models.RandomForestRegressorModel},
)
