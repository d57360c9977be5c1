"""``vwmodel``: our own DFFML model on Vowpal Wabbit 9.

The PyPI plugin dffml-model-vowpalWabbit cannot be imported (its wheel lacks
a module), so this is our own implementation of the model it documented:
the same name (``vwmodel``; ``vwmodel_archive`` stores it in an archive) and
the same options -- ``features``, ``predict``, ``task``,
``use_binary_label``, ``class_cost``, ``vwcmd``, ``namespace``,
``importance``, ``base``, ``tag``, ``noconvert`` -- plus ``passes``,
``learning_rate`` and ``loss_function`` as options of their own.

How records become Vowpal Wabbit examples (VW's text format,
``[label] [importance] [base] ['tag] |namespace features ...``):

* a number feature ``x`` is the feature ``x:value`` (NaN is left out; a
  feature of length > 1 gives ``x_0:v0 x_1:v1 ...``); a string feature gives
  its words, each one a feature (``:`` and ``|`` removed);
* ``namespace`` puts features into named namespaces, ``NS_A_B`` (upstream
  form: namespace ``NS`` holds features ``A`` and ``B``) or ``NS=A,B`` (for
  feature names containing ``_``); a feature may be in several namespaces;
  the others go into the default namespace;
* ``importance``, ``base`` and ``tag`` name features holding each example's
  importance weight, base (initial prediction, for residual regression) and
  tag;
* ``noconvert``: the one feature already holds the example's features in
  VW's format (``| price:.46 sqft:.4``); only the label is added.

Tasks:

* ``regression`` (default): the label is the value itself (squared loss
  unless ``loss_function``/``vwcmd`` say otherwise);
* ``classification``: with ``use_binary_label`` (which implies
  classification) the two classes become -1 and 1 and the sign of VW's
  output picks the class; otherwise the k classes become 1..k for one
  against all, ``--oaa k``, added unless ``vwcmd`` chooses a multiclass
  reduction itself; with ``class_cost`` (features ``Cost_<class>`` holding
  each class's cost) it is cost-sensitive one against all, ``--csoaa k``.
  Classification uses the logistic loss unless told otherwise.  Predictions
  are the original class values (sorted; stored with the model).

Training runs ``passes`` passes over the records in order (later passes in
a fixed shuffled order, so training is reproducible).  Training a trained
model again continues from its weights (VW learns online) as upstream did.

Confidence: the model's score from the last ``accuracy`` run (R^2 for
regression, the fraction of correct predictions for classification), as
upstream; NaN until ``accuracy`` has run once.  It is stored with the model.

State, in the model directory: ``vw.model`` (the VW workspace, saved with
``Workspace.save``) and ``vw.json`` (the ``SimpleModel`` storage: the
classes, the VW arguments and the confidence), both written when the model
is left (see :class:`~dffml_archive.models._base.SavingSimpleModel`).
Nothing depends on the directory's path.
"""
import math
import pathlib
import random
import re
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

from dffml import Feature, Features, config, entrypoint, field
from dffml.model.accuracy import Accuracy
from dffml.model.model import ModelNotTrained
from vowpalwabbit import Workspace

from dffml_archive._atomic import atomic_replace
from dffml_archive.models._base import SavingSimpleModel

MODEL_FILE = "vw.model"
STATE_FILE = "vw.json"
STATE_FORMAT = 1

TASKS = ("regression", "classification")

#: VW options that read or write data or model files, or drive VW's own
#: data loop: ours comes from DFFML sources and goes to the model location.
REFUSED_OPTIONS = {
    "d": "training data comes from DFFML sources",
    "data": "training data comes from DFFML sources",
    "examples": "training data comes from DFFML sources",
    "daemon": "this model is not a server",
    "port": "this model is not a server",
    "c": "data is not read by VW",
    "cache": "data is not read by VW",
    "cache_file": "data is not read by VW",
    "f": "the model is saved into the model location",
    "final_regressor": "the model is saved into the model location",
    "i": "the model is loaded from the model location",
    "initial_regressor": "the model is loaded from the model location",
    "p": "predictions are returned to DFFML",
    "predictions": "predictions are returned to DFFML",
    "r": "predictions are returned to DFFML",
    "raw_predictions": "predictions are returned to DFFML",
    "bfgs": "it needs VW's own multi-pass data loop",
    "conjugate_gradient": "it needs VW's own multi-pass data loop",
}
#: vwcmd names choosing a multiclass reduction (then no --oaa is added).
MULTICLASS_OPTIONS = {"oaa", "ect", "log_multi", "csoaa", "wap", "recall_tree", "plt", "multilabel_oaa"}
TRUE_VALUES = {"true", "True", True}
FALSE_VALUES = {"false", "False", False}


