"""End to end: every model backend, trained into every archive format, used
through the real ``dffml`` CLI, the async high-level API and dataflows, then
moved and used again from the archive alone.

What "used again from the archive alone" proves: the moved archive is read in
a fresh process (CLI) or by :func:`dffml_archive.load_model` (API)
without ``-model-features``/``-model-predict``/any option, so the backend,
the features and every hyperparameter come from the manifest, and the
predictions *and confidences* must be identical to those made before the move.

The backends are not hand-picked: :func:`upstream_names` enumerates dffml's,
dffml-model-scratch's and dffml-model-scikit's ``dffml.model`` entry points
(plus ``scikitrfr``, which the scikit plugin builds but does not register).
:data:`BACKENDS` says which data each one needs; a backend missing from it
fails :func:`test_backend_table_covers_every_upstream_model` (and its own
cases), so adding a backend is one line there.

Cost: a ``dffml`` process takes about 1.5 s (sklearn import), so the CLI runs
every backend once with the archive format rotating over the six formats,
plus every format for ``slr`` and ``scikitlr``; the in-process API runs every
backend in every format.
"""
import asyncio
import concurrent.futures
import dataclasses
import json
import math
import os
import pathlib
from typing import Dict, List

import pytest

import dffml
from dffml import Model

import dffml_archive
from dffml_archive import _formats
from dffml_archive.model import archive_label

from _e2e_helpers import TABULAR_KINDS, check_stored_model, dffml_cli, parse_records, same
from _e2e_helpers import keyed_predictions, predict_through_the_dataflow_operation
from _e2e_helpers import create_predict_dataflow_with_the_cli
from _e2e_helpers import run_dataflow_on_one_record_with_the_cli
from _e2e_helpers import model_entry_points, move_the_archive, our_models_in, tree, write_csv

#: One extension per archive format (the first, canonical one of each).
FORMATS = (".zip", ".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst")
FORMAT_NAMES = {".zip": "zip", ".tar": "tar", ".tar.gz": "tar.gz",
                ".tar.bz2": "tar.bz2", ".tar.xz": "tar.xz", ".tar.zst": "tar.zst"}


KINDS = TABULAR_KINDS


# -- backends ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Backend:
    kind: str
    #: Extra model options: field -> value (CLI: -model-FIELD str(value)).
    options: Dict[str, object] = dataclasses.field(default_factory=dict)


TWO_CLUSTERS = {"n_clusters": 2}

#: Upstream model name -> the data it is tested with.  One line per backend.
BACKENDS: Dict[str, Backend] = {
    "slr": Backend("regression"),
    "scratchlgrsag": Backend("binary"),
    "anomalydetection": Backend("binary"),
    "scikitac": Backend("clustering", TWO_CLUSTERS),
    "scikitadaboost": Backend("multiclass"),
    "scikitap": Backend("clustering"),
    "scikitard": Backend("regression"),
    "scikitbgc": Backend("multiclass"),
    "scikitbirch": Backend("clustering", TWO_CLUSTERS),
    # binarize: the default threshold 0.0 makes every positive feature 1.
    "scikitbnb": Backend("binary", {"binarize": 1.0}),
    "scikitbyr": Backend("regression"),
    "scikitdtc": Backend("multiclass"),
    "scikitdtr": Backend("regression"),
    "scikiteln": Backend("regression"),
    "scikitetc": Backend("multiclass"),
    "scikitgbc": Backend("multiclass"),
    "scikitgnb": Backend("multiclass"),
    "scikitgpc": Backend("binary"),
    "scikitgpr": Backend("regression"),
    "scikitkmeans": Backend("clustering", TWO_CLUSTERS),
    "scikitknn": Backend("multiclass"),
    "scikitlars": Backend("regression"),
    "scikitlas": Backend("regression"),
    "scikitlda": Backend("multiclass"),
    "scikitlor": Backend("binary"),
    "scikitlr": Backend("regression"),
    "scikitmbkmeans": Backend("clustering", TWO_CLUSTERS),
    "scikitmlp": Backend("binary"),
    # MultinomialNB needs non-negative features: the blobs are.
    "scikitmnb": Backend("multiclass"),
    "scikitms": Backend("clustering"),
    "scikitomp": Backend("regression"),
    "scikitoptics": Backend("clustering"),
    "scikitqda": Backend("multiclass"),
    "scikitrfc": Backend("multiclass"),
    "scikitrfr": Backend("regression"),
    "scikitridge": Backend("regression"),
    "scikitrsc": Backend("regression"),
    "scikitsc": Backend("clustering", TWO_CLUSTERS),
    "scikitsvc": Backend("binary"),
}


