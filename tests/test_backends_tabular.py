"""End to end for the tabular backends of part 2: xgboost (``xgbclassifier``,
``xgbregressor``), our own Vowpal Wabbit model (``vwmodel``), daal4py
(``daal4pylr``) and auto-sklearn (``autoclassifier``, ``autoregressor``).

For every line of :data:`CASES` and every format of :data:`FORMATS`:

* the real ``dffml`` CLI trains into an archive, assesses and predicts; the
  archive is moved to another directory and a *new process* predicts from it
  with ``-model NAME_archive -model-location`` only (no features, no
  options): predictions and confidences must be identical (NaN == NaN);
  :func:`dffml_archive.load_model` on the moved file predicts the same
  in this process; for the first format a dataflow built with ``dffml
  dataflow create`` around DFFML's ``dffml.model.predict`` operation, whose
  model is the moved archive, predicts the same too;
* the async high-level API (``dffml.train/accuracy/predict`` with
  ``location=``) does the same, and a dataflow run in Python with
  ``model_predict`` and the moved archive predicts the same.

:data:`CASES` is the table of backends: a new backend, or another task of
one, is one line.  :func:`test_every_model_of_the_backends_is_wrapped_and_tested`
fails when a backend distribution registers a model without a line.

Then the quirks of each backend (xgboost's objective, Vowpal Wabbit's
conversion and options, auto-sklearn's time budget and ``load_models``), and
the documentation's examples, which are executed and compared with the
output the pages show.

Nothing here uses the network; auto-sklearn trains with a small budget
(``smac_scenario_args {'runcount_limit': 1}``: one pipeline, about 10 s).
"""
import asyncio
import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys
from typing import Dict, List

import pytest

import dffml
from dffml import Feature, Features, Model

import dffml_archive
from dffml_archive import load_model
from dffml_archive.model import archive_label
from dffml_archive.models import vwmodel as vw

from _e2e_helpers import EXAMPLES, TABULAR_KINDS, check_stored_model, comparable
from _e2e_helpers import dffml_cli as shared_dffml_cli, parse_records, same, write_csv
from _e2e_helpers import predictions_of, predict_through_the_dataflow_operation
from _e2e_helpers import create_predict_dataflow_with_the_cli
from _e2e_helpers import run_dataflow_on_one_record_with_the_cli
from _e2e_helpers import model_entry_points, move_the_archive, our_models_in
from _e2e_helpers import check_example_prints_its_output_and_leaves_its_archives
from _e2e_helpers import examples_included_by_page, without_timestamps

TIMEOUT = 600

#: The archive formats every case runs in.
FORMATS = (".tar.gz", ".zip")


KINDS = {name: TABULAR_KINDS[name] for name in ("regression", "binary", "multiclass")}


# -- the backends --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    #: Upstream model name (ours is NAME_archive).
    model: str
    kind: str
    #: Model options: field -> value (CLI: -model-FIELD VALUE; True: a flag).
    options: Dict[str, object] = dataclasses.field(default_factory=dict)
    #: What the confidence of a prediction is: "nan" (none), "accuracy" (the
    #: score of the last accuracy run) or "probability" (of the prediction).
    confidence: str = "nan"

    @property
    def id(self) -> str:
        return f"{self.model}-{self.kind}"


#: auto-sklearn searches until its budget is spent (at least 30 s); one
#: evaluated pipeline ends the search after about 10 s.
AUTOSKLEARN_FAST = {
    "time_left_for_this_task": 30,
    "per_run_time_limit": 10,
    "initial_configurations_via_metalearning": 0,
    "smac_scenario_args": {"runcount_limit": 1},
}
VW_FAST = {"passes": 10, "learning_rate": 10.0}

