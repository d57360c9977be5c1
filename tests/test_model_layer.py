"""The model layer's contract: errors that say what is wrong and change
nothing, retraining, failures that keep the previous archive, the scikit
confidence trap, nested contexts and what the manifest records.

"Changes nothing" is checked on the file system: a snapshot (every path with
its bytes) of the working directory before and after.
"""
import asyncio
import dataclasses
import importlib
import io
import json
import math
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pkg_resources
import pytest

import dffml
from dffml import Feature, Features, MemorySource, MemorySourceConfig, Model, Record, Sources
from dffml.model.model import ModelNotTrained

import dffml_archive
from dffml_archive import CorruptArchiveError, UnsupportedArchiveError
from dffml_archive.errors import ArchiveError
from dffml_archive.model import (
    ArchiveModel,
    ConfigMismatchError,
    WrongBackendError,
    load_model,
)

from _e2e_helpers import without_root_override

DFFML = str(pathlib.Path(sys.executable).with_name("dffml"))
FORMATS = (".zip", ".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst")

LINE = [{"x": float(x), "y": 2.0 * x + 1.0} for x in range(10)]
STEEP = [{"x": float(x), "y": 10.0 * x} for x in range(10)]
QUERY = [{"x": 2.5}, {"x": 20.0}]


def slr(location, **options):
    options.setdefault("features", Features(Feature("x", float, 1)))
    options.setdefault("predict", Feature("y", float, 1))
    return Model.load("slr_archive")(location=location, **options)


def scikitlr(location, **options):
    options.setdefault("features", Features(Feature("x", float, 1)))
    options.setdefault("predict", Feature("y", float, 1))
    return Model.load("scikitlr_archive")(location=location, **options)


BUILDERS = {"slr": slr, "scikitlr": scikitlr}


async def predictions(model, rows=QUERY):
    return [p async for _key, _features, p in dffml.predict(model, *rows)]


def values(preds, target="y"):
    return [p[target]["value"] for p in preds]


def confidences(preds, target="y"):
    return [p[target]["confidence"] for p in preds]


def snapshot(root: pathlib.Path) -> dict:
    """Every path below root -> bytes (files) or None (directories)."""
    return {
        path.relative_to(root).as_posix(): (None if path.is_dir() else path.read_bytes())
        for path in sorted(root.rglob("*"))
    }


def stat_identity(path: pathlib.Path):
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def nan_safe(value):
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, dict):
        return {key: nan_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_safe(item) for item in value]
    return value


