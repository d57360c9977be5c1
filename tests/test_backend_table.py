"""The backend table (dffml_archive/backends/_table.py) is the one place a
backend is declared: the installed entry points, the extras, the adapters
and the docs' backend table must all agree with it."""
import json
import pathlib
import re
from importlib.metadata import distribution

from dffml import Model

from dffml_archive.backends import _table

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_the_installed_entry_points_are_the_tables():
    installed = sorted(
        f"{entry.name} = {entry.value}"
        for entry in distribution("dffml-archive").entry_points
        if entry.group == "dffml.model"
    )
    assert installed == sorted(_table.model_entry_points()), (
        "reinstall (scripts/bootstrap) after changing the backend table"
    )


def test_every_extra_has_pins_and_every_pinned_extra_a_backend():
    pinned = set(json.loads((REPO / "requirements.json").read_text())["extras"])
    declared = {row["extra"] for row in _table.BACKENDS if row["extra"] is not None}
    assert declared == pinned - {"slr"}, "requirements.json extras and the table differ"


def test_model_names_are_unique_and_our_labels_never_upstream_names():
    names = [name for row in _table.BACKENDS for name in row["models"]]
    assert len(names) == len(set(names))
    assert not any(name.endswith(_table.LABEL_SUFFIX) for name in names)


def test_adapters_record_the_tables_distribution_and_extra():
    for label, module in [("slr_archive", "slr"), ("scratchlgrsag_archive", "scratch"),
                          ("scikitlr_archive", "scikit")]:
        adapter = Model.load(label).ADAPTER
        row = _table.backend(module)
        assert (adapter.distribution, adapter.extra) == (row["distribution"], row["extra"])


def test_the_docs_backend_table_lists_every_backend():
    page = (REPO / "docs" / "models" / "index.rst").read_text()
    listed = re.findall(r"\* - :doc:`(\w+)`", page)
    assert listed == [row["module"] for row in _table.BACKENDS]
    for row in _table.BACKENDS:
        install = (f"pip install 'dffml-archive[{row['extra']}]'" if row["extra"]
                   else "pip install dffml-archive")
        assert install in page, install
        assert (REPO / "docs" / "models" / f"{row['module']}.rst").is_file()


def test_rows_have_only_the_known_fields():
    for row in _table.BACKENDS:
        assert set(row) <= {"module", "distribution", "extra", "models", "own"}, row
        assert {"module", "distribution", "extra", "models"} <= set(row), row


def test_our_own_models_are_plain_plugins_under_their_upstream_names():
    """A model no PyPI release ships working is ours, in dffml_archive/models/:
    registered under the upstream name (``vwmodel``) and wrapped by its
    backend module as ``NAME_archive``, around the very same class."""
    own = {name: (row, target) for row in _table.BACKENDS
           for name, target in row.get("own", {}).items()}
    assert set(own) == {"vwmodel", "spacyner"}
    modules = {path.stem for path in (REPO / "dffml_archive" / "models").glob("[!_]*.py")}
    assert modules == {target.partition(":")[0] for _row, target in own.values()}, (
        "every module in dffml_archive/models is a model the table registers"
    )
    for name, (row, target) in own.items():
        assert name in row["models"], f"{name} is wrapped by its row's module too"
        assert f"{name} = dffml_archive.models.{target}" in _table.model_entry_points()
        plain = Model.load(name)
        assert f"{plain.__module__}:{plain.__qualname__}" == f"dffml_archive.models.{target}"
        assert plain.ENTRY_POINT_LABEL == name
        archived = Model.load(f"{name}{_table.LABEL_SUFFIX}")
        assert archived.INNER is plain and archived.UPSTREAM == name
        assert archived.__module__ == f"dffml_archive.backends.{row['module']}"