#: One line per backend task.
CASES = [
    # No -model-objective: chosen from the classes (upstream needed it).
    Case("xgbclassifier", "binary"),
    Case("xgbclassifier", "multiclass", {"n_estimators": 20}),
    Case("xgbregressor", "regression", {"n_estimators": 100}),
    Case("vwmodel", "regression", VW_FAST, "accuracy"),
    Case("vwmodel", "binary", {**VW_FAST, "use_binary_label": True}, "accuracy"),
    Case("vwmodel", "multiclass", {**VW_FAST, "task": "classification"}, "accuracy"),
    Case("daal4pylr", "regression"),
    Case("autoclassifier", "multiclass", AUTOSKLEARN_FAST, "probability"),
    Case("autoregressor", "regression", AUTOSKLEARN_FAST),
]

#: Our module -> the distribution whose dffml.model entry points it wraps
#: (None: the model is our own).
MODULES = {
    "dffml_archive.backends.xgboost": "dffml-model-xgboost",
    "dffml_archive.backends.vowpalwabbit": None,
    "dffml_archive.backends.daal4py": "dffml-model-daal4py",
    "dffml_archive.backends.autosklearn": "dffml-model-autosklearn",
}
OUR_OWN = {"vwmodel": "dffml_archive.backends.vowpalwabbit"}


def _upstream_models() -> Dict[str, str]:
    """Upstream model name -> our module wrapping it."""
    names = dict(OUR_OWN)
    for module, distribution in MODULES.items():
        if distribution is None:
            continue
        names.update({name: module for name in model_entry_points(distribution)})
    return names


def test_every_model_of_the_backends_is_wrapped_and_tested():
    upstream = _upstream_models()
    assert set(upstream) == {"xgbclassifier", "xgbregressor", "vwmodel", "daal4pylr",
                             "autoclassifier", "autoregressor"}
    assert {case.model for case in CASES} == set(upstream), "a model without a CASES line"
    ours = model_entry_points()
    for name, module in upstream.items():
        label = archive_label(name)
        entry = ours[label]
        assert (entry.module_name, entry.attrs) == (module, (label,)), entry
        loaded = Model.load(label)
        assert loaded.UPSTREAM == name and loaded.ENTRY_POINT_ORIG_LABEL == label
        if name not in OUR_OWN:
            distribution = MODULES[module]
            upstream_class = model_entry_points(distribution)[name].resolve()
            # The upstream class, or ours deriving from it (a fixed quirk).
            assert issubclass(loaded.INNER, upstream_class), label
        assert loaded.ADAPTER.extra == module.rsplit(".", 1)[1]
    # Nothing else of ours lives in these modules.
    assert set(our_models_in(MODULES)) == {archive_label(name) for name in upstream}


# -- helpers -------------------------------------------------------------------


def dffml_cli(*args, cwd) -> subprocess.CompletedProcess:
    return shared_dffml_cli(*args, cwd=cwd, timeout=TIMEOUT)


def cli_options(case: Case) -> List[str]:
    kind = KINDS[case.kind]
    options = ["-model-features", *kind.features, "-model-predict", kind.predict]
    for name, value in case.options.items():
        if value is True:
            options.append(f"-model-{name}")
        elif isinstance(value, (list, tuple)):
            options += [f"-model-{name}", *map(str, value)]
        else:
            options += [f"-model-{name}", repr(value) if isinstance(value, dict) else str(value)]
    return options


def make_model(case: Case, location: pathlib.Path, **overrides):
    kind = KINDS[case.kind]
    options = dict(
        features=kind.feature_objects(),
        predict=Feature(kind.predict),
        location=location,
        **case.options,
    )
    options.update(overrides)
    return Model.load(archive_label(case.model))(**options)


def check_predictions(case: Case, predictions: List[dict], accuracy: float):
    """The values are sane for the data, and the confidence is what the
    backend documents."""
    kind = KINDS[case.kind]
    assert len(predictions) == len(kind.test), "one prediction per record"
    values = [prediction[kind.target]["value"] for prediction in predictions]
    kind.check(kind.test, values)
    for prediction in predictions:
        confidence = comparable(prediction[kind.target]["confidence"])
        if case.confidence == "nan":
            assert confidence == "<NaN>", prediction
        elif case.confidence == "accuracy":
            assert math.isclose(confidence, accuracy, rel_tol=1e-9), (confidence, accuracy)
        else:
            assert 0.0 < confidence <= 1.0, prediction
    assert not math.isnan(accuracy)


