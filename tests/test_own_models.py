"""Our own DFFML models (dffml_archive/models/): ``vwmodel`` and ``spacyner``
as plain plugins under their upstream names, through the real ``dffml``
CLI; their saving rules (only when changed, never after an error, the spaCy
pipeline swapped in whole) and the atomic directory write under them.

The archive side (``vwmodel_archive``, ``spacyner_archive``) is tested in
test_backends_tabular.py and test_backends_deep.py.
"""
import errno
import json
import os
import pathlib
import stat

import pytest

import dffml
from dffml import Feature, Features

from dffml_archive import _atomic
from dffml_archive.models.spacyner import SpacyNERModel
from dffml_archive.models.vwmodel import VWModel

from _e2e_helpers import NER_TRAIN, dffml_cli, parse_records, write_csv

REGRESSION_TRAIN = [{"x": x / 2, "y": x + 1.0} for x in range(20)]
REGRESSION_TEST = [{"x": 1.0}, {"x": 4.5}, {"x": 8.0}]
VW_OPTIONS = ["-model-features", "x:float:1", "-model-predict", "y:float:1",
              "-model-passes", "10", "-model-learning_rate", "10.0"]

NER_ROWS = [{"sentence": text, "entities": json.dumps(spans)} for text, spans in NER_TRAIN]
NER_TEST = ["Albert Einstein went to Japan.", "Nikola Tesla liked India."]


def snapshot(root: pathlib.Path) -> dict:
    """Every file and directory under ``root``: bytes and modification time."""
    return {
        path.relative_to(root).as_posix(): (
            None if path.is_dir() else path.read_bytes(), path.stat().st_mtime_ns
        )
        for path in sorted(root.rglob("*"))
    }


def cli_round_trip(model: str, options: list, train: list, test: list, tmp_path) -> tuple:
    """train, accuracy and predict with ``dffml -model MODEL`` into a plain
    directory; the accuracy and the predictions.  Predicting writes nothing."""
    write_csv(tmp_path / "train.csv", train)
    write_csv(tmp_path / "test.csv", test)
    common = ["-model", model, *options, "-model-directory", "saved"]
    sources = ["-sources", "f=csv", "-source-filename"]
    dffml_cli("train", *common, *sources, "train.csv", cwd=tmp_path)
    accuracy = float(dffml_cli("accuracy", *common, *sources, "train.csv", cwd=tmp_path).stdout)
    before = snapshot(tmp_path / "saved")
    predicted = parse_records(
        dffml_cli("predict", "all", *common, *sources, "test.csv", cwd=tmp_path).stdout
    )
    assert snapshot(tmp_path / "saved") == before, "predicting must write nothing"
    return accuracy, predicted


# -- the plain plugins, through the real dffml CLI --------------------------------


def test_vwmodel_trains_assesses_and_predicts_under_its_upstream_name(tmp_path):
    accuracy, predicted = cli_round_trip("vwmodel", VW_OPTIONS, REGRESSION_TRAIN,
                                         REGRESSION_TEST, tmp_path)
    assert sorted(os.listdir(tmp_path / "saved")) == ["vw.json", "vw.model"]
    assert accuracy > 0.9
    for row, record in zip(REGRESSION_TEST, predicted):
        prediction = record["prediction"]["y"]
        assert abs(prediction["value"] - (2 * row["x"] + 1)) < 1.5, record
        assert prediction["confidence"] == accuracy


def test_spacyner_trains_assesses_and_predicts_under_its_upstream_name(tmp_path):
    accuracy, predicted = cli_round_trip(
        "spacyner", ["-model-model_name_or_path", "en", "-model-n_iter", "20"],
        NER_ROWS, [{"sentence": text} for text in NER_TEST], tmp_path,
    )
    assert sorted(os.listdir(tmp_path / "saved")) == ["pipeline", "spacyner.json"]
    assert 0.0 < accuracy <= 1.0
    labels = set()
    for record in predicted:
        prediction = record["prediction"]["Tag"]
        assert prediction["confidence"] == accuracy
        sentence = record["features"]["sentence"]
        for text, label, start, end in prediction["value"]:
            assert sentence[start:end] == text
            labels.add(label)
    assert labels and labels <= {"LOC", "PERSON"}, predicted


# -- saving: only when changed, never after an error --------------------------------


