"""Helpers shared by the test modules (not a test module itself)."""
import os
import pathlib

import pytest

#: The checkout under test.
REPO = pathlib.Path(__file__).resolve().parent.parent


def subprocess_env() -> dict:
    """The environment for a child process: this checkout first on
    PYTHONPATH, so it is the one imported whatever the install mode."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return env


def read_tree(root) -> dict:
    """Relative path -> bytes (None for a directory) of everything below root."""
    root = pathlib.Path(root)
    return {
        path.relative_to(root).as_posix(): (None if path.is_dir() else path.read_bytes())
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def fixed_umask():
    """Umask 022 for the test (modes in archives and trees are compared).
    Use with ``pytestmark = pytest.mark.usefixtures("fixed_umask")``."""
    old = os.umask(0o022)
    yield
    os.umask(old)