def check_manifest(archive: pathlib.Path, case: Case) -> dict:
    info = asyncio.run(dffml_archive.inspect(archive))
    stored = info.manifest.model
    check_stored_model(stored, case.model, case.options, KINDS[case.kind].features)
    assert stored["extra"] in {"xgboost", "vowpalwabbit", "daal4py", "autosklearn"}
    return stored


# -- 1. the real dffml CLI -----------------------------------------------------


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_cli_train_accuracy_predict_move_predict(case, ext, tmp_path):
    kind = KINDS[case.kind]
    label = archive_label(case.model)
    work = tmp_path / "work"
    work.mkdir()
    write_csv(work / "train.csv", kind.train)
    write_csv(work / "predict.csv", kind.test)
    location = f"model{ext}"  # relative to the working directory
    common = ["-model", label, *cli_options(case), "-model-location", location]
    sources = ["-sources", "f=csv", "-source-filename"]

    dffml_cli("train", *common, *sources, "train.csv", cwd=work)
    archive = work / location
    assert archive.is_file()
    accuracy = json.loads(dffml_cli("accuracy", *common, *sources, "train.csv", cwd=work).stdout)
    before = parse_records(
        dffml_cli("predict", "all", *common, *sources, "predict.csv", cwd=work).stdout
    )
    predictions = [record["prediction"] for record in before]
    check_predictions(case, predictions, accuracy)
    stored = check_manifest(archive, case)
    if case.model == "xgbclassifier":
        objective = "binary:logistic" if case.kind == "binary" else "multi:softmax"
        assert stored["config"]["objective"] == objective

    # Elsewhere, in a new process, the location alone.
    elsewhere = tmp_path / "elsewhere" / "deeper"
    moved = elsewhere / f"renamed{ext}"
    moved_bytes = move_the_archive(archive, moved)
    after = parse_records(
        dffml_cli("predict", "all", "-model", label, "-model-location", moved,
                  *sources, work / "predict.csv", cwd=elsewhere).stdout
    )
    assert same(after, before), f"{case.id}{ext}: predictions changed after the move"

    # The file alone, in this process.
    model = asyncio.run(load_model(moved))
    assert same(asyncio.run(predictions_of(model, kind.test)), predictions)

    if ext == FORMATS[0]:
        # A dataflow around dffml.model.predict, the model being the archive
        # (its file beside elsewhere: only the archive may be in there).
        dataflow = tmp_path / "predict.json"
        create_predict_dataflow_with_the_cli(label, moved, dataflow, cwd=elsewhere,
                                             timeout=TIMEOUT)
        ran = run_dataflow_on_one_record_with_the_cli(dataflow, kind.test[1], cwd=elsewhere,
                                                      timeout=TIMEOUT)
        assert same(ran, [{"model_predictions": predictions[1]}]), ran
    assert moved.read_bytes() == moved_bytes, "predicting must not rewrite the archive"
    assert sorted(os.listdir(elsewhere)) == [moved.name]


# -- 2. the async high-level API, and dataflows in Python --------------------


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
async def test_api_train_accuracy_predict_move_predict(case, ext, tmp_path):
    kind = KINDS[case.kind]
    location = tmp_path / "first" / f"model{ext}"
    location.parent.mkdir()
    model = make_model(case, location)

    await dffml.train(model, *kind.train)
    assert location.is_file()
    accuracy = await dffml.accuracy(model, *kind.train)
    before = await predictions_of(model, kind.test)
    check_predictions(case, before, accuracy)

    moved = tmp_path / "second" / f"other{ext}"
    moved_bytes = move_the_archive(location, moved)

    loaded = await load_model(moved)  # no backend, features or options given
    assert type(loaded) is type(model)
    assert same(await predictions_of(loaded, kind.test), before)
    by_label = Model.load(archive_label(case.model))(location=moved)
    flowed = await predict_through_the_dataflow_operation(by_label, kind.test)
    assert same(flowed, before)
    assert moved.read_bytes() == moved_bytes, "predicting must not rewrite the archive"
    info = await dffml_archive.inspect(moved)
    assert info.manifest.model["upstream"] == case.model