def _entry_point_names(distribution: str) -> List[str]:
    return sorted(model_entry_points(distribution))


def upstream_names() -> List[str]:
    """Every upstream model, from the installed distributions' entry points."""
    scikit = set(_entry_point_names("dffml-model-scikit"))
    # Built by dffml_model_scikit.scikit_models but missing from its
    # entry_points.txt in 0.1.0.post0.
    scikit.add("scikitrfr")
    return (
        _entry_point_names("dffml")
        + _entry_point_names("dffml-model-scratch")
        + sorted(scikit)
    )


UPSTREAM = upstream_names()


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        pytest.fail(f"no line for upstream model {name!r} in BACKENDS: add one")
    return BACKENDS[name]


# -- helpers -------------------------------------------------------------------


def model_options(spec: Backend) -> List[str]:
    kind = KINDS[spec.kind]
    options = ["-model-features", *kind.features]
    if kind.predict:
        options += ["-model-predict", kind.predict]
    for name, value in spec.options.items():
        options += [f"-model-{name}", str(value)]
    return options


async def manifest_model_async(archive: pathlib.Path):
    info = await dffml_archive.inspect(archive)
    assert info.manifest is not None and info.manifest.model, archive
    return info


def check_confidences(name, records_predictions, accuracy: float):
    """After accuracy, every backend predicts with confidence == accuracy
    (scikit only if its confidence survived the working directory changing)."""
    assert not math.isnan(accuracy), f"{name}: accuracy is NaN"
    for prediction in records_predictions:
        confidence = prediction["confidence"]
        assert isinstance(confidence, float) and not math.isnan(confidence), (
            f"{name}: confidence lost: {prediction}"
        )
        assert math.isclose(confidence, accuracy, rel_tol=1e-9, abs_tol=1e-12), (
            f"{name}: confidence {confidence} != accuracy {accuracy}"
        )


# -- the helpers the comparisons rely on ----------------------------------------


def test_comparison_counts_nan_as_equal_and_ignores_last_updated():
    printed = (
        '[{"key": "0", "last_updated": "2026-01-01T00:00:00Z",'
        ' "prediction": {"y": {"confidence": NaN, "value": 1.5}}}]'
    )
    again = printed.replace("2026-01-01T00:00:00Z", "2027-02-02T00:00:00Z")
    assert same(parse_records(printed), parse_records(again))
    assert not same(parse_records(printed), parse_records(printed.replace("NaN", "0.5")))
    assert not same(parse_records(printed), parse_records(printed.replace("1.5", "1.25")))


# -- the backend table ---------------------------------------------------------


def test_backend_table_covers_every_upstream_model():
    assert sorted(BACKENDS) == sorted(UPSTREAM), (
        "BACKENDS must have exactly one line per upstream model: "
        f"missing {sorted(set(UPSTREAM) - set(BACKENDS))}, "
        f"stale {sorted(set(BACKENDS) - set(UPSTREAM))}"
    )
    for name, spec in BACKENDS.items():
        assert spec.kind in KINDS, (name, spec.kind)


def test_every_upstream_model_is_enumerated():
    # Guards upstream_names() itself: the three distributions are found and
    # the unregistered scikitrfr is added.
    assert "slr" in UPSTREAM
    assert {"scratchlgrsag", "anomalydetection"} <= set(UPSTREAM)
    assert len([name for name in UPSTREAM if name.startswith("scikit")]) >= 36
    assert "scikitrfr" in UPSTREAM


#: Which of our modules wraps which upstream distribution's models.
OUR_MODULES = {
    "dffml": "dffml_archive.backends.slr",
    "dffml-model-scratch": "dffml_archive.backends.scratch",
    "dffml-model-scikit": "dffml_archive.backends.scikit",
}


def _expected_entry_points() -> Dict[str, str]:
    """Our label -> our module, for every upstream model of the three."""
    expected = {}
    for distribution, module in OUR_MODULES.items():
        names = set(_entry_point_names(distribution))
        if distribution == "dffml-model-scikit":
            names.add("scikitrfr")
        expected.update({archive_label(name): module for name in names})
    return expected


