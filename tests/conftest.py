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


# -- the repository's backends: embedded, and PostgreSQL + SeaweedFS (S3) ------

REPOSITORY_BACKENDS = ("embedded", "servers")


@pytest.fixture(scope="session")
def scaleout_servers(tmp_path_factory):
    """PostgreSQL and SeaweedFS started by ``scripts/services`` for the whole
    session (never skipped: if they cannot start, the tests that need them
    fail with the reason)."""
    import subprocess

    repo = pathlib.Path(__file__).resolve().parent.parent
    state = tmp_path_factory.mktemp("services")
    env = dict(os.environ, DFFML_ARCHIVE_SERVICES_DIR=str(state))
    env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env["PATH"]])
    started = subprocess.run(
        [sys.executable, str(repo / "scripts" / "_services.py"), "start"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    if started.returncode != 0:
        pytest.fail(f"scripts/services start failed:\n{started.stderr}", pytrace=False)
    exports = {}
    for line in started.stdout.splitlines():
        name, _, value = line[len("export "):].partition("=")
        exports[name] = value
    exports["_SERVICES_DIR"] = str(state)
    yield exports
    subprocess.run([sys.executable, str(repo / "scripts" / "_services.py"), "stop"],
                   env=env, capture_output=True, timeout=120)


def fresh_database(url: str) -> str:
    """A new empty database on the server of ``url``; its URL."""
    import asyncio
    import secrets

    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = "t_" + secrets.token_hex(6)

    async def create():
        connection = await asyncpg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, database="postgres"
        )
        try:
            await connection.execute(f"CREATE DATABASE {name}")
        finally:
            await connection.close()

    asyncio.run(create()) if not _loop_running() else _in_thread(lambda: asyncio.run(create()))
    return parsed.set(database=name).render_as_string(hide_password=False)


def _loop_running() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_thread(function):
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(function).result()


@pytest.fixture(params=REPOSITORY_BACKENDS)
def repository_backend(request, monkeypatch):
    """Point DFFML_ARCHIVE_REPOSITORY_DB/_BLOBS at a fresh database and a
    fresh S3 prefix ("servers"), or leave the embedded default; returns the
    backend's name.  Child processes inherit the choice."""
    if request.param == "embedded":
        for name in ("DFFML_ARCHIVE_REPOSITORY_DB", "DFFML_ARCHIVE_REPOSITORY_BLOBS"):
            monkeypatch.delenv(name, raising=False)
        return "embedded"
    import secrets

    servers = request.getfixturevalue("scaleout_servers")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.setenv(name, servers[name])
    monkeypatch.setenv("DFFML_ARCHIVE_REPOSITORY_DB",
                       fresh_database(servers["DFFML_ARCHIVE_REPOSITORY_DB"]))
    monkeypatch.setenv("DFFML_ARCHIVE_REPOSITORY_BLOBS",
                       f"{servers['DFFML_ARCHIVE_REPOSITORY_BLOBS']}/t-{secrets.token_hex(6)}")
    return "servers"


@pytest.fixture
def server():
    """A loopback hub server (tests/_hub_server.py) for the test, closed after it."""
    from _hub_server import HubServer

    served = HubServer()
    yield served
    served.close()