class VWOptionError(ValueError):
    """An option of the vwmodel that cannot work, and why."""


@config
class VWModelConfig:
    features: Features = field("Features to train on")
    predict: Feature = field("Feature to predict")
    directory: pathlib.Path = field("Directory where the model is saved")
    task: str = field(
        "Task to perform: regression or classification", default="regression"
    )
    use_binary_label: bool = field(
        "Binary classification: the two classes become -1 and 1 (implies "
        "task classification)",
        default=False,
    )
    class_cost: Features = field(
        "Features named Cost_<class> holding the cost of each class, for "
        "cost-sensitive one against all (--csoaa)",
        default=None,
    )
    passes: int = field("Number of passes over the training data", default=1)
    learning_rate: float = field("Learning rate (VW's -l; VW's default 0.5)", default=None)
    loss_function: str = field(
        "VW loss function (squared, logistic, hinge, quantile, ...); default: "
        "squared for regression, logistic for classification",
        default=None,
    )
    vwcmd: List[str] = field(
        "Other VW arguments, as name value pairs: l2 0.1 interactions ab "
        "(a flag: binary True)",
        default_factory=list,
    )
    namespace: List[str] = field(
        "Namespaces of features: NS_A_B or NS=A,B puts features A and B "
        "into namespace NS",
        default_factory=list,
    )
    importance: Feature = field(
        "Feature holding each example's importance weight", default=None
    )
    base: Feature = field(
        "Feature holding each example's base (initial prediction), for "
        "residual regression",
        default=None,
    )
    tag: Feature = field("Feature holding each example's tag", default=None)
    noconvert: bool = field(
        "The one feature already holds the example in VW's input format "
        "(without the label)",
        default=False,
    )


# -- options -----------------------------------------------------------------


def vw_pairs(vwcmd) -> List[Tuple[str, Any]]:
    """``vwcmd`` as (name, value) pairs, names without leading dashes."""
    items = list(vwcmd or [])
    if len(items) % 2:
        raise VWOptionError(
            f"vwcmd must be name value pairs (a flag: NAME True), got an odd "
            f"number of items: {items!r}"
        )
    pairs = []
    for name, value in zip(items[0::2], items[1::2]):
        name = str(name).lstrip("-")
        if not name or not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise VWOptionError(f"vwcmd: {name!r} is not a VW option name")
        if name in REFUSED_OPTIONS:
            raise VWOptionError(
                f"vwcmd: VW option {name!r} is not supported here: {REFUSED_OPTIONS[name]}"
            )
        pairs.append((name, value))
    return pairs


def option_tokens(name: str, value) -> List[str]:
    if value in FALSE_VALUES:
        return []
    flag = ("-" if len(name) == 1 else "--") + name
    if value in TRUE_VALUES:
        return [flag]
    return [flag, str(value)]


def parse_namespaces(entries, feature_names) -> Dict[str, List[str]]:
    """``["n1_A_B", "n2=A,C"]`` -> ``{"n1": ["A", "B"], "n2": ["A", "C"]}``."""
    namespaces: Dict[str, List[str]] = {}
    for entry in entries or []:
        if "=" in entry:
            name, _, members = entry.partition("=")
            members = [member.strip() for member in members.split(",")]
        else:
            name, _, members = entry.partition("_")
            members = members.split("_")
        members = [member for member in members if member]
        if not name or not members:
            raise VWOptionError(
                f"namespace {entry!r}: expected NS_FEATURE_FEATURE or NS=FEATURE,FEATURE"
            )
        if not re.fullmatch(r"[^\s:|]+", name):
            raise VWOptionError(f"namespace {entry!r}: {name!r} is not a VW namespace name")
        unknown = [member for member in members if member not in feature_names]
        if unknown:
            raise VWOptionError(
                f"namespace {entry!r}: {', '.join(unknown)} not among the features "
                f"({', '.join(feature_names)})"
            )
        namespaces.setdefault(name, [])
        namespaces[name] += [member for member in members if member not in namespaces[name]]
    return namespaces


