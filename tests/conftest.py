"""Shared fixtures.  No __init__.py here on purpose (see pytest.ini)."""
import os
import pathlib
import sys

import pytest

# Importlib mode (pytest.ini) leaves sys.path alone, and this folder is no
# package: put it on the path so that test files can import the helper
# modules beside them (_e2e_helpers) by their own top-level names.
sys.path.append(str(pathlib.Path(__file__).resolve().parent))
# Their asserts carry the checks of many tests: let pytest explain a failure
# (a diff of the two outputs) rather than print a bare AssertionError.
pytest.register_assert_rewrite("_e2e_helpers")

ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own lock and extraction cache."""
    monkeypatch.setenv("DFFML_ARCHIVE_CACHE", str(tmp_path / "cache"))


def make_model_tree(root: pathlib.Path) -> pathlib.Path:
    """A small directory shaped like a saved model."""
    (root / "weights").mkdir(parents=True)
    (root / "weights" / "layer0.bin").write_bytes(os.urandom(200_000))
    (root / "weights" / "empty").mkdir()
    (root / "config.json").write_text('{"features": ["x"], "predict": "y"}')
    (root / "notes ü.txt").write_text("unicode name\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    return root


@pytest.fixture
def model_tree(tmp_path) -> pathlib.Path:
    return make_model_tree(tmp_path / "model")


def snapshot(root: pathlib.Path) -> dict:
    """Path -> (kind, mode, bytes) for every entry below root."""
    result = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        mode = path.stat().st_mode & 0o7777
        if path.is_dir():
            result[relative] = ("dir", mode, None)
        else:
            result[relative] = ("file", mode, path.read_bytes())
    return result