def test_our_entry_points_are_exactly_upstream_name_archive():
    ours = model_entry_points()
    in_our_modules = our_models_in(OUR_MODULES.values())
    # Exactly one NAME_archive per upstream NAME, in the module of its
    # distribution: a model added upstream, or a stale one of ours, fails.
    assert in_our_modules == _expected_entry_points()
    for name in UPSTREAM:
        label = archive_label(name)
        assert label == f"{name}_archive"
        entry = ours[label]
        assert entry.attrs == (label,), entry
        loaded = Model.load(label)
        assert loaded.UPSTREAM == name, label
        assert loaded.ENTRY_POINT_ORIG_LABEL == label
        # The upstream class is the one registered under the upstream name.
        if name != "scikitrfr":
            assert Model.load(name) is loaded.INNER, label


def test_format_list_is_every_format():
    assert set(FORMATS) == {fmt.extensions[0] for fmt in _formats.FORMATS}
    assert all(ext in dffml_archive.SUPPORTED_EXTENSIONS for ext in FORMATS)


# -- 1. the real dffml CLI -----------------------------------------------------
#
# A case is four dffml processes (train, accuracy, predict, predict after the
# move), about 1.5 s each, and each process mostly waits for one core.  The
# selected cases' processes are therefore started by one module fixture,
# os.cpu_count() cases at a time (threads that wait on subprocesses; no
# pytest plugin), and each test asserts on its own case's results.


def run_cli_case(name: str, ext: str, root: pathlib.Path) -> dict:
    """Train, assess and predict through the CLI, move the archive and predict
    again from a new process giving only ``-model`` and ``-model-location``."""
    spec = backend(name)
    kind = KINDS[spec.kind]
    label = archive_label(name)
    env = dict(os.environ, DFFML_ARCHIVE_CACHE=str(root / "cache"))
    work = root / "work"
    (work / "first").mkdir(parents=True)
    write_csv(work / "train.csv", kind.train)
    write_csv(work / "predict.csv", kind.test)
    location = pathlib.Path("first") / f"model{ext}"  # relative to the CWD
    common = ["-model", label, *model_options(spec), "-model-location", location]
    sources = ["-sources", "f=csv", "-source-filename"]
    found = {"root": root}

    dffml_cli("train", *common, *sources, "train.csv", cwd=work, env=env)
    found["after_train"] = tree(work / "first")
    found["accuracy"] = json.loads(
        dffml_cli("accuracy", *common, *sources, "train.csv", cwd=work, env=env).stdout
    )
    found["before"] = parse_records(
        dffml_cli("predict", "all", *common, *sources, "predict.csv", cwd=work, env=env).stdout
    )
    archive = work / location
    found["info"] = asyncio.run(dffml_archive.inspect(archive))

    elsewhere = root / "elsewhere" / "deeper"
    moved = elsewhere / f"renamed{ext}"
    found["moved"] = moved
    found["moved_bytes"] = move_the_archive(archive, moved)
    found["after"] = parse_records(
        dffml_cli("predict", "all", "-model", label, "-model-location", moved,
                  *sources, work / "predict.csv", cwd=elsewhere, env=env).stdout
    )
    found["elsewhere"] = tree(elsewhere)
    return found


CLI_TEST = "test_cli_train_accuracy_predict_then_move"


@pytest.fixture(scope="module")
def cli_cases(request, tmp_path_factory) -> dict:
    """(name, ext) -> run_cli_case()'s result or the exception it raised, for
    every CLI case selected in this session."""
    wanted = [
        (item.callspec.params["name"], item.callspec.params["ext"])
        for item in request.session.items
        if getattr(item, "originalname", None) == CLI_TEST and item.module is request.module
    ]

    def run(case):
        name, ext = case
        root = tmp_path_factory.mktemp(f"cli-{name}{ext.replace('.', '-')}")
        try:
            return case, run_cli_case(name, ext, root)
        except BaseException as error:  # reported by the case's own test
            return case, error

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(pool.map(run, wanted))


def _cli_case_list():
    cases = [(name, FORMATS[index % len(FORMATS)]) for index, name in enumerate(UPSTREAM)]
    for name in ("slr", "scikitlr"):
        cases += [(name, ext) for ext in FORMATS if (name, ext) not in cases]
    return cases