class Spec:
    """The configuration, checked and in the form the context uses."""

    def __init__(self, config: VWModelConfig):
        self.config = config
        if config.task not in TASKS:
            raise VWOptionError(f"task {config.task!r}: expected one of {', '.join(TASKS)}")
        self.features = list(config.features.names())
        self.target = config.predict.name
        self.pairs = vw_pairs(config.vwcmd)
        given = {name for name, _value in self.pairs}
        for option, names in (("learning_rate", {"l", "learning_rate"}),
                              ("loss_function", {"loss_function"})):
            if getattr(config, option) is not None and given & names:
                raise VWOptionError(
                    f"{option} is given both as an option and in vwcmd "
                    f"({', '.join(sorted(given & names))}): give it once"
                )
        self.passes = config.passes
        for name, value in self.pairs:
            if name == "passes":  # upstream form: vwcmd passes N
                try:
                    self.passes = int(value)
                except ValueError:
                    raise VWOptionError(f"vwcmd: passes {value!r} is not a number") from None
        if self.passes < 1:
            raise VWOptionError(f"passes must be at least 1, got {self.passes}")
        self.cost_classes = None
        if config.class_cost:
            self.cost_classes = []
            for feature in config.class_cost:
                prefix, _, label = feature.name.partition("_")
                if prefix != "Cost" or not label:
                    raise VWOptionError(
                        f"class_cost feature {feature.name!r}: expected Cost_<class>"
                    )
                self.cost_classes.append((label, feature.name))
            self.cost_classes.sort()
        self.classification = (
            config.task == "classification"
            or config.use_binary_label
            or self.cost_classes is not None
        )
        self.multiclass_given = sorted(given & MULTICLASS_OPTIONS)
        # VW's output for binary labels: a margin (> 0: class 1), or with
        # --link logistic a probability (> 0.5: class 1).
        self.binary_threshold = 0.0
        if any(name == "link" and value == "logistic" for name, value in self.pairs):
            self.binary_threshold = 0.5
        if config.noconvert and len(self.features) != 1:
            raise VWOptionError(
                "noconvert needs exactly one feature, holding the example in VW's "
                f"format; got {len(self.features)}"
            )
        self.namespaces = parse_namespaces(config.namespace, self.features)
        in_namespace = {member for members in self.namespaces.values() for member in members}
        self.default_namespace = [name for name in self.features if name not in in_namespace]

    def label_mode(self) -> str:
        if not self.classification:
            return "regression"
        if self.cost_classes is not None:
            return "csoaa"
        if self.config.use_binary_label:
            return "binary"
        return "multiclass"

    def arguments(self, classes) -> List[str]:
        """VW's command line for a model of these classes."""
        args = ["--quiet"]
        mode = self.label_mode()
        if self.config.learning_rate is not None:
            args += ["-l", repr(float(self.config.learning_rate))]
        if self.config.loss_function is not None:
            args += ["--loss_function", self.config.loss_function]
        elif mode in ("binary", "multiclass") and not any(
            name == "loss_function" for name, _ in self.pairs
        ):
            args += ["--loss_function", "logistic"]
        if mode == "multiclass" and not self.multiclass_given:
            args += ["--oaa", str(len(classes))]
        if mode == "csoaa" and "csoaa" not in self.multiclass_given:
            args += ["--csoaa", str(len(classes))]
        for name, value in self.pairs:
            if name != "passes":
                args += option_tokens(name, value)
        return args


# -- VW text format ------------------------------------------------------------


def _clean_name(name: str) -> str:
    return re.sub(r"[\s:|]", "_", str(name))


