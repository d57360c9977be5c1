"""Sphinx configuration for dffml-archive.

Build with ``scripts/test`` (which runs it with warnings as errors) or
``scripts/run python -m sphinx -b html docs docs/_build/html``.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# autodoc imports dffml_archive: the project environment has it installed
# (editable); putting the checkout first also covers builds run from another
# environment that has the dependencies.
sys.path.insert(0, str(ROOT))

# The version is read, not imported, so the docs configuration never depends
# on the package importing cleanly.
_VERSION_MATCH = re.search(
    r'^__version__ = "([^"]+)"',
    (ROOT / "dffml_archive" / "version.py").read_text(encoding="utf-8"),
    re.M,
)
if _VERSION_MATCH is None:
    raise RuntimeError("no __version__ in dffml_archive/version.py")

project = "dffml-archive"
author = "dffml-archive contributors"
copyright = "dffml-archive contributors"
release = _VERSION_MATCH.group(1)
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = True

master_doc = "index"
source_suffix = ".rst"
exclude_patterns = ["_build"]
templates_path = []

html_theme = "alabaster"
html_title = f"dffml-archive {release}"
html_static_path = []
