"""The examples of docs/models run, and print what the docs say they print.

Every example in docs/models/examples/ is executed here as a user would run
it: shell examples with ``bash`` (the environment's ``bin`` first on PATH, so
``dffml`` is the real console script), Python examples with the
environment's interpreter, each in an empty temporary directory.  Its stdout
must equal the ``.out`` file next to it, which the docs include as the
example's output (only the ``last_updated`` timestamps of ``dffml predict``
records are ignored).  The archives an example leaves behind are inspected.

The table of scikit models on docs/models/scikit.rst is a CSV file checked
against the installed plugin's entry points.

After a deliberate change of an example, regenerate its output with, e.g.::

    cd "$(mktemp -d)" && PATH=$ENV/bin:$PATH bash -euo pipefail \
        /path/to/docs/models/examples/slr_cli.sh > /path/to/docs/models/examples/slr_cli.out

(``scripts/run bash -c '...'`` gives the environment) and review the diff.
"""
import asyncio
import csv
import importlib
import os
import pathlib
import re
import subprocess
import sys

import pkg_resources
import pytest

from dffml import Model

import dffml_archive

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "models"
EXAMPLES = PAGES / "examples"
BIN = pathlib.Path(sys.executable).parent
#: The pages of this file's backends (other backends' pages, in the same
#: directory, are tested with those backends).
OUR_PAGES = ["index", "slr", "scratch", "scikit"]

#: Our examples: archives each leaves (relative to its directory) -> entry point.
LEFT_BEHIND = {
    "slr_cli.sh": {"shipped/model.tar.gz": "slr_archive"},
    "slr_python.py": {"moved.zip": "slr_archive"},
    "slr_dataflow.sh": {"model.tar.xz": "slr_archive"},
    "scratch_cli.sh": {"model.zip": "scratchlgrsag_archive"},
    "scratch_python.py": {"anomalies.tar.bz2": "anomalydetection_archive"},
    "scikit_cli.sh": {"shipped/knn.tar.zst": "scikitknn_archive"},
    "scikit_python.py": {"clusters.tar": "scikitkmeans_archive"},
}
SCRIPTS = [EXAMPLES / name for name in sorted(LEFT_BEHIND)]


def normalized(text: str) -> str:
    return re.sub(r'"last_updated": "[^"]*"', '"last_updated": "<time>"', text)


def run_example(script: pathlib.Path, directory: pathlib.Path) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if script.suffix == ".sh":
        command = ["bash", "-euo", "pipefail", str(script)]
    else:
        command = [sys.executable, str(script)]
    result = subprocess.run(
        command,
        cwd=str(directory),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"{script.name} exited {result.returncode}\n--- stdout\n{result.stdout}"
        f"\n--- stderr\n{result.stderr[-6000:]}"
    )
    return result.stdout


def test_every_example_exists_with_its_output():
    for script in SCRIPTS:
        assert script.is_file(), script
        assert script.with_suffix(".out").is_file(), script.with_suffix(".out")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_example_prints_its_documented_output(script, tmp_path):
    work = tmp_path / "example"
    work.mkdir()
    expected = script.with_suffix(".out").read_text()
    output = run_example(script, work)
    assert normalized(output) == normalized(expected)
    for relative, entrypoint in LEFT_BEHIND[script.name].items():
        archive = work / relative
        assert archive.is_file(), relative
        info = asyncio.run(dffml_archive.inspect(archive))
        assert info.manifest.model["entrypoint"] == entrypoint


# -- the pages include the examples ---------------------------------------------


def _includes(page: pathlib.Path):
    text = page.read_text()
    return re.findall(r"^\.\. (?:literalinclude|csv-table)::\s*(\S*)\s*$|^\s+:file:\s*(\S+)\s*$",
                      text, re.M)


def _included_files(page: pathlib.Path):
    found = []
    for literal, csv_file in _includes(page):
        name = literal or csv_file
        if name:
            found.append((page.parent / name).resolve())
    return found


def test_pages_include_every_example_and_its_output():
    included = {path for page in OUR_PAGES for path in _included_files(PAGES / f"{page}.rst")}
    for path in included:
        assert path.is_file(), f"included but missing: {path}"
    for script in SCRIPTS:
        assert script.resolve() in included, f"{script.name} is not on any page"
        assert script.with_suffix(".out").resolve() in included, (
            f"{script.with_suffix('.out').name} is not on any page"
        )
    assert (EXAMPLES / "scikit_models.csv").resolve() in included


@pytest.mark.parametrize("backend", ["slr", "scratch", "scikit"])
def test_each_backend_page_has_a_cli_and_a_python_example(backend):
    page = PAGES / f"{backend}.rst"
    names = {path.name for path in _included_files(page)}
    assert f"{backend}_cli.sh" in names and f"{backend}_python.py" in names
    assert page.stem in (PAGES / "index.rst").read_text()


# -- the table of scikit models ------------------------------------------------------


def _public_path(estimator) -> str:
    package = ".".join(estimator.__module__.split(".")[:2])
    # (Not an identity check: daal4py, when installed, replaces some
    # sklearn classes in their public modules after the plugin imported them.)
    assert hasattr(importlib.import_module(package), estimator.__name__), estimator
    return f"{package}.{estimator.__name__}"


def test_scikit_table_lists_every_model_of_the_plugin():
    with open(EXAMPLES / "scikit_models.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Upstream model", "dffml-archive model", "scikit-learn estimator", "Type"]
    names = set(
        pkg_resources.get_distribution("dffml-model-scikit").get_entry_map("dffml.model")
    ) | {"scikitrfr"}
    expected = []
    for name in sorted(names):
        inner = Model.load(f"{name}_archive").INNER
        estimator = inner.SCIKIT_MODEL
        expected.append([name, f"{name}_archive", _public_path(estimator), estimator._estimator_type])
    assert rows[1:] == expected