def _number(value) -> Optional[str]:
    """VW's text for a number; None for a missing value (None or NaN)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if math.isnan(value):
        return None
    return repr(value)


def feature_tokens(name: str, value) -> List[str]:
    """The VW features of one DFFML feature value."""
    if value is None:
        return []
    if isinstance(value, str):
        return [word for word in re.sub(r"[:|]", "", value).split()]
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = value.tolist() if hasattr(value, "tolist") else value
        if isinstance(items, list):
            tokens = []
            for index, item in enumerate(items):
                tokens += feature_tokens(f"{name}_{index}", item)
            return tokens
        value = items
    number = _number(value)
    return [] if number is None else [f"{_clean_name(name)}:{number}"]


def _tag(value) -> str:
    return "'" + re.sub(r"[\s|]", "_", str(value))


class Converter:
    """Records to VW examples, labels to VW labels and back."""

    def __init__(self, spec: Spec, classes: Optional[list]):
        self.spec = spec
        self.config = spec.config
        self.mode = spec.label_mode()
        self.classes = classes

    def vw_label(self, features: dict) -> str:
        target = features.get(self.spec.target)
        if self.mode == "regression":
            number = _number(target)
            if number is None:
                raise ValueError(f"{self.spec.target}: {target!r} is not a number to regress on")
            return number
        if self.mode == "csoaa":
            costs = []
            for index, (_label, name) in enumerate(self.spec.cost_classes, 1):
                cost = _number(features.get(name))
                if cost is not None:
                    costs.append(f"{index}:{cost}")
            return " ".join(costs)
        index = self.classes.index(target)
        if self.mode == "binary":
            return "-1" if index == 0 else "1"
        return str(index + 1)

    def line(self, features: dict, label: Optional[str]) -> str:
        head = []
        if label is not None:
            head.append(label)
            if self.mode != "csoaa":
                extra = [
                    _number(features.get(feature.name)) if feature else None
                    for feature in (self.config.importance, self.config.base)
                ]
                if extra[1] is not None:  # base needs the importance before it
                    extra[0] = extra[0] if extra[0] is not None else "1.0"
                head += [item for item in extra if item is not None]
        if self.config.tag is not None and features.get(self.config.tag.name) is not None:
            head.append(_tag(features[self.config.tag.name]))
        if self.config.noconvert:
            body = str(features[self.spec.features[0]]).strip()
            if not body.startswith("|"):
                body = "| " + body
            return " ".join(head + [body])
        parts = []
        for namespace, members in self.spec.namespaces.items():
            tokens = [token for name in members for token in feature_tokens(name, features.get(name))]
            parts.append(" ".join([f"|{namespace}"] + tokens))
        tokens = [
            token for name in self.spec.default_namespace
            for token in feature_tokens(name, features.get(name))
        ]
        if tokens or not parts:
            parts.append(" ".join(["|"] + tokens))
        return " ".join(head + parts)

    def predict_line(self, features: dict) -> str:
        # VW's text format has no base without a label; a label does not make
        # predict() learn, so give a neutral one when a base is present.
        if (
            self.mode == "regression"
            and self.config.base is not None
            and _number(features.get(self.config.base.name)) is not None
        ):
            return self.line(features, "0")
        return self.line(features, None)

    def value(self, prediction):
        """VW's prediction as a DFFML value."""
        if self.mode == "regression":
            return float(prediction)
        if isinstance(prediction, (list, tuple)):  # --probabilities: one per class
            prediction = max(range(len(prediction)), key=lambda i: prediction[i]) + 1
        if self.mode == "binary":
            positive = float(prediction) > self.spec.binary_threshold
            return self.classes[1] if positive else self.classes[0]
        index = int(prediction) - 1
        if 0 <= index < len(self.classes):
            return self.classes[index]
        return None


def _sorted_classes(labels) -> list:
    try:
        return sorted(labels)
    except TypeError:
        return sorted(labels, key=repr)


def _class_value(label: str, dtype):
    """A class named by a Cost_<class> feature, as the predicted feature's type."""
    try:
        return dtype(label) if dtype in (int, float) else label
    except ValueError:
        return label


def r2_score(actual, predicted) -> float:
    mean = sum(actual) / len(actual)
    total = sum((value - mean) ** 2 for value in actual)
    residual = sum((a - p) ** 2 for a, p in zip(actual, predicted))
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / total


# -- the model -------------------------------------------------------------------


