"""Names and manifest text a user or an attacker chose (issue 15, items 1-3):

* a legal long archive name never costs a finished training (temporary,
  staging and rescue names fit the 255-byte component limit; a name the file
  system would refuse is refused before training);
* the manifest's model section is untrusted text: it is checked against its
  schema once, with one error naming the archive and the field, and nothing
  of it reaches a suggested command unquoted or the terminal unescaped.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import dffml
from dffml import Model

import dffml_archive
from dffml_archive import _cache
from dffml_archive.errors import ArchiveError, CorruptArchiveError, ModelInfoError
from dffml_archive.model import load_model

from _helpers import subprocess_env

DFFML = str(pathlib.Path(sys.executable).with_name("dffml"))
LINE = [{"x": float(x), "y": 2.0 * x + 1.0} for x in range(10)]
TRAIN = ("train", "-model", "slr_archive", "-model-features", "x:float:1",
         "-model-predict", "y:float:1", "-sources", "f=csv", "-source-filename", "train.csv")


def run_dffml(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([DFFML, *map(str, args)], cwd=str(cwd), capture_output=True,
                          text=True, timeout=300, env=subprocess_env())


def error_line(result) -> str:
    assert result.returncode == 1, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    return lines[-1]


@pytest.fixture
def work(tmp_path, monkeypatch) -> pathlib.Path:
    path = tmp_path / "work"
    path.mkdir()
    (path / "train.csv").write_text("x,y\n" + "".join(f"{x},{2 * x + 1}\n" for x in range(10)))
    monkeypatch.setenv("DFFML_ARCHIVE_CACHE", str(tmp_path / "cache"))
    return path


# -- 1. long names --------------------------------------------------------------


def test_training_on_a_243_character_name_is_saved_and_predicts(work):
    name = "m" * 243 + ".tar.gz"  # 250 bytes: legal
    trained = run_dffml(*TRAIN, "-model-location", name, cwd=work)
    assert trained.returncode == 0, trained.stderr
    assert (work / name).is_file()
    predicted = run_dffml("predict", "all", "-model", "slr_archive", "-model-location", name,
                          "-sources", "f=csv", "-source-filename", "train.csv", cwd=work)
    assert predicted.returncode == 0, predicted.stderr
    assert '"value": 19.0' in predicted.stdout  # the last row: x = 9
    assert [path.name for path in work.iterdir() if path.name.startswith(".")] == []


def test_a_name_the_file_system_refuses_is_refused_before_training(work):
    name = "m" * 250 + ".tar.gz"  # 257 bytes
    line = error_line(run_dffml(*TRAIN, "-model-location", name, cwd=work))
    assert name[:20] in line and "longer than the file system allows" in line
    assert "choose a shorter name" in line
    assert sorted(path.name for path in work.iterdir()) == ["train.csv"]


def test_rescue_names_fit_the_component_limit_with_their_model_file():
    for name in ("m.tar", "m" * 243 + ".tar.gz", "é" * 120 + ".zip"):
        rescued = _cache.rescue_path(name)
        assert len(os.fsencode(rescued.name + ".model.json")) <= 255, rescued.name
        assert rescued.name.startswith("rescued-" + name[:8])
    long_one, other = _cache.rescue_path("a" * 250 + "1.tar"), _cache.rescue_path("a" * 250 + "2.tar")
    assert long_one.name.split("-")[1] != other.name.split("-")[1], "distinct names stay distinct"


_SAVE_THAT_DOES_NOT_FIT = textwrap.dedent(
    """
    import asyncio, json, os, resource, signal, sys
    import dffml_archive

    async def main(archive):
        async with dffml_archive.archive_location(archive) as copy:
            (copy.directory / "weights.bin").write_bytes(os.urandom(2 << 20))
            copy.model = {"entrypoint": "slr_archive", "config": {}}
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    try:
        asyncio.run(main(sys.argv[1]))
    except dffml_archive.ArchiveWriteError as error:
        print(json.dumps({"error": str(error)}))
    """
)


def test_a_failed_save_of_a_long_name_is_rescued(work, tmp_path):
    archive = work / ("m" * 243 + ".tar")
    child = subprocess.run([sys.executable, "-c", _SAVE_THAT_DOES_NOT_FIT, str(archive)],
                           capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert child.returncode == 0, child.stderr
    message = json.loads(child.stdout.strip().splitlines()[-1])["error"]
    assert "the unsaved model directory is kept at" in message
    rescued = [path for path in (tmp_path / "cache").iterdir() if path.name.startswith("rescued-")]
    assert len(rescued) == 2, rescued  # the tree and its .model.json
    tree = next(path for path in rescued if path.is_dir())
    assert (tree / "weights.bin").stat().st_size == 2 << 20
    assert str(tree) in message


# -- 2, 3. the manifest's model section -----------------------------------------


async def train_slr(location: pathlib.Path) -> dict:
    model = Model.load("slr_archive")(location=location, features=dffml.Features(
        dffml.Feature("x", float, 1)), predict=dffml.Feature("y", float, 1))
    await dffml.train(model, *LINE)
    info = await dffml_archive.inspect(location)
    return info.manifest.model


async def forged(work: pathlib.Path, name: str, **changes) -> pathlib.Path:
    """An slr archive whose model section says what an attacker wants; its
    manifest verifies (the manifest is integrity, not authenticity)."""
    honest = work / "honest.tar.gz"
    if not honest.exists():
        await train_slr(honest)
    model = (await dffml_archive.inspect(honest)).manifest.model
    for key, value in changes.items():
        if key.startswith("config."):
            model["config"][key[len("config."):]] = value
        else:
            model[key] = value
    tree = work / (name + ".d")
    await dffml_archive.extract(honest, tree)
    forged_archive = work / name
    await dffml_archive.pack(tree, forged_archive, model=model)
    await dffml_archive.verify(forged_archive)  # passes: the attack
    return forged_archive


INJECTION = "scikit]' && touch /tmp/PWNED && echo '["
FORGED_LINE = "scikit\n\x1b[1;32mOK: all good"


@pytest.mark.parametrize("field, value, fragment", [
    ("extra", INJECTION, "model.extra"),
    ("extra", FORGED_LINE, "model.extra"),
    ("extra", "nonexistent", "not an extra of dffml-archive"),
    ("entrypoint", "slr", "model.entrypoint"),
    ("entrypoint", "scikitlr_archive", "model.entrypoint"),
    ("entrypoint", "x_archive; rm -rf ~", "model.entrypoint"),
    ("upstream", 42, "model.upstream"),
    ("config", "garbage", "model.config"),
    ("config.features", "garbage", "model.config.features"),
    ("config.predict", {"name": 1}, "model.config.predict"),
])
async def test_load_model_refuses_a_forged_model_section_naming_the_field(
    work, field, value, fragment
):
    archive = await forged(work, f"forged-{field}.tar.gz", **{field: value})
    with pytest.raises(ModelInfoError) as raised:
        await load_model(archive)
    message = str(raised.value)
    assert isinstance(raised.value, CorruptArchiveError)
    assert str(archive) in message and fragment in message
    assert "\x1b" not in message and "\n" not in message
    assert "touch /tmp/PWNED" not in message or "'" not in message.split("touch")[0][-3:]


async def test_the_slr_model_refuses_it_too_before_using_any_of_it(work):
    archive = await forged(work, "features.tar.gz", **{"config.features": "garbage"})
    with pytest.raises(ModelInfoError, match=r"model\.config\.features"):
        async with Model.load("slr_archive")(location=archive):
            pass


async def test_a_missing_backend_hint_quotes_the_extra(work):
    # A well-formed section of a backend that is not installed here: the
    # hint is a command, quoted.
    archive = await forged(work, "absent.tar.gz", entrypoint="absentmodel_archive",
                           upstream="absentmodel", extra="scikit")
    with pytest.raises(ArchiveError) as raised:
        await load_model(archive)
    assert "pip install 'dffml-archive[scikit]'" in str(raised.value)


async def test_a_forged_line_never_reaches_the_terminal_through_dffml_predict(work):
    archive = await forged(work, "forged.tar.gz", extra=FORGED_LINE)
    line = error_line(run_dffml("predict", "all", "-model", "slr_archive",
                                "-model-location", archive.name, "-sources", "f=csv",
                                "-source-filename", "train.csv", cwd=work))
    assert "model.extra" in line and "forged.tar.gz" in line
    assert "\x1b" not in line


async def test_a_wrong_backend_hint_is_a_quoted_entry_point(work):
    archive = await forged(work, "other.tar.gz", entrypoint="scikitlr_archive",
                           upstream="scikitlr", extra="scikit")
    line = error_line(run_dffml("predict", "all", "-model", "slr_archive",
                                "-model-location", archive.name, "-sources", "f=csv",
                                "-source-filename", "train.csv", cwd=work))
    assert "holds a 'scikitlr' model (entry point 'scikitlr_archive'), not 'slr'" in line
    assert "use -model scikitlr_archive" in line


def test_inspect_escapes_the_writer_names(work, tmp_path):
    import asyncio

    tree = work / "tree"
    tree.mkdir()
    (tree / "f").write_text("f")
    archive = work / "w.tar"
    asyncio.run(dffml_archive.pack(tree, archive))
    from dffml_archive.cli import format_info
    from dffml_archive._inspect import inspect_archive

    info = inspect_archive(archive)
    info.manifest.created_by = {"evil\x1b[31m\nforged": "1"}
    shown = format_info(info)
    assert "\x1b" not in shown and "\\x1b[31m\\nforged 1" in shown