@pytest.mark.parametrize("name,ext", _cli_case_list())
def test_cli_train_accuracy_predict_then_move(name, ext, cli_cases):
    found = cli_cases[(name, ext)]
    if isinstance(found, BaseException):
        raise found
    kind = KINDS[backend(name).kind]

    assert found["after_train"] == [f"model{ext}"], "train creates the archive file only"
    info = found["info"]
    assert info.format == FORMAT_NAMES[ext]
    check_stored_model(info.manifest.model, name)

    before, after = found["before"], found["after"]
    assert same(after, before), f"{name}{ext}: predictions changed after the move"
    predictions = [record["prediction"][kind.target] for record in before]
    check_confidences(name, predictions, found["accuracy"])
    kind.check(kind.test, [prediction["value"] for prediction in predictions])
    assert found["moved"].read_bytes() == found["moved_bytes"], (
        "predicting must not rewrite the archive"
    )
    assert found["elsewhere"] == [found["moved"].name], "predicting creates nothing"


# -- 2. the async high-level API -----------------------------------------------


def make_model(name: str, location: pathlib.Path, **overrides):
    spec = backend(name)
    kind = KINDS[spec.kind]
    options = dict(features=kind.feature_objects(), location=location)
    if kind.predict:
        options["predict"] = kind.predict_object()
    options.update(spec.options)
    options.update(overrides)
    return Model.load(archive_label(name))(**options)


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("name", UPSTREAM)
async def test_api_train_accuracy_predict_then_move(name, ext, tmp_path):
    spec = backend(name)
    kind = KINDS[spec.kind]
    (tmp_path / "first").mkdir()
    location = tmp_path / "first" / f"model{ext}"
    model = make_model(name, location)

    await dffml.train(model, *kind.train)
    assert location.is_file()
    accuracy = await dffml.accuracy(model, *kind.train)
    before = await keyed_predictions(model, kind.test)

    moved = tmp_path / "second" / f"other{ext}"
    moved_bytes = move_the_archive(location, moved)

    loaded = await dffml_archive.load_model(moved)  # no backend, features or options given
    assert type(loaded) is type(model)
    after = await keyed_predictions(loaded, kind.test)

    assert same(after, before), f"{name}{ext}: predictions changed after the move"
    check_confidences(name, [prediction[kind.target] for _key, prediction in before], accuracy)
    kind.check(kind.test, [prediction[kind.target]["value"] for _key, prediction in before])
    assert moved.read_bytes() == moved_bytes, "predicting must not rewrite the archive"

    info = await manifest_model_async(moved)
    assert info.format == FORMAT_NAMES[ext]
    check_stored_model(info.manifest.model, name, spec.options, kind.features)


# -- 3. dataflows: dffml.model.predict with an archive-located model -----------

DATAFLOW_BACKENDS = ["slr", "scikitlr", "scratchlgrsag"]


async def _train_and_move(name, tmp_path) -> tuple:
    """Train + accuracy in one place, move the archive; return the moved path
    and the API's own predictions for the kind's test rows."""
    kind = KINDS[backend(name).kind]
    location = tmp_path / "trained" / "model.tar.gz"
    location.parent.mkdir()
    model = make_model(name, location)
    await dffml.train(model, *kind.train)
    await dffml.accuracy(model, *kind.train)
    expected = await keyed_predictions(model, kind.test)
    moved = tmp_path / "flow" / "model.tar.gz"
    move_the_archive(location, moved)
    return moved, [prediction for _key, prediction in expected]


@pytest.mark.parametrize("name", DATAFLOW_BACKENDS)
async def test_dataflow_model_predict_in_python(name, tmp_path):
    kind = KINDS[backend(name).kind]
    moved, expected = await _train_and_move(name, tmp_path)

    for model in (
        await dffml_archive.load_model(moved),  # everything from the manifest
        Model.load(archive_label(name))(location=moved),  # entry point + location only
    ):
        got = await predict_through_the_dataflow_operation(model, kind.test)
        assert same(got, expected), (got, expected)
    check_confidences(name, [prediction[kind.target] for prediction in expected],
                      expected[0][kind.target]["confidence"])


@pytest.mark.parametrize("name", DATAFLOW_BACKENDS)
async def test_dataflow_model_predict_through_the_cli(name, tmp_path):
    kind = KINDS[backend(name).kind]
    moved, expected = await _train_and_move(name, tmp_path)
    work = moved.parent
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, lambda: create_predict_dataflow_with_the_cli(
        archive_label(name), moved, work / "predict.json", cwd=work))
    archive_bytes = moved.read_bytes()
    # One process per record: two records are enough here.
    for row, want in list(zip(kind.test, expected))[:2]:
        ran = await loop.run_in_executor(None, lambda: run_dataflow_on_one_record_with_the_cli(
            "predict.json", row, cwd=work))
        assert same(ran, [{"model_predictions": want}]), ran
    assert moved.read_bytes() == archive_bytes