@entrypoint("vwmodel")
class VWModel(SavingSimpleModel):
    """Vowpal Wabbit regression and classification (see the module's
    documentation)."""

    CONFIG = VWModelConfig
    STATE_FILE = STATE_FILE

    def __init__(self, config) -> None:
        super().__init__(config)
        self.spec = Spec(self.config)
        self.workspace: Optional[Workspace] = None

    def applicable_features(self, features) -> List[str]:
        # Any type and length (numbers, words, vectors), in the order given.
        return list(features.names())

    @property
    def model_path(self) -> pathlib.Path:
        return pathlib.Path(self.config.directory, MODEL_FILE)

    def load_files(self) -> None:
        if not self.model_path.is_file():
            self.storage = {}  # state without weights is no model
        elif self.storage:
            self.workspace = self._workspace(self.storage["classes"], load=True)

    def save_files(self) -> None:
        with atomic_replace(self.model_path) as temporary:
            self.workspace.save(str(temporary))

    def release(self) -> None:
        if self.workspace is not None:
            self.workspace.finish()
            self.workspace = None

    def _workspace(self, classes, load: bool) -> Workspace:
        args = self.spec.arguments(classes)
        if load:
            args += ["-i", str(self.model_path)]
        try:
            return Workspace(arg_list=args)
        except Exception as error:
            raise VWOptionError(
                f"Vowpal Wabbit refused the arguments {' '.join(args)}: {error}"
            ) from error

    def _columns(self, action: str) -> List[str]:
        """The features a record needs to be used to ``action``."""
        config = self.config
        columns = list(self.spec.features)
        if action in ("train", "accuracy"):
            columns.append(self.spec.target)
        if action == "train":
            if self.spec.cost_classes:
                columns += [name for _label, name in self.spec.cost_classes]
            columns += [
                feature.name
                for feature in (config.importance, config.base, config.tag)
                if feature is not None
            ]
        return list(dict.fromkeys(columns))

    async def _rows(self, sources, action: str):
        async for record in sources.with_features(self._columns(action)):
            yield record, record.features()

    def _classes_of(self, rows) -> Optional[list]:
        mode = self.spec.label_mode()
        if mode == "regression":
            return None
        if mode == "csoaa":
            dtype = self.config.predict.dtype
            return [_class_value(label, dtype) for label, _name in self.spec.cost_classes]
        classes = _sorted_classes({row[self.spec.target] for row in rows})
        if mode == "binary" and len(classes) != 2:
            raise ValueError(
                f"use_binary_label needs exactly two classes of {self.spec.target!r}, "
                f"got {classes!r}"
            )
        if not classes:
            raise ValueError("no training records")
        return classes

    async def train(self, sources) -> None:
        rows = [features async for _record, features in self._rows(sources, "train")]
        if not rows:
            raise ValueError(
                f"no record has all of {', '.join(self._columns('train'))}: nothing to train on"
            )
        classes = self._classes_of(rows)
        if self.workspace is not None:
            known = self.storage.get("classes")
            if classes is not None and known is not None and not set(classes) <= set(known):
                raise ValueError(
                    f"the trained model knows the classes {known!r}; the data has "
                    f"{sorted(set(classes) - set(known), key=repr)!r} too: train a new "
                    "model (another location, or -model-retrain)"
                )
            classes = known
        else:
            self.workspace = self._workspace(classes, load=False)
        converter = Converter(self.spec, classes)
        lines = [converter.line(row, converter.vw_label(row)) for row in rows]
        order = list(range(len(lines)))
        for number in range(self.spec.passes):
            if number:
                random.Random(number).shuffle(order)
            for index in order:
                self.workspace.learn(lines[index])
        self.storage = {
            "format": STATE_FORMAT,
            "mode": converter.mode,
            "classes": classes,
            "arguments": self.spec.arguments(classes),
        }
        self.files_changed()
        self.logger.debug("trained on %d records, %d passes", len(lines), self.spec.passes)

    def _require_model(self, action: str) -> Converter:
        if self.workspace is None:
            raise ModelNotTrained(f"Train the model before {action}")
        return Converter(self.spec, self.storage.get("classes"))

    async def accuracy(self, sources) -> Accuracy:
        converter = self._require_model("assessing its accuracy")
        actual, predicted = [], []
        async for _record, features in self._rows(sources, "accuracy"):
            actual.append(features[self.spec.target])
            predicted.append(
                converter.value(self.workspace.predict(converter.predict_line(features)))
            )
        if not actual:
            raise ValueError(
                f"no record has all of {', '.join(self._columns('accuracy'))}: nothing to assess"
            )
        if converter.mode == "regression":
            score = r2_score([float(value) for value in actual], predicted)
        else:
            score = sum(a == p for a, p in zip(actual, predicted)) / len(actual)
        self.storage["confidence"] = score
        return Accuracy(score)

    async def predict(self, sources) -> AsyncIterator[Any]:
        converter = self._require_model("predicting")
        confidence = self.storage.get("confidence", float("nan"))
        async for record, features in self._rows(sources, "predict"):
            value = converter.value(self.workspace.predict(converter.predict_line(features)))
            record.predicted(self.spec.target, value, confidence)
            yield record
