"""dffml-model-xgboost: ``xgbclassifier`` and ``xgbregressor`` (xgboost < 2).

Upstream saves the fitted scikit-learn style estimator (``XGBClassifier`` /
``XGBRegressor``, booster included) with joblib as ``<dir>/model.joblib``
when training, and loads it when the model object is built.  As a
``SimpleModel`` it also writes an empty ``<dir>/Model`` JSON file.  Nothing
depends on the directory's path, so the state moves as is.  Predictions
carry a NaN confidence (upstream computes none).

Our one quirk: the classifier's ``objective``.  Upstream defaults to
``multi:softmax``, which xgboost refuses for two classes ("value 0 for
Parameter num_class should be greater equal to 1"), so a binary task needed
``-model-objective binary:logistic`` by hand.  Our classifier leaves the
objective unset by default and chooses it when training, from the number of
classes in the data: ``binary:logistic`` for two, ``multi:softmax`` (the
upstream default) for more.  The chosen objective is stored with the other
options.  An objective given explicitly is used as given, and one that
cannot fit the data fails before training with the option to pass instead.
xgboost also needs the classes to be the integers ``0 .. k-1``; other
labels fail before training with a message saying so.
"""
import copy
import dataclasses

from dffml import field, make_config
from dffml_model_xgboost.xgbclassifier import (
    XGBClassifierModel as UpstreamXGBClassifierModel,
    XGBClassifierModelConfig as UpstreamXGBClassifierModelConfig,
)
from dffml_model_xgboost.xgbregressor import XGBRegressorModel

from dffml_archive.model import BackendAdapter, archive_model
from dffml_archive.backends._table import distribution_and_extra

#: Objective for two classes, and for more (upstream's default).
BINARY_OBJECTIVE = "binary:logistic"
MULTICLASS_OBJECTIVE = "multi:softmax"


def _config_with_chosen_objective():
    """Upstream's classifier config, except that ``objective`` defaults to
    None: chosen from the data when training."""
    fields = []
    for upstream in dataclasses.fields(UpstreamXGBClassifierModelConfig):
        if upstream.name == "objective":
            clone = field(
                "Objective in training; when not given it is chosen from the "
                f"training data: {BINARY_OBJECTIVE} for two classes, "
                f"{MULTICLASS_OBJECTIVE} for more",
                default=None,
            )
        else:
            clone = copy.copy(upstream)
        fields.append((upstream.name, upstream.type, clone))
    return make_config(
        "XGBClassifierModelConfig", fields, namespace={"__module__": __name__}
    )


def choose_objective(objective, classes) -> str:
    """The objective to train ``classes`` (sorted distinct labels) with.

    Raises ValueError, naming what to pass, when the labels or the given
    objective cannot work."""
    if any(label != index for index, label in enumerate(classes)):
        raise ValueError(
            "xgbclassifier needs the classes to be the integers 0 .. k-1, got "
            f"{list(classes)!r}: relabel them (for two classes: 0 and 1)"
        )
    if len(classes) < 2:
        raise ValueError(
            f"xgbclassifier needs at least two classes in the training data, got {list(classes)!r}"
        )
    if objective is None:
        return BINARY_OBJECTIVE if len(classes) == 2 else MULTICLASS_OBJECTIVE
    if len(classes) == 2 and objective.startswith("multi:"):
        raise ValueError(
            f"objective {objective!r} needs three or more classes and the data has "
            f"two: pass -model-objective {BINARY_OBJECTIVE} (objective="
            f"{BINARY_OBJECTIVE!r}), or leave the objective out to have it chosen"
        )
    return objective


class XGBClassifierModel(UpstreamXGBClassifierModel):
    """Upstream's xgbclassifier, choosing the objective from the number of
    classes when none is given."""

    CONFIG = _config_with_chosen_objective()

    async def train(self, sources) -> None:
        target = self.config.predict.name
        labels = set()
        async for record in sources.with_features(self.features + [target]):
            labels.add(record.feature(target))
        try:
            classes = sorted(labels)
        except TypeError:  # mixed types: not 0 .. k-1 anyway
            classes = sorted(labels, key=repr)
        self.config.objective = choose_objective(self.config.objective, classes)
        await super().train(sources)


class XGBoostAdapter(BackendAdapter):
    distribution, extra = distribution_and_extra(__name__)


ADAPTER = XGBoostAdapter()


xgbclassifier_archive = archive_model(
    XGBClassifierModel, "xgbclassifier", ADAPTER, module=__name__
)
xgbregressor_archive = archive_model(
    XGBRegressorModel, "xgbregressor", ADAPTER, module=__name__
)