# -- 3. xgboost: the objective -------------------------------------------------


def _xgb(location, **options):
    return make_model(Case("xgbclassifier", "binary"), location, **options)


async def test_xgboost_explicit_objective_is_kept(tmp_path):
    kind = KINDS["binary"]
    model = _xgb(tmp_path / "m.zip", objective="binary:hinge", n_estimators=10)
    await dffml.train(model, *kind.train)
    info = await dffml_archive.inspect(tmp_path / "m.zip")
    assert info.manifest.model["config"]["objective"] == "binary:hinge"
    kind.check(kind.test, [p["Y"]["value"] for p in await predictions_of(model, kind.test)])


async def test_xgboost_multiclass_objective_on_two_classes_says_what_to_pass(tmp_path):
    model = _xgb(tmp_path / "m.zip", objective="multi:softmax")
    with pytest.raises(ValueError, match=r"-model-objective binary:logistic"):
        await dffml.train(model, *KINDS["binary"].train)
    assert not (tmp_path / "m.zip").exists()


async def test_xgboost_labels_must_be_0_to_k_minus_1(tmp_path):
    rows = [{"A": row["A"], "Y": row["Y"] + 1} for row in KINDS["binary"].train]
    model = _xgb(tmp_path / "m.zip")
    with pytest.raises(ValueError, match=r"integers 0 \.\. k-1, got \[1, 2\]"):
        await dffml.train(model, *rows)
    assert not (tmp_path / "m.zip").exists()


async def test_xgboost_retrain_chooses_the_objective_again(tmp_path):
    location = tmp_path / "m.tar.gz"
    await dffml.train(_xgb(location, n_estimators=10), *KINDS["binary"].train)
    multiclass = KINDS["multiclass"]
    model = make_model(Case("xgbclassifier", "multiclass"), location, retrain=True,
                       n_estimators=10)
    await dffml.train(model, *multiclass.train)
    info = await dffml_archive.inspect(location)
    assert info.manifest.model["config"]["objective"] == "multi:softmax"
    loaded = await load_model(location)
    values = [p["label"]["value"] for p in await predictions_of(loaded, multiclass.test)]
    multiclass.check(multiclass.test, values)


# -- 4. Vowpal Wabbit: our own model -------------------------------------------


def _vw_spec(**options):
    options.setdefault("features", Features(Feature("a", float, 1), Feature("b", float, 1)))
    options.setdefault("predict", Feature("y", float, 1))
    return vw.Spec(vw.VWModelConfig(directory=pathlib.Path("unused"), **options))


def test_vw_lines_namespaces_importance_base_tag():
    spec = _vw_spec(
        features=Features(Feature("a", float, 1), Feature("b", float, 1),
                          Feature("c", float, 1), Feature("words", str, 1)),
        namespace=["n1_a_b", "n2=a,c"],
        importance=Feature("w", float, 1),
        base=Feature("start", float, 1),
        tag=Feature("id", int, 1),
    )
    converter = vw.Converter(spec, None)
    row = {"a": 1, "b": 2.5, "c": float("nan"), "words": "big|red: car",
           "y": 3, "w": 2, "start": 0.5, "id": 7}
    assert converter.line(row, converter.vw_label(row)) == (
        "3.0 2.0 0.5 '7 |n1 a:1.0 b:2.5 |n2 a:1.0 | bigred car"
    )
    # Predicting: no label, but the base needs one (a neutral one).
    assert converter.predict_line(row) == "0 2.0 0.5 '7 |n1 a:1.0 b:2.5 |n2 a:1.0 | bigred car"
    # A base without importance gets importance 1.
    del row["w"]
    assert converter.line(row, "3.0").startswith("3.0 1.0 0.5 '7 |n1")