@pytest.fixture
def work(tmp_path) -> pathlib.Path:
    """A directory holding only what a test puts there (the cache is elsewhere)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
async def trained_slr(work) -> pathlib.Path:
    location = work / "slr.tar.gz"
    await dffml.train(slr(location), *LINE)
    return location


def run_dffml(*args, cwd, env=None, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, DFFML, *map(str, args)],
        cwd=str(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=300,
        env=None if env is None else dict(os.environ, **env),
    )


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """Our error as the dffml CLI prints it: status 1, no traceback, the
    message as the last line (backends may log before it)."""
    assert result.returncode == 1, f"rc={result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    line = last_line(result.stderr)
    assert line.startswith("error: "), line
    return line


# -- public API ----------------------------------------------------------------


def test_load_model_is_exported_by_the_package():
    # The documented spelling is ``await dffml_archive.load_model(path)``.
    assert getattr(dffml_archive, "load_model", None) is load_model


# -- unsupported extensions ------------------------------------------------------


@pytest.mark.parametrize("name", ["m.rar", "m.7z", "m.gz", "m.tar.lz4"])
@pytest.mark.parametrize("action", ["train", "predict"])
async def test_unsupported_extension_is_refused_and_creates_nothing(work, name, action):
    location = work / name
    before = snapshot(work)
    model = slr(location)
    with pytest.raises(UnsupportedArchiveError) as caught:
        if action == "train":
            await dffml.train(model, *LINE)
        else:
            await predictions(model)
    message = str(caught.value)
    assert str(location) in message
    assert "unsupported archive extension" in message
    assert ".tar.gz" in message and ".zip" in message  # says what to use instead
    assert snapshot(work) == before
    assert not location.exists(), "must not become a directory (or file) of that name"


def test_unsupported_extension_through_the_cli(work):
    (work / "train.csv").write_text("x,y\n" + "".join(f"{x},{2 * x + 1}\n" for x in range(10)))
    before = snapshot(work)
    result = run_dffml(
        "train", "-model", "slr_archive", "-model-features", "x:float:1",
        "-model-predict", "y:float:1", "-model-location", "m.rar",
        "-sources", "f=csv", "-source-filename", "train.csv", cwd=work,
    )
    assert "m.rar: unsupported archive extension" in one_line_error(result)
    assert snapshot(work) == before


# -- nothing trained yet -----------------------------------------------------------


@pytest.mark.parametrize("backend", sorted(BUILDERS))
@pytest.mark.parametrize("action", ["predict", "accuracy"])
async def test_missing_archive_says_train_first_and_creates_nothing(work, backend, action):
    location = work / "missing" / "model.tar.gz"
    (work / "missing").mkdir()
    before = snapshot(work)
    model = BUILDERS[backend](location)
    with pytest.raises(ModelNotTrained) as caught:
        if action == "predict":
            await predictions(model)
        else:
            await dffml.accuracy(model, *LINE)
    message = str(caught.value)
    assert "train first" in message and str(location) in message
    assert snapshot(work) == before


async def test_missing_archive_without_options_says_train_first(work):
    # The usual call on an archive gives the location only (the options live
    # in the archive).  A typo in the path must say that nothing is trained
    # there, not that -model-features/-model-predict are missing.
    location = work / "typo.tar.gz"
    model = Model.load("slr_archive")(location=location)
    with pytest.raises(ModelNotTrained) as caught:
        await predictions(model)
    assert "train first" in str(caught.value) and str(location) in str(caught.value)
    assert snapshot(work) == {}


def test_missing_archive_through_the_cli(work):
    (work / "predict.csv").write_text("x\n2.5\n")
    before = snapshot(work)
    result = run_dffml(
        "predict", "all", "-model", "slr_archive", "-model-features", "x:float:1",
        "-model-predict", "y:float:1", "-model-location", "none.tar.gz",
        "-sources", "f=csv", "-source-filename", "predict.csv", cwd=work,
    )
    line = one_line_error(result)
    assert "none.tar.gz" in line and "train first" in line
    assert snapshot(work) == before


def test_the_cli_shows_the_traceback_on_request(work):
    (work / "predict.csv").write_text("x\n2.5\n")
    command = ("predict", "all", "-model", "slr_archive", "-model-location", "none.tar.gz",
               "-sources", "f=csv", "-source-filename", "predict.csv")
    for result in (run_dffml(*command, cwd=work, env={"DFFML_ARCHIVE_TRACEBACK": "1"}),
                   run_dffml(*command, "-log", "debug", cwd=work)):
        assert result.returncode == 1
        assert "Traceback (most recent call last)" in result.stderr
        assert "ModelArchiveNotFound: none.tar.gz" in result.stderr


def test_training_refuses_a_location_it_could_not_save_to(work):
    (work / "train.csv").write_text("x,y\n" + "".join(f"{x},{2 * x + 1}\n" for x in range(10)))
    (work / "plain").write_text("a file, not a directory\n")
    read_only = work / "ro"
    read_only.mkdir()
    before = snapshot(work)
    read_only.chmod(0o555)
    train = ("train", "-model", "slr_archive", "-model-features", "x:float:1",
             "-model-predict", "y:float:1", "-sources", "f=csv", "-source-filename", "train.csv")
    try:
        in_a_file = run_dffml(*train, "-model-location", "plain/m.tar.gz", cwd=work)
        read_only_result = run_dffml(*train, "-model-location", "ro/m.tar.gz", cwd=work,
                                     prefix=without_root_override())
    finally:
        read_only.chmod(0o755)
    assert "is a file, not a directory" in one_line_error(in_a_file)
    line = one_line_error(read_only_result)
    assert "ro/m.tar.gz: the trained model could not be saved here" in line
    assert "is not writable" in line
    assert snapshot(work) == before


def test_training_refuses_to_replace_a_read_only_archive(work, trained_slr):
    (work / "train.csv").write_text("x,y\n" + "".join(f"{x},{3 * x}\n" for x in range(10)))
    trained_slr.chmod(0o444)
    before = snapshot(work)
    result = run_dffml(
        "train", "-model", "slr_archive", "-model-features", "x:float:1",
        "-model-predict", "y:float:1", "-model-retrain", "-model-location", trained_slr.name,
        "-sources", "f=csv", "-source-filename", "train.csv", cwd=work,
        prefix=without_root_override(),
    )
    assert "the archive is read-only (chmod u+w" in one_line_error(result)
    assert snapshot(work) == before


async def test_load_model_of_a_directory_says_it_wants_an_archive(work):
    with pytest.raises(ArchiveError, match="is a directory: load_model"):
        await load_model(work)


async def test_load_model_of_a_missing_archive(work):
    with pytest.raises(ArchiveError) as caught:
        await load_model(work / "none.zip")
    assert "no such archive" in str(caught.value)
    assert snapshot(work) == {}


# -- damaged archives --------------------------------------------------------------


@pytest.mark.parametrize("ext", FORMATS)
async def test_truncated_archive_is_corrupt_and_left_alone(work, ext):
    location = work / f"model{ext}"
    await dffml.train(slr(location), *LINE)
    # Cut into the content: a plain tar ends in zero padding (a tar missing
    # only its end-of-archive blocks still holds every member intact).
    content = location.read_bytes().rstrip(b"\0")
    location.write_bytes(content[: len(content) // 2])
    before = snapshot(work)
    with pytest.raises(CorruptArchiveError) as caught:
        await predictions(Model.load("slr_archive")(location=location))
    assert str(location) in str(caught.value)
    with pytest.raises(CorruptArchiveError):
        await dffml.train(slr(location), *LINE)  # training over it does not overwrite it
    assert snapshot(work) == before


async def test_tar_cut_after_a_member_is_missing_members(work):
    location = work / "model.tar"
    await dffml.train(slr(location), *LINE)
    with tarfile.open(location) as archive:
        model_member = archive.getmember("Model")
    location.write_bytes(location.read_bytes()[: model_member.offset])
    before = snapshot(work)
    with pytest.raises(CorruptArchiveError) as caught:
        await predictions(await load_model(location))
    assert "'Model'" in str(caught.value) and "missing" in str(caught.value)
    assert snapshot(work) == before


def _rewrite_member(archive: pathlib.Path, member: str, transform) -> None:
    """Rewrite ``archive`` with ``member``'s content transformed and every
    other member, the manifest included, copied unchanged in order."""
    name = archive.name
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as source:
            items = [(info, source.read(info)) for info in source.infolist()]
        with zipfile.ZipFile(archive, "w") as target:
            for info, content in items:
                target.writestr(info, transform(content) if info.filename == member else content)
        return
    mode = {".tar": "", ".tar.gz": "gz", ".tar.bz2": "bz2", ".tar.xz": "xz"}[
        name[name.index(".tar"):]
    ]
    with tarfile.open(archive, "r:" + mode if mode else "r:") as source:
        items = [(info, source.extractfile(info).read() if info.isfile() else None)
                 for info in source.getmembers()]
    with tarfile.open(archive, "w:" + mode if mode else "w") as target:
        for info, content in items:
            if info.name == member:
                content = transform(content)
                info.size = len(content)
            target.addfile(info, io.BytesIO(content) if content is not None else None)


@pytest.mark.parametrize("ext", [".tar", ".tar.gz", ".zip"])
@pytest.mark.parametrize("same_size", [True, False])
async def test_tampered_member_is_refused(work, ext, same_size):
    location = work / f"model{ext}"
    await dffml.train(slr(location), *LINE)
    state = json.loads(await _member(location, "Model"))
    assert state["regression_line"][0] == 2.0

    def tamper(content):
        text = content.decode()
        return (text.replace("2.0", "3.0", 1) if same_size else text.replace("2.0", "30.0", 1)).encode()

    _rewrite_member(location, "Model", tamper)
    before = snapshot(work)
    with pytest.raises(CorruptArchiveError) as caught:
        await predictions(await load_model(location))
    message = str(caught.value)
    assert "'Model'" in message and "tampered" in message
    assert snapshot(work) == before


async def _member(archive: pathlib.Path, name: str) -> bytes:
    out = archive.parent.parent / "peek"
    await dffml_archive.extract(archive, out, replace=True)
    try:
        return (out / name).read_bytes()
    finally:
        shutil.rmtree(out)


# -- wrong backend, different options ------------------------------------------------


async def test_wrong_backend_names_both(work, trained_slr):
    before = snapshot(work)
    with pytest.raises(WrongBackendError) as caught:
        await predictions(scikitlr(trained_slr))
    message = str(caught.value)
    for word in ("'slr'", "slr_archive", "'scikitlr'", "scikitlr_archive", str(trained_slr)):
        assert word in message, word
    # With no options at all (the usual call on an archive) as well.
    with pytest.raises(WrongBackendError):
        await predictions(Model.load("scratchlgrsag_archive")(location=trained_slr))
    assert snapshot(work) == before


def test_wrong_backend_through_the_cli(work, trained_slr):
    (work / "predict.csv").write_text("x\n2.5\n")
    before = snapshot(work)
    result = run_dffml(
        "predict", "all", "-model", "scratchlgrsag_archive", "-model-location", trained_slr,
        "-sources", "f=csv", "-source-filename", "predict.csv", cwd=work,
    )
    line = one_line_error(result)
    assert "'slr'" in line and "'scratchlgrsag'" in line
    assert snapshot(work) == before


async def test_config_mismatch_lists_every_differing_option(work):
    location = work / "lr.zip"
    await dffml.train(scikitlr(location), *LINE)
    before = snapshot(work)
    model = scikitlr(
        location,
        features=Features(Feature("z", float, 1)),
        positive=True,
        fit_intercept=False,
        copy_X=True,  # equal to the stored value: not a difference
    )
    with pytest.raises(ConfigMismatchError) as caught:
        await predictions(model)
    message = str(caught.value)
    for option in ("features", "positive", "fit_intercept"):
        assert f"{option}: archive has" in message, option
    assert "copy_X" not in message
    assert '"z"' in message and "retrain" in message
    assert snapshot(work) == before
    # Same options as stored: fine.
    assert values(await predictions(scikitlr(location, fit_intercept=True))) == pytest.approx(
        [6.0, 41.0]
    )


async def test_features_given_in_another_order_are_not_silently_swapped(work):
    # scikit feeds the features to the estimator as columns in the order of
    # -model-features.  The same features given in another order are either
    # refused or used in the trained order: never swapped silently.
    rows = [{"a": float(i % 4), "b": float(i // 4), "y": 3.0 * (i % 4) + 10.0 * (i // 4)}
            for i in range(12)]
    location = work / "ab.tar"
    ab = Features(Feature("a", float, 1), Feature("b", float, 1))
    await dffml.train(scikitlr(location, features=ab), *rows)
    query = [{"a": 2.0, "b": 1.0}]
    stored_order = values(await predictions(await load_model(location), query))
    assert stored_order == pytest.approx([16.0])
    ba = Features(Feature("b", float, 1), Feature("a", float, 1))
    try:
        given_order = values(await predictions(scikitlr(location, features=ba), query))
    except ConfigMismatchError as error:
        assert "features" in str(error)
    else:
        assert given_order == pytest.approx(stored_order)


async def test_load_model_options_must_match_unless_retraining(work, trained_slr):
    model = await load_model(trained_slr, predict=Feature("y", int, 1))
    with pytest.raises(ConfigMismatchError) as caught:
        await predictions(model)
    assert "predict: archive has" in str(caught.value)


# -- retraining ------------------------------------------------------------------------


async def test_retrain_replaces_the_model_and_its_config(work, trained_slr):
    # Without retrain, other options are refused ...
    steep = slr(trained_slr, predict=Feature("y", int, 1))
    with pytest.raises(ConfigMismatchError):
        await dffml.train(steep, *STEEP)
    # ... with retrain they train anew and replace model and configuration.
    steep = slr(trained_slr, predict=Feature("y", int, 1), retrain=True)
    await dffml.train(steep, *STEEP)
    info = await dffml_archive.inspect(trained_slr)
    assert info.manifest.model["config"]["predict"]["dtype"] == "int"
    reloaded = await load_model(trained_slr)
    assert values(await predictions(reloaded)) == [25, 200]


def test_retrain_through_the_cli(work, trained_slr):
    (work / "steep.csv").write_text("x,y\n" + "".join(f"{x},{10 * x}\n" for x in range(10)))
    common = ["-model", "slr_archive", "-model-features", "x:float:1",
              "-model-predict", "y:float:1", "-model-location", trained_slr,
              "-sources", "f=csv", "-source-filename", "steep.csv"]
    old = trained_slr.read_bytes()
    result = run_dffml("train", *common, "-model-retrain", cwd=work)
    assert result.returncode == 0, result.stderr
    assert trained_slr.read_bytes() != old
    reloaded = asyncio.run(load_model(trained_slr))
    assert values(asyncio.run(_collect(reloaded))) == pytest.approx([25.0, 200.0])


async def test_retrain_drops_the_old_state(work):
    # A scikit archive keeps the confidence measured by accuracy.  Retraining
    # with the same options replaces the model: the old model's confidence
    # must not be presented as the new one's (it was never assessed).
    location = work / "lr.tar.gz"
    model = scikitlr(location)
    await dffml.train(model, *LINE)
    assert await dffml.accuracy(model, *LINE) == pytest.approx(1.0)
    assert confidences(await predictions(scikitlr(location))) == [1.0, 1.0]
    await dffml.train(scikitlr(location, retrain=True), *STEEP)
    after = await predictions(await load_model(location))
    assert values(after) == pytest.approx([25.0, 200.0])
    assert all(math.isnan(c) for c in confidences(after)), after


async def _collect(model):
    return await predictions(model)


async def test_training_again_without_retrain_updates_the_same_model(work, trained_slr):
    # Not retrain: the stored options are used and the model is trained again
    # (for slr: refit on the new data) in place.
    await dffml.train(Model.load("slr_archive")(location=trained_slr), *STEEP)
    assert values(await predictions(await load_model(trained_slr))) == pytest.approx([25.0, 200.0])


# -- failures keep the previous archive -------------------------------------------------


@pytest.mark.parametrize("backend", sorted(BUILDERS))
@pytest.mark.parametrize("ext", [".tar.gz", ".zip"])
async def test_failed_training_keeps_the_previous_archive(work, backend, ext):
    location = work / f"model{ext}"
    build = BUILDERS[backend]
    await dffml.train(build(location), *LINE)
    before = snapshot(work)
    identity = stat_identity(location)
    broken = LINE + [{"x": "not a number", "y": 3.0}]
    with pytest.raises(Exception) as caught:
        await dffml.train(build(location), *broken)
    assert not isinstance(caught.value, ArchiveError), caught.value  # the backend's own error
    assert snapshot(work) == before, "the archive must be byte-identical"
    assert stat_identity(location) == identity, "not even rewritten with the same bytes"
    assert values(await predictions(await load_model(location))) == pytest.approx([6.0, 41.0])


async def test_failed_first_training_creates_nothing(work):
    with pytest.raises(Exception):
        await dffml.train(slr(work / "model.tar.xz"), {"x": "nope", "y": 1.0}, {"x": 1.0, "y": 2.0})
    assert snapshot(work) == {}


async def test_unused_new_location_is_not_created(work):
    model = slr(work / "model.tar")
    async with model:
        async with model():
            pass
    assert snapshot(work) == {}


# -- scikit: confidence ---------------------------------------------------------------------


async def test_scikit_predict_after_train_only_has_nan_confidence(work):
    """Upstream stores a scikit model's confidence only when accuracy runs, so
    after ``train`` alone predictions carry NaN confidence: expected, not ours
    to invent.  It must still survive a move unchanged (NaN == NaN here)."""
    location = work / "a" / "lr.tar.zst"
    location.parent.mkdir()
    await dffml.train(scikitlr(location), *LINE)
    before = await predictions(scikitlr(location))
    assert all(math.isnan(c) for c in confidences(before))
    assert values(before) == pytest.approx([6.0, 41.0])
    moved = work / "b" / "lr.tar.zst"
    moved.parent.mkdir()
    shutil.move(str(location), str(moved))
    after = await predictions(await load_model(moved))
    assert nan_safe(after) == nan_safe(before)
    # slr, by contrast, stores its confidence (r squared) when training.
    await dffml.train(slr(work / "slr.zip"), *LINE)
    assert confidences(await predictions(await load_model(work / "slr.zip"))) == [1.0, 1.0]


def test_scikit_predict_after_train_only_through_the_cli(work):
    """The same through the CLI: dffml prints the NaN confidence as a bare
    ``NaN`` (not strict JSON; Python's json reads it), before and after a move."""
    (work / "train.csv").write_text("x,y\n" + "".join(f"{x},{2 * x + 1}\n" for x in range(10)))
    (work / "predict.csv").write_text("x\n2.5\n20\n")
    sources = ["-sources", "f=csv", "-source-filename", work / "predict.csv"]
    trained = run_dffml(
        "train", "-model", "scikitlr_archive", "-model-features", "x:float:1",
        "-model-predict", "y:float:1", "-model-location", "a/lr.zip",
        "-sources", "f=csv", "-source-filename", "train.csv", cwd=work,
    )
    assert trained.returncode == 0, trained.stderr
    printed = []
    for location in ("a/lr.zip", "b/lr.zip"):
        if location.startswith("b/"):
            (work / "b").mkdir()
            shutil.move(str(work / "a" / "lr.zip"), str(work / location))
        result = run_dffml("predict", "all", "-model", "scikitlr_archive",
                           "-model-location", location, *sources, cwd=work)
        assert result.returncode == 0, result.stderr
        assert '"confidence": NaN' in result.stdout
        records = json.loads(result.stdout)
        for record in records:
            del record["last_updated"]
        printed.append(records)
    assert [r["prediction"]["y"]["value"] for r in printed[0]] == pytest.approx([6.0, 41.0])
    assert nan_safe(printed[0]) == nan_safe(printed[1])


async def test_upstream_scikit_loses_confidence_when_its_directory_moves(work):
    """The trap, shown on the upstream model itself, so that the next test
    is known to be able to fail: confidence is keyed by the directory path."""
    inner = Model.load("scikitlr")
    config = dict(features=Features(Feature("x", float, 1)), predict=Feature("y", float, 1))
    model = inner(directory=work / "dirA", **config)
    await dffml.train(model, *LINE)
    assert await dffml.accuracy(model, *LINE) == pytest.approx(1.0)
    assert confidences(await predictions(inner(directory=work / "dirA", **config))) == [1.0, 1.0]
    shutil.copytree(work / "dirA", work / "dirB")
    moved = await predictions(inner(directory=work / "dirB", **config))
    assert all(math.isnan(c) for c in confidences(moved))


@pytest.mark.parametrize("location_kind", ["archive", "directory"])
async def test_scikit_confidence_after_accuracy_survives_a_move(work, location_kind):
    name = "lr.tar.bz2" if location_kind == "archive" else "lr_dir"
    location = work / "a" / name
    location.parent.mkdir()
    model = scikitlr(location)
    await dffml.train(model, *LINE)
    accuracy = await dffml.accuracy(model, *LINE)
    assert accuracy == pytest.approx(1.0)
    moved = work / "b" / name
    moved.parent.mkdir()
    shutil.move(str(location), str(moved))
    again = scikitlr(moved)
    assert confidences(await predictions(again)) == [accuracy, accuracy]
    if location_kind == "archive":
        stored = json.loads(await _member(moved, "Scikit.json"))
        assert list(stored.values()) == [accuracy], stored


# -- context nesting ---------------------------------------------------------------------------


def _sources(rows):
    return Sources(
        MemorySource(
            MemorySourceConfig(
                records=[Record(str(index), data={"features": row}) for index, row in enumerate(rows)]
            )
        )
    )


@pytest.mark.parametrize("backend", sorted(BUILDERS))
async def test_nested_model_and_context_enters(work, backend):
    location = work / "nested.tar.gz"
    model = BUILDERS[backend](location)
    with pytest.raises(RuntimeError, match="enter the model"):
        model()
    async with _sources(LINE) as sources, sources() as sctx:
        async with model as outer:
            assert outer is model
            async with model as inner:
                assert inner is model
                async with model() as mctx:
                    await mctx.train(sctx)
                async with model() as mctx:
                    accuracy = await mctx.accuracy(sctx)
            assert not location.exists(), "saved only when the outermost enter exits"
            async with model() as mctx:
                found = [record async for record in mctx.predict(sctx)]
        assert location.is_file()
    assert accuracy == pytest.approx(1.0)
    assert [r.prediction("y").value for r in found[:2]] == pytest.approx([1.0, 3.0])
    assert values(await predictions(await load_model(location))) == pytest.approx([6.0, 41.0])


async def test_repeated_predictions_reuse_the_extraction_cache(work, trained_slr, monkeypatch):
    # slr rewrites its state file (same bytes) on every exit: that must not
    # leave the cache looking stale, or every other session re-extracts.
    import dffml_archive._api

    extracted = []
    real = dffml_archive._api.extract

    async def counting(*args, **kwargs):
        extracted.append(args[0])
        return await real(*args, **kwargs)

    monkeypatch.setattr(dffml_archive._api, "extract", counting)
    before = stat_identity(trained_slr)
    for _ in range(3):
        assert values(await predictions(slr(trained_slr))) == pytest.approx([6.0, 41.0])
    assert extracted == []
    assert stat_identity(trained_slr) == before, "predicting never repacks"


# -- the manifest ------------------------------------------------------------------------------


def _version(distribution):
    return pkg_resources.get_distribution(distribution).version


@pytest.mark.parametrize(
    "upstream,distribution,options",
    [
        ("slr", "dffml", {}),
        ("scratchlgrsag", "dffml-model-scratch", {}),
        ("scikitlr", "dffml-model-scikit", {"positive": True}),
        ("scikitkmeans", "dffml-model-scikit", {"n_clusters": 2}),
    ],
)
async def test_manifest_holds_full_config_entry_point_and_versions(
    work, upstream, distribution, options
):
    cls = Model.load(f"{upstream}_archive")
    rows = [{"x": float(x), "y": int(x > 4)} for x in range(10)]
    config = dict(features=Features(Feature("x", float, 1)), **options)
    if "predict" in {f.name for f in dataclasses.fields(cls.INNER.CONFIG)} and upstream != "scikitkmeans":
        config["predict"] = Feature("y", int if upstream == "scratchlgrsag" else float, 1)
    location = work / "m.tar.xz"
    await dffml.train(cls(location=location, **config), *rows)

    model = (await dffml_archive.inspect(location)).manifest.model
    assert model["entrypoint"] == f"{upstream}_archive"
    assert model["upstream"] == upstream
    inner_fields = {f.name for f in dataclasses.fields(cls.INNER.CONFIG)} - {"directory"}
    assert set(model["config"]) == inner_fields, "every option, given or default"
    for option, value in options.items():
        assert model["config"][option] == value
    # Stored as a list: the feature order is the column order backends train on.
    assert model["config"]["features"] == [{"name": "x", "dtype": "float", "length": 1}]
    assert model["versions"] == {
        "dffml-archive": dffml_archive.__version__,
        "dffml": _version("dffml"),
        distribution: _version(distribution),
        "python": platform.python_version(),
    }
    assert model["extra"] == {"dffml": None, "dffml-model-scratch": "scratch",
                              "dffml-model-scikit": "scikit"}[distribution]
    # The recorded class is importable and is the upstream class.
    module, _, qualname = model["class"].partition(":")
    assert getattr(importlib.import_module(module), qualname) is cls.INNER, model["class"]


async def test_load_model_of_an_archive_without_model_information(work):
    (work / "plain").mkdir()
    (work / "plain" / "file.txt").write_text("data")
    await dffml_archive.pack(work / "plain", work / "plain.tar")
    with pytest.raises(ArchiveError) as caught:
        await load_model(work / "plain.tar")
    assert "holds no model information" in str(caught.value)


async def test_load_model_of_a_backend_that_is_not_installed(work):
    (work / "plain").mkdir()
    (work / "plain" / "Model").write_text("{}")
    await dffml_archive.pack(
        work / "plain", work / "other.zip",
        model={"entrypoint": "nosuchmodel_archive", "upstream": "nosuchmodel", "extra": "scikit"},
    )
    with pytest.raises(ArchiveError) as caught:
        await load_model(work / "other.zip")
    message = str(caught.value)
    assert "'nosuchmodel_archive'" in message and "not installed" in message
    assert "pip install 'dffml-archive[scikit]'" in message
    # An extra dffml-archive does not have is refused as a forged manifest
    # (issue 15: the hint is a command; only known names reach it).
    await dffml_archive.pack(
        work / "plain", work / "unknown.zip",
        model={"entrypoint": "nosuchmodel_archive", "upstream": "nosuchmodel", "extra": "nosuch"},
    )
    with pytest.raises(ArchiveError, match="model.extra is 'nosuch', not an extra"):
        await load_model(work / "unknown.zip")


async def test_directory_location_is_a_plain_model_directory(work):
    location = work / "modeldir"
    await dffml.train(slr(location), *LINE)
    assert location.is_dir() and (location / "Model").is_file()
    assert values(await predictions(slr(location))) == pytest.approx([6.0, 41.0])
    assert not list(work.glob("*.tar*")) and not list(work.glob("*.zip"))


# -- options naming a path inside the model; staged models -----------------------


def test_an_option_inside_the_model_resolves_where_it_is_opened(tmp_path):
    from dffml_archive._config_paths import resolve_archive_paths, stored_archive_path

    (tmp_path / "embedding").mkdir()
    resolved = resolve_archive_paths(
        {"model_path": "archive:embedding", "other": pathlib.Path("archive:embedding"),
         "kept": "archive-like but not", "n": 3}, tmp_path, "m.tar.gz")
    assert resolved == {"model_path": str(tmp_path / "embedding"),
                        "other": tmp_path / "embedding", "kept": "archive-like but not", "n": 3}
    assert stored_archive_path(str(tmp_path / "embedding"), tmp_path) == "archive:embedding"
    assert stored_archive_path(tmp_path / "embedding" / "x", tmp_path) == "archive:embedding/x"
    assert stored_archive_path(str(tmp_path), tmp_path) == str(tmp_path)  # the model itself
    assert stored_archive_path("/elsewhere/embedding", tmp_path) == "/elsewhere/embedding"
    assert stored_archive_path("embedding", tmp_path) == "embedding"  # relative: the user's


@pytest.mark.parametrize("value", ["archive:../outside", "archive:/etc", "archive:",
                                   "archive:a/../../b"])
def test_an_option_leaving_the_model_is_refused(tmp_path, value):
    from dffml_archive._config_paths import resolve_archive_paths

    with pytest.raises(ArchiveError, match=r"option model_path=.*inside the model"):
        resolve_archive_paths({"model_path": value}, tmp_path, "m.tar.gz")


def test_an_option_naming_what_the_model_lacks_says_so(work):
    (work / "train.csv").write_text("x,y\n1,0\n2,1\n3,0\n4,1\n")
    result = run_dffml("train", "-model", "scikitsvc_archive", "-model-features", "x:float:1",
                       "-model-predict", "y:int:1", "-model-kernel", "archive:kernels/mine",
                       "-model-location", "svc.tar.gz", "-sources", "f=csv",
                       "-source-filename", "train.csv", cwd=work)
    line = one_line_error(result)
    assert "kernel='archive:kernels/mine'" in line and "does not hold" in line
    assert "-model-kernel" in line and not (work / "svc.tar.gz").exists()


async def test_a_staged_model_predicts_only_once_trained(work):
    """A staged archive (model section ``"trained": false``, as the hub
    writes) refuses to predict or assess, saying so; training clears it."""
    model_class = Model.load("slr_archive")
    (work / "staged").mkdir()
    info = dict(model_class.describe({"features": Features(Feature("x", float, 1)),
                                      "predict": Feature("y", float, 1)}), trained=False)
    location = work / "staged.tar.gz"
    await dffml_archive.pack(work / "staged", location, model=info)
    for attempt in (predictions(await load_model(location)),
                    dffml.accuracy(await load_model(location), *LINE)):
        with pytest.raises(ModelNotTrained, match="staged model that was never trained"):
            await attempt
    await dffml.train(await load_model(location), *LINE)
    assert "trained" not in (await dffml_archive.inspect(location)).manifest.model
    assert values(await predictions(await load_model(location)))[0] == pytest.approx(6.0)


def test_a_model_section_claiming_trained_true_is_refused():
    from dffml_archive._model_info import checked_model_info
    from dffml_archive.errors import ModelInfoError

    section = {"entrypoint": "slr_archive", "upstream": "slr", "config": {}, "trained": True}
    with pytest.raises(ModelInfoError, match="model.trained"):
        checked_model_info("m.tar.gz", section)
    assert checked_model_info("m.tar.gz", dict(section, trained=False))["trained"] is False
