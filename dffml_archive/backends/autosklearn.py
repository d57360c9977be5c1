"""dffml-model-autosklearn: ``autoclassifier`` and ``autoregressor``
(auto-sklearn 0.12.7, pynisher < 0.7).

Upstream fits an ``AutoSklearnClassifier`` / ``AutoSklearnRegressor``, builds
its ensemble (``fit_ensemble(ensemble_size=...)``) and saves the whole
estimator with joblib as ``<dir>/trained_model.sav``, loaded when a model
context is created.  auto-sklearn works in a temporary folder
(``/tmp/autosklearn_tmp_*`` unless ``tmp_folder`` is given) while fitting,
but with ``load_models`` (the default) the saved estimator holds the
ensemble's fitted models itself: the archive needs nothing else to predict,
in any process.  Nothing depends on the model directory's path.

Quirks, and what we do about them:

* ``load_models False`` would leave the fitted models in auto-sklearn's
  temporary folder, which is deleted when the process ends, so such a model
  could not predict from its archive: refused before training.
* auto-sklearn searches until its time budget is spent:
  ``time_left_for_this_task`` (seconds, at least 30; default 3600) and
  ``per_run_time_limit``.  ``smac_scenario_args {'runcount_limit': N}`` stops
  the search after N evaluated pipelines, which is what makes small trainings
  fast.
* ``autoregressor`` predicted only the first record of a source (upstream
  zips the predictions with a one-element list of confidences); ours
  predicts every record, with a NaN confidence as upstream.
* ``autoclassifier``'s confidence is the probability of the predicted class.
* smac, under auto-sklearn, puts a lazy module in ``sys.modules`` for each
  of its optional extras (emcee, skopt, pyDOE), installed or not.  Touching
  a missing one raises ImportError, and ``inspect.getmodule`` touches every
  module, so TensorFlow (among others) failed in any process that had
  loaded this backend first.  We drop the lazy modules that cannot load.
"""
import importlib.machinery
import math
import sys

import lazy_import

from dffml_model_autosklearn.autoclassifier import AutoSklearnClassifierModel
from dffml_model_autosklearn.autoregressor import (
    AutoSklearnRegressorModel as UpstreamAutoSklearnRegressorModel,
    AutoSklearnRegressorModelContext as UpstreamAutoSklearnRegressorModelContext,
)

from dffml_archive.errors import ArchiveError
from dffml_archive.model import BackendAdapter, archive_model
from dffml_archive.backends._table import distribution_and_extra


def forget_lazy_modules_that_cannot_load() -> list:
    """Remove from ``sys.modules`` the lazy placeholders of top-level modules
    that are not installed; return their names.  ``PathFinder`` looks on
    ``sys.path`` without touching the placeholder."""
    missing = [
        name
        for name, module in list(sys.modules.items())
        if isinstance(module, lazy_import.LazyModule)
        and "." not in name
        and importlib.machinery.PathFinder.find_spec(name) is None
    ]
    for name in missing:
        del sys.modules[name]
    return missing


forget_lazy_modules_that_cannot_load()


class AutoSklearnRegressorModelContext(UpstreamAutoSklearnRegressorModelContext):
    async def get_probabilities(self, data):
        # One (NaN) confidence per record: upstream gave a single one, so
        # only the first record was predicted.
        return [[math.nan] for _ in range(len(data))]


class AutoSklearnRegressorModel(UpstreamAutoSklearnRegressorModel):
    """Upstream's autoregressor, predicting every record."""

    CONTEXT = AutoSklearnRegressorModelContext


class AutoSklearnAdapter(BackendAdapter):
    distribution, extra = distribution_and_extra(__name__)

    def after_enter(self, model, inner) -> None:
        if inner.config.load_models is False:
            raise ArchiveError(
                model.config.location,
                "load_models False keeps the fitted models only in auto-sklearn's "
                "temporary folder, so the model could not predict from its location",
                hint="leave -model-load_models out (it defaults to True)",
            )


ADAPTER = AutoSklearnAdapter()


autoclassifier_archive = archive_model(
    AutoSklearnClassifierModel, "autoclassifier", ADAPTER, module=__name__
)
autoregressor_archive = archive_model(
    AutoSklearnRegressorModel, "autoregressor", ADAPTER, module=__name__
)