def test_vw_labels_for_each_task():
    binary = vw.Converter(_vw_spec(use_binary_label=True), ["no", "yes"])
    assert [binary.vw_label({"y": v}) for v in ("no", "yes")] == ["-1", "1"]
    assert (binary.value(-0.3), binary.value(2.0)) == ("no", "yes")
    multiclass = vw.Converter(_vw_spec(task="classification"), [3, 5, 9])
    assert [multiclass.vw_label({"y": v}) for v in (3, 5, 9)] == ["1", "2", "3"]
    assert multiclass.value(2) == 5 and multiclass.value([0.1, 0.2, 0.7]) == 9
    costs = _vw_spec(class_cost=Features(Feature("Cost_b", float, 1), Feature("Cost_a", float, 1)))
    csoaa = vw.Converter(costs, ["a", "b"])
    assert csoaa.vw_label({"Cost_a": 0.0, "Cost_b": 2}) == "1:0.0 2:2.0"
    assert costs.arguments(["a", "b"]) == ["--quiet", "--csoaa", "2"]
    assert _vw_spec(task="classification").arguments([1, 2, 3]) == [
        "--quiet", "--loss_function", "logistic", "--oaa", "3"
    ]


def test_vw_options_pass_through_and_errors():
    spec = _vw_spec(learning_rate=0.5, vwcmd=["l2", "0.001", "--interactions", "ab",
                                             "binary", "True", "adaptive", "False", "passes", "4"])
    assert spec.passes == 4
    assert spec.arguments(None) == ["--quiet", "-l", "0.5", "--l2", "0.001",
                                    "--interactions", "ab", "--binary"]
    for options, message in (
        (dict(vwcmd=["l2"]), "name value pairs"),
        (dict(vwcmd=["data", "x.vw"]), "DFFML sources"),
        (dict(vwcmd=["f", "model.vw"]), "saved into the model location"),
        (dict(vwcmd=["l", "1"], learning_rate=0.5), "given both"),
        (dict(task="clustering"), "regression, classification"),
        (dict(namespace=["n1_a_zz"]), "zz not among the features"),
        (dict(noconvert=True), "exactly one feature"),
        (dict(passes=0), "at least 1"),
    ):
        with pytest.raises(vw.VWOptionError, match=message):
            _vw_spec(**options)


async def test_vw_unknown_vw_argument_names_the_command_line(tmp_path):
    model = make_model(CASES[3], tmp_path / "m.zip", vwcmd=["no_such_option", "1"])
    with pytest.raises(vw.VWOptionError, match="--no_such_option"):
        await dffml.train(model, *KINDS["regression"].train)
    assert not (tmp_path / "m.zip").exists()


async def test_vw_namespaces_interactions_and_continued_training(tmp_path):
    kind = KINDS["multiclass"]
    location = tmp_path / "m.tar.gz"
    case = Case("vwmodel", "multiclass", {**VW_FAST, "task": "classification",
                                          "namespace": ["p_a", "q=b"],
                                          "vwcmd": ["interactions", "pq", "l2", "0.000001"]})
    model = make_model(case, location)
    await dffml.train(model, *kind.train)
    await dffml.accuracy(model, *kind.train)
    first = await predictions_of(model, kind.test)
    kind.check(kind.test, [p["label"]["value"] for p in first])
    working = tmp_path / "unpacked"
    await dffml_archive.extract(location, working)
    state = json.loads((working / "vw.json").read_text())
    assert state["classes"] == [0, 1, 2]
    assert "--interactions" in state["arguments"] and "--oaa" in state["arguments"]

    # Training again continues from the weights; a new class cannot be added.
    await dffml.train(model, *kind.train[:8])
    with pytest.raises(ValueError, match=r"\[7\] too"):
        await dffml.train(model, {"a": 1.0, "b": 1.0, "label": 7})
    loaded = await load_model(location)
    kind.check(kind.test, [p["label"]["value"] for p in await predictions_of(loaded, kind.test)])


