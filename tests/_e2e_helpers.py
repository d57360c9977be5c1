"""What the end-to-end tests share: those of the model backends
(test_models_e2e.py, test_backends_tabular.py, test_backends_deep.py) and the
command-line tests of test_cli.py and test_model_layer.py.

A plain module, not part of a package (see pytest.ini: the name ``tests`` is
dffml's); conftest.py puts this folder on ``sys.path`` so that those files
can ``import _e2e_helpers``.
"""
import asyncio
import csv
import dataclasses
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
from typing import Callable, Dict, List, Optional

import pkg_resources
import pytest

import dffml
from dffml import Feature, Features

import dffml_archive
from dffml_archive.model import archive_label

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "docs" / "models" / "examples"
#: Not resolved: a virtual environment's python is a symlink to the base one.
BIN = pathlib.Path(sys.executable).parent
#: The ``dffml`` console script of the environment running the tests.
DFFML = str(BIN / "dffml")
CLI_TIMEOUT = 300



def without_root_override() -> list:
    """A command prefix under which file permissions apply, also for root
    (the tests run as root on the project's machines)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root without setpriv (util-linux): cannot test permissions")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]


# -- tabular data sets ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Kind:
    """A small data set of one kind and what a sane model predicts on it."""

    name: str
    features: List[str]  # "name:dtype:length", as on the command line
    predict: Optional[str]  # None: the model's own default (clusterers)
    train: List[dict]
    test: List[dict]
    #: check(test rows, predicted values) -> None, raising AssertionError
    check: Callable

    def feature_objects(self) -> Features:
        return Features(*[Feature(spec) for spec in self.features])

    def predict_object(self) -> Optional[Feature]:
        return Feature(self.predict) if self.predict else None

    @property
    def target(self) -> str:
        return self.predict.split(":")[0] if self.predict else "cluster"


def _check_regression(rows, values):
    # y = 2x + 1 (+-0.25 noise) for x in 0..19; trees (and VW) cannot
    # extrapolate, so only points inside the training range are judged.
    for row, value in zip(rows, values):
        if 0 <= row["x"] <= 19:
            assert abs(value - (2 * row["x"] + 1)) <= 3.0, (row, value)


def _check_labels(expected):
    def check(rows, values):
        assert list(values) == expected, (rows, values)

    return check


def _check_two_blobs(rows, values):
    # The test rows are the training rows: 8 around (1, 1) then 8 around (5, 1).
    first, second = values[:8], values[8:]
    assert len(set(first)) == 1 and len(set(second)) == 1, values
    assert first[0] != second[0], values


_OFFSETS = [(0.0, 0.0), (0.3, 0.1), (-0.2, 0.3), (0.1, -0.3),
            (-0.3, -0.2), (0.2, 0.35), (0.4, -0.1), (-0.1, 0.2)]
_CENTRES = [(1.0, 1.0), (5.0, 1.0), (3.0, 5.0)]
_BLOBS = [
    {"a": round(cx + dx, 2), "b": round(cy + dy, 2), "label": label}
    for label, (cx, cy) in enumerate(_CENTRES)
    for dx, dy in _OFFSETS
]
# Mostly small values with a few outliers, the outliers spread so that the
# anomaly detector's validation split (the last 20 %) holds one.
_ANOMALY_VALUES = [0.65, 0.24, 0.93, 0.87, 0.23, 7.0, 0.86, 0.45, 0.55, 0.29, 5.0,
                   0.51, 0.88, 0.24, 0.51, 0.17, 9.0, 0.37, 0.23, 0.44, 0.62, 3.0, 0.87]

TABULAR_KINDS: Dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "regression",
            ["x:float:1"],
            "y:float:1",
            [{"x": float(x), "y": 2.0 * x + 1 + (0.25 if x % 2 else -0.25)} for x in range(20)],
            [{"x": 2.5}, {"x": 13.0}, {"x": 30.0}],
            _check_regression,
        ),
        Kind(
            "binary",
            ["A:float:1"],
            "Y:int:1",
            [{"A": value, "Y": int(value > 2)} for value in _ANOMALY_VALUES],
            [{"A": 0.45}, {"A": 8.0}, {"A": 0.6}, {"A": 4.0}],
            _check_labels([0, 1, 0, 1]),
        ),
        Kind(
            "multiclass",
            ["a:float:1", "b:float:1"],
            "label:int:1",
            _BLOBS,
            [{"a": 1.1, "b": 0.9}, {"a": 5.2, "b": 1.1}, {"a": 2.9, "b": 4.8}],
            _check_labels([0, 1, 2]),
        ),
        Kind(
            "clustering",
            ["a:float:1", "b:float:1"],
            None,
            [{"a": row["a"], "b": row["b"]} for row in _BLOBS if row["label"] < 2],
            # Transductive clusterers (scikitac, scikitsc, scikitoptics) can
            # only label their training data: predict on exactly that.
            [{"a": row["a"], "b": row["b"]} for row in _BLOBS if row["label"] < 2],
            _check_two_blobs,
        ),
    )
}


def write_csv(path: pathlib.Path, rows: List[dict]) -> pathlib.Path:
    fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


def tree(root: pathlib.Path) -> List[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


def move_the_archive(archive: pathlib.Path, moved: pathlib.Path) -> bytes:
    """Move ``archive`` to ``moved`` (a new folder); return its bytes, to
    check later that predicting from it did not rewrite it."""
    moved.parent.mkdir(parents=True)
    shutil.move(str(archive), str(moved))
    return moved.read_bytes()


# -- entry points ----------------------------------------------------------------


def model_entry_points(distribution: str = "dffml-archive") -> dict:
    """The ``dffml.model`` entry points of a distribution: name -> EntryPoint."""
    return pkg_resources.get_distribution(distribution).get_entry_map("dffml.model")


def our_models_in(modules) -> Dict[str, str]:
    """Our model label -> its module, for our models that live in ``modules``."""
    return {
        label: entry.module_name
        for label, entry in model_entry_points().items()
        if entry.module_name in modules
    }


#: Sentences with entity spans (start, end, label) for the spaCy tests.
NER_TRAIN = [
    ("I went to Switzerland.", [(10, 21, "LOC")]),
    ("I like India and Japan.", [(7, 12, "LOC"), (17, 22, "LOC")]),
    ("Who is Albert Einstein?", [(7, 22, "PERSON")]),
    ("World needs Nikola Tesla.", [(12, 24, "PERSON")]),
    ("Marie Curie lived in France.", [(0, 11, "PERSON"), (21, 27, "LOC")]),
    ("We flew to Canada with Ada Lovelace.", [(11, 17, "LOC"), (23, 35, "PERSON")]),
]


# -- the real dffml CLI ----------------------------------------------------------


def dffml_cli(*args, cwd, env=None, timeout=CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """Run the real ``dffml`` console script in a new process; fail the test
    with its output if it fails."""
    result = subprocess.run(
        [DFFML, *map(str, args)], cwd=str(cwd), env=env, capture_output=True, text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(
            f"dffml {' '.join(map(str, args))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def parse_records(stdout: str) -> list:
    """``dffml predict all`` output without ``last_updated`` (Python's json
    reads the bare NaN that dffml prints)."""
    records = json.loads(stdout)
    assert isinstance(records, list) and records, stdout
    for record in records:
        record.pop("last_updated", None)
    return records


def comparable(value):
    """JSON-like value where NaN == NaN and numpy numbers are plain ones."""
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    return value


def same(left, right) -> bool:
    return comparable(left) == comparable(right)


def check_stored_model(stored: dict, name: str, options=None, features=None) -> None:
    """The manifest's model section names ``NAME_archive`` and its upstream
    ``name``, and holds ``options`` and ``features`` ("name:dtype:length")."""
    assert stored["entrypoint"] == archive_label(name)
    assert stored["upstream"] == name
    for option, value in (options or {}).items():
        assert stored["config"][option] == value, option
    if features is not None:
        # Stored as a list, in the order given (the backend's column order).
        assert [feature["name"] for feature in stored["config"]["features"]] == [
            spec.split(":")[0] for spec in features
        ]


# -- predicting in Python and in dataflows ----------------------------------------


async def keyed_predictions(model, rows) -> list:
    """(key, prediction) for every row, from ``dffml.predict``."""
    return [(key, prediction) async for key, _features, prediction in dffml.predict(model, *rows)]


async def predictions_of(model, rows) -> list:
    return [prediction for _key, prediction in await keyed_predictions(model, rows)]


async def predict_through_the_dataflow_operation(model, rows) -> list:
    """Predictions of DFFML's own ``dffml.model.predict`` operation, one
    context per row."""
    from dffml import DataFlow, GetSingle, Input, ModelPredictConfig, model_predict

    dataflow = DataFlow(
        operations={"predict": model_predict, "get_single": GetSingle},
        configs={"predict": ModelPredictConfig(model=model)},
    )
    dataflow.seed.append(
        Input(value=[model_predict.op.outputs["prediction"].name],
              definition=GetSingle.op.inputs["spec"])
    )
    inputs = {
        str(index): [Input(value=row, definition=model_predict.op.inputs["features"])]
        for index, row in enumerate(rows)
    }
    results = {}
    async for ctx, result in dffml.run(dataflow, inputs):
        results[(await ctx.handle()).as_string()] = result["model_predictions"]
    return [results[str(index)] for index in range(len(rows))]


def create_predict_dataflow_with_the_cli(label, archive, dataflow_file, cwd, **cli) -> None:
    """``dffml dataflow create`` around ``dffml.model.predict`` whose model is
    ``label`` at ``archive``, written to ``dataflow_file``."""
    created = dffml_cli(
        "dataflow", "create", "predict=dffml.model.predict", "get_single",
        "-inputs", '["model_predictions"]=get_single_spec',
        "-config", f"{label}=predict.model.plugin", f"{archive}=predict.model.config.location",
        cwd=cwd, **cli,
    )
    flow = json.loads(created.stdout)
    assert flow["configs"]["predict"]["model"] == {
        "plugin": label, "config": {"location": str(archive)}
    }
    pathlib.Path(dataflow_file).write_text(created.stdout)


def run_dataflow_on_one_record_with_the_cli(dataflow_file, row, cwd, **cli):
    """``dffml dataflow run single`` on ``row``: its JSON output."""
    ran = dffml_cli(
        "dataflow", "run", "single", "-dataflow", dataflow_file,
        "-inputs", f"{json.dumps(row)}=record_features", cwd=cwd, **cli,
    )
    return json.loads(ran.stdout)


# -- the documentation's examples ------------------------------------------------


def without_timestamps(text: str) -> str:
    return re.sub(r'"last_updated": "[^"]*"', '"last_updated": "<time>"', text)


def examples_included_by_page(page: str) -> set:
    """What docs/models/PAGE.rst shows with ``literalinclude`` from examples/."""
    text = (REPO / "docs" / "models" / f"{page}.rst").read_text()
    return set(re.findall(r"^\.\. literalinclude::\s*examples/(\S+)\s*$", text, re.M))


def check_example_prints_its_output_and_leaves_its_archives(
    name: str, cwd: pathlib.Path, archives: Dict[str, str], normalized: Callable, timeout: int
) -> None:
    """Run an example as a user would (the environment's ``bin`` first on
    PATH) in ``cwd``: it prints its ``.out`` file (both ``normalized``) and
    leaves ``archives`` (relative path -> entry point)."""
    script = EXAMPLES / name
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    command = (["bash", "-euo", "pipefail", str(script)] if script.suffix == ".sh"
               else [sys.executable, str(script)])
    result = subprocess.run(command, cwd=str(cwd), env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (
        f"{name} exited {result.returncode}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-6000:]}"
    )
    assert normalized(result.stdout) == normalized(script.with_suffix(".out").read_text())
    for relative, entrypoint in archives.items():
        info = asyncio.run(dffml_archive.inspect(cwd / relative))
        assert info.manifest.model["entrypoint"] == entrypoint


TEXT_POSITIVE = ["good great fine", "great movie", "really good", "fine and good",
                 "wonderful great", "good good"]
TEXT_NEGATIVE = ["bad awful", "terrible bad", "awful movie", "really bad",
                 "bad and terrible", "awful awful"]
TEXT_TEST = ["good movie", "terrible awful", "great and wonderful"]


def write_embedding(path: pathlib.Path) -> pathlib.Path:
    """A tiny text embedding SavedModel (hashed words -> 8 numbers), the kind
    of model ``-model-model_path`` names."""
    import tensorflow as tf

    class Embedding(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(tf.random.stateless_normal([64, 8], seed=[1, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, text):
            words = tf.strings.split(tf.strings.lower(text))
            return tf.reduce_mean(tf.gather(self.table, tf.strings.to_hash_bucket_fast(words, 64)), axis=1)

    tf.saved_model.save(Embedding(), str(path))
    return path