def vw_model(directory):
    return VWModel(features=Features(Feature("x", float, 1)), predict=Feature("y", float, 1),
                   directory=directory, passes=10, learning_rate=10.0)


def spacy_model(directory):
    return SpacyNERModel(directory=directory, n_iter=5)


SAVING = {
    "vwmodel": (vw_model, REGRESSION_TRAIN, [{"x": x, "y": -x} for x in range(10)]),
    "spacyner": (spacy_model, NER_ROWS, NER_ROWS[:2]),
}


@pytest.mark.parametrize("name", list(SAVING))
async def test_an_error_inside_the_model_leaves_the_saved_model(name, tmp_path):
    make, first, second = SAVING[name]
    await dffml.train(make(tmp_path / "saved"), *first)
    before = snapshot(tmp_path / "saved")

    model = make(tmp_path / "saved")
    with pytest.raises(RuntimeError, match="after training"):
        async with model:
            await dffml.train(model, *second)  # trains anew, in this context
            raise RuntimeError("after training")
    assert snapshot(tmp_path / "saved") == before, "saved after an error"


@pytest.mark.parametrize("name", list(SAVING))
async def test_training_again_saves_and_predicting_does_not(name, tmp_path):
    make, first, second = SAVING[name]
    await dffml.train(make(tmp_path / "saved"), *first)
    trained = snapshot(tmp_path / "saved")
    rows = [{key: value for key, value in row.items() if key in ("x", "sentence")}
            for row in second]
    assert [p async for p in dffml.predict(make(tmp_path / "saved"), *rows)]
    assert snapshot(tmp_path / "saved") == trained
    await dffml.train(make(tmp_path / "saved"), *second)
    assert snapshot(tmp_path / "saved") != trained


async def test_a_failure_writing_the_pipeline_leaves_the_previous_one(tmp_path, monkeypatch):
    import spacy

    directory = tmp_path / "saved"
    await dffml.train(spacy_model(directory), *NER_ROWS)
    before = snapshot(directory)
    predicted = [p async for p in dffml.predict(spacy_model(directory), *NER_ROWS)]

    to_disk = spacy.Language.to_disk

    def full_disk(nlp, path, **options):
        to_disk(nlp, path, **options)  # a whole tree written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(spacy.Language, "to_disk", full_disk)
    with pytest.raises(OSError, match="No space left"):
        await dffml.train(spacy_model(directory), *NER_ROWS[:3])
    monkeypatch.undo()
    assert snapshot(directory) == before, "the previous pipeline must stay, and nothing else"
    assert [p async for p in dffml.predict(spacy_model(directory), *NER_ROWS)] == predicted


# -- atomic_replace_directory ---------------------------------------------------------


def _old_tree(target: pathlib.Path) -> None:
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "old.txt").write_text("old\n")


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_directory_is_replaced_whole(exchange, tmp_path, monkeypatch):
    if not exchange:  # a system or file system without renameat2
        monkeypatch.setattr(_atomic, "exchange_paths", lambda first, second: False)
    target = tmp_path / "pipeline"
    _old_tree(target)
    with _atomic.atomic_replace_directory(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".pipeline.")
        (temporary / "new.txt").write_text("new\n")
    assert sorted(os.listdir(tmp_path)) == ["pipeline"]
    assert sorted(os.listdir(target)) == ["new.txt"]
    umask = _atomic.current_umask()
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask


def test_a_failed_directory_write_leaves_the_old_tree(tmp_path):
    target = tmp_path / "pipeline"
    _old_tree(target)
    with pytest.raises(OSError):
        with _atomic.atomic_replace_directory(target) as temporary:
            (temporary / "half.txt").write_text("half\n")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["pipeline"]
    assert (target / "sub" / "old.txt").read_text() == "old\n"


def test_a_directory_write_makes_a_missing_target_and_clears_killed_writers(tmp_path):
    abandoned = tmp_path / ".pipeline.abcd1234.partial"  # a killed writer's tree
    abandoned.mkdir()
    (abandoned / "half.txt").write_text("half\n")
    with _atomic.atomic_replace_directory(tmp_path / "pipeline", grace_seconds=0) as temporary:
        (temporary / "new.txt").write_text("new\n")
    assert sorted(os.listdir(tmp_path)) == ["pipeline"]
    assert sorted(os.listdir(tmp_path / "pipeline")) == ["new.txt"]