async def test_vw_noconvert_and_string_features(tmp_path):
    rows = [
        {"text": f"| size:{x}.0 {'red' if x % 2 else 'blue'}", "y": 2.0 * x + (3 if x % 2 else 0)}
        for x in range(12)
    ]
    model = Model.load("vwmodel_archive")(
        features=Features(Feature("text", str, 1)), predict=Feature("y", float, 1),
        noconvert=True, passes=20, learning_rate=5.0, location=tmp_path / "m.zip",
    )
    await dffml.train(model, *rows)
    assert await dffml.accuracy(model, *rows) > 0.9
    (prediction,) = await predictions_of(model, [{"text": "| size:4.0 red"}])
    assert abs(prediction["y"]["value"] - 11.0) < 2.0


async def test_vw_predict_before_training_says_train_first(tmp_path):
    from dffml.model.model import ModelNotTrained

    model = make_model(CASES[3], tmp_path / "m")  # a plain directory
    with pytest.raises(ModelNotTrained):
        await predictions_of(model, KINDS["regression"].test)


# -- 5. auto-sklearn -------------------------------------------------------------


async def test_autosklearn_refuses_load_models_false(tmp_path):
    model = make_model(CASES[-1], tmp_path / "m.zip", load_models=False)
    with pytest.raises(dffml_archive.ArchiveError, match="load_models"):
        await dffml.train(model, *KINDS["regression"].train)
    assert not (tmp_path / "m.zip").exists()


def test_autosklearn_leaves_every_module_loadable():
    """smac (under auto-sklearn) puts lazy modules for its optional extras in
    sys.modules; one that is not installed raised ImportError when touched,
    and inspect.getmodule touches them all (TensorFlow then failed in any
    process that had loaded auto-sklearn first)."""
    code = (
        "import inspect, sys\n"
        "from dffml import Model\n"
        "Model.load('autoclassifier_archive')\n"
        "assert 'smac' in sys.modules\n"
        "inspect.getmodule((lambda: 0).__code__)\n"
        "for name, module in list(sys.modules.items()):\n"
        "    getattr(module, '__file__', None)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


# -- 6. the documentation's examples --------------------------------------------

#: Example -> archives it leaves behind (relative to its directory) -> entry point.
EXAMPLE_ARCHIVES = {
    "xgboost_cli.sh": {"shipped/rain.tar.gz": "xgbclassifier_archive"},
    "xgboost_python.py": {"shipped/house.zip": "xgbregressor_archive"},
    "vowpalwabbit_cli.sh": {"shipped/spam.zip": "vwmodel_archive"},
    "vowpalwabbit_python.py": {"shipped/weather.tar.gz": "vwmodel_archive"},
    "daal4py_cli.sh": {"shipped/line.tar.xz": "daal4pylr_archive"},
    "daal4py_python.py": {"elsewhere/line.zip": "daal4pylr_archive"},
    "autosklearn_cli.sh": {"shipped/blobs.tar.gz": "autoclassifier_archive"},
    "autosklearn_python.py": {"shipped/curve.zip": "autoregressor_archive"},
}
BACKEND_PAGES = ("xgboost", "vowpalwabbit", "daal4py", "autosklearn")


def test_every_example_of_these_backends_is_known():
    found = sorted(
        path.name
        for backend in BACKEND_PAGES
        for path in EXAMPLES.glob(f"{backend}_*")
        if path.suffix in (".sh", ".py")
    )
    assert found == sorted(EXAMPLE_ARCHIVES)


@pytest.mark.parametrize("name", sorted(EXAMPLE_ARCHIVES))
def test_example_prints_its_documented_output(name, tmp_path):
    check_example_prints_its_output_and_leaves_its_archives(
        name, tmp_path, EXAMPLE_ARCHIVES[name], without_timestamps, timeout=TIMEOUT)


@pytest.mark.parametrize("backend", BACKEND_PAGES)
def test_each_page_includes_its_examples_and_outputs(backend):
    included = examples_included_by_page(backend)
    expected = set()
    for name in EXAMPLE_ARCHIVES:
        if name.startswith(f"{backend}_"):
            expected |= {name, str(pathlib.Path(name).with_suffix(".out"))}
    assert expected and expected <= included, sorted(expected - included)
