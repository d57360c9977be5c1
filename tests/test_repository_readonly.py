"""An embedded repository on a read-only file system (an image layer, a ``ro``
bind mount, an NFS export): everything that reads works and writes nothing
there, and every change is refused up front with one error.

The root is made really read-only: each command runs in a private mount
namespace (``unshare -m``) where the root is bind-mounted onto itself
read-only; root's permission override does not get past that.
"""
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys

import pytest

from _e2e_helpers import (
    CLI_TIMEOUT, DFFML, dffml_cli, parse_records, without_root_override, write_csv,
)
from _helpers import subprocess_env

TRAIN = [{"experience": x, "salary": 10 * x + 5} for x in range(8)]
QUERY = [{"experience": 20}, {"experience": 3}]
SLR = ["-model", "slr_archive", "-model-features", "experience:int:1",
       "-model-predict", "salary:float:1"]
READS = (("list",), ("log", "m"), ("log", "m", "--events"), ("show", "m"), ("show", "m:1"),
         ("find", 'entrypoint == "slr_archive"'))

_MOUNT_READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'

_LOAD_AND_PREDICT = """
import asyncio, json, sys
import dffml
from dffml_archive import load_model

async def main():
    model = await load_model(sys.argv[1])
    found = []
    async for _, _, prediction in dffml.predict(model, *json.loads(sys.argv[2])):
        found.append(prediction["salary"]["value"])
    print(json.dumps(found))

asyncio.run(main())
"""


def _can_mount_privately() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", _MOUNT_READ_ONLY, "/", "true"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.fixture(autouse=True, scope="module")
def private_read_only_mounts():
    """These tests need a real read-only mount: without one they fail,
    saying why (never skip)."""
    if not _can_mount_privately():
        pytest.fail("needs root and `unshare -m` (a private read-only bind mount); run as "
                    "root on Linux with util-linux", pytrace=False)


@pytest.fixture
def work(tmp_path, monkeypatch) -> pathlib.Path:
    """A work directory and an embedded repository holding ``m:1``, a
    trained slr model."""
    for name in ("DFFML_ARCHIVE_REPOSITORY_DB", "DFFML_ARCHIVE_REPOSITORY_BLOBS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DFFML_ARCHIVE_REPOSITORY", str(tmp_path / "repository"))
    write_csv(tmp_path / "train.csv", TRAIN)
    write_csv(tmp_path / "query.csv", QUERY)
    dffml_cli("train", *SLR, "-model-location", "models:m", "-sources", "f=csv",
              "-source-filename", "train.csv", cwd=tmp_path, env=subprocess_env())
    return tmp_path


def snapshot(root: pathlib.Path) -> dict:
    """Every entry under ``root``: its bytes (files), mode and mtime."""
    found = {}
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() else None
        found[path.relative_to(root).as_posix()] = (data, st.st_mode, st.st_mtime_ns)
    return found


def run(*command, cwd, root=None, prefix=()):
    """``command`` with ``root`` (default: the repository) mounted read-only."""
    root = root or cwd / "repository"
    return subprocess.run(
        [*prefix, "unshare", "-m", "sh", "-c", _MOUNT_READ_ONLY, str(root), *map(str, command)],
        cwd=str(cwd), env=subprocess_env(), capture_output=True, text=True, timeout=CLI_TIMEOUT,
    )


def ok(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def models(*args):
    return [sys.executable, "-m", "dffml_archive", "models", *args]


def models_json(work, *args, root=None):
    """``models ARGS --json`` on a writable root (the reference answers)."""
    root = root or work / "repository"
    result = subprocess.run(
        models(*args, "--repository", str(root), "--json"), cwd=str(work),
        env=subprocess_env(), capture_output=True, text=True, timeout=CLI_TIMEOUT,
    )
    return json.loads(ok(result).stdout)


def predict_command(location):
    return [DFFML, "predict", "all", *SLR, "-model-location", location,
            "-sources", "f=csv", "-source-filename", "query.csv"]


def one_error_line(result, *fragments):
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_everything_that_reads_works_and_writes_nothing(work):
    root = work / "repository"
    expected = {args: models_json(work, *args) for args in READS}
    predictions = parse_records(ok(subprocess.run(
        predict_command("models:m"), cwd=str(work), env=subprocess_env(),
        capture_output=True, text=True, timeout=CLI_TIMEOUT,
    )).stdout)
    shutil.rmtree(root / "tmp")  # what a copy into an image layer would leave out
    before = snapshot(root)

    for args in READS:
        result = ok(run(*models(*args, "--repository", root, "--json"), cwd=work))
        assert json.loads(result.stdout) == expected[args], args
    result = ok(run(*predict_command("models:m"), cwd=work))
    assert parse_records(result.stdout) == predictions
    result = ok(run(sys.executable, "-c", _LOAD_AND_PREDICT, "models:m:latest",
                    json.dumps(QUERY), cwd=work))
    assert json.loads(result.stdout) == [p["prediction"]["salary"]["value"] for p in predictions]
    ok(run(*models("download", "m:1", work / "m.tar.gz", "--repository", root), cwd=work))
    ok(run(*models("verify", "--repository", root), cwd=work))

    assert snapshot(root) == before
    assert not list(root.glob("repository.db-*"))
    assert (work / "m.tar.gz").stat().st_size > 0


@pytest.mark.parametrize("command", [
    ("tag", "m:1", "production"), ("untag", "m:production"), ("delete", "m:1"),
    ("create", "other"), ("gc", "--grace", "0"), ("push", "model", "m"),
])
def test_every_change_is_refused_with_one_error(work, command):
    root = work / "repository"
    (work / "model").mkdir()
    (work / "model" / "weights.bin").write_bytes(b"w" * 1000)
    before = snapshot(root)
    result = run(*models(*command, "--repository", root), cwd=work)
    one_error_line(result, str(root), "is read-only")
    assert snapshot(root) == before


def test_training_into_a_read_only_repository_is_refused_before_training(work):
    root = work / "repository"
    before = snapshot(root)
    result = run(DFFML, "train", *SLR, "-model-location", "models:m", "-sources", "f=csv",
                 "-source-filename", "train.csv", cwd=work)
    line = one_error_line(result, str(root), "is read-only")
    assert "could not be saved" in line
    assert snapshot(root) == before


def test_read_only_by_permissions_reads_too(work):
    """Not a mount: a directory the user may not write (root without its
    override) is read the same way."""
    root = work / "repository"
    expected = models_json(work, "log", "m")
    before = snapshot(root)
    os.chmod(root, 0o555)
    try:
        result = subprocess.run(
            [*without_root_override(), *models("log", "m", "--repository", root, "--json")],
            cwd=str(work), env=subprocess_env(), capture_output=True, text=True,
            timeout=CLI_TIMEOUT,
        )
        assert json.loads(ok(result).stdout) == expected
    finally:
        os.chmod(root, 0o755)
    assert snapshot(root) == before


def _copy_with_pending_wal(work, target: pathlib.Path) -> None:
    """A copy of the repository taken while its WAL holds a committed tag
    (``production`` on m:1) that is in no page of repository.db yet: our
    open connection keeps the tagging process from checkpointing on close."""
    root = work / "repository"
    holder = sqlite3.connect(str(root / "repository.db"))
    try:
        holder.execute("SELECT count(*) FROM versions").fetchall()
        ok(subprocess.run(models("tag", "m:1", "production", "--repository", str(root)),
                          cwd=str(work), env=subprocess_env(), capture_output=True, text=True,
                          timeout=CLI_TIMEOUT))
        shutil.copytree(root, target)
    finally:
        holder.close()
    assert (target / "repository.db-wal").stat().st_size > 0


def test_a_pending_wal_is_read_not_ignored(work):
    copy = work / "copy"
    _copy_with_pending_wal(work, copy)
    before = snapshot(copy)
    result = ok(run(*models("log", "m", "--repository", copy, "--json"), cwd=work, root=copy))
    assert json.loads(result.stdout)[0]["tags"] == ["latest", "production"]
    assert snapshot(copy) == before


def test_a_pending_wal_without_its_shm_is_one_clear_error(work):
    copy = work / "copy"
    _copy_with_pending_wal(work, copy)
    (copy / "repository.db-shm").unlink()
    before = snapshot(copy)
    result = run(*models("log", "m", "--repository", copy, "--json"), cwd=work, root=copy)
    line = one_error_line(result, str(copy), "read-only", "not closed cleanly")
    assert "writable" in line
    assert snapshot(copy) == before


@pytest.mark.parametrize("revision, fragment", [
    ("0001_initial", "open it once where it is writable to upgrade"),
    ("9999_from_the_future", "newer dffml-archive"),
])
def test_a_schema_of_another_version_is_not_migrated(work, revision, fragment):
    root = work / "repository"
    with sqlite3.connect(str(root / "repository.db")) as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    db.close()
    before = snapshot(root)
    result = run(*models("list", "--repository", root), cwd=work)
    one_error_line(result, str(root), fragment)
    assert snapshot(root) == before


def test_a_read_only_directory_without_a_repository_says_so(work):
    empty = work / "empty"
    empty.mkdir()
    result = run(*models("list", "--repository", empty), cwd=work, root=empty)
    one_error_line(result, str(empty), "is read-only", "repository.db")


_API_CHANGES = """
import asyncio, sys
from dffml_archive.repository import Repository, gc
from dffml_archive.errors import RepositoryError

async def main(root, model):
    async with Repository(root) as repo:
        m = await repo.get("m")
        changes = {
            "save": lambda: m.new_image(model).save(),
            "add_tag": lambda: m.add_tag("production", 1),
            "remove_tag": lambda: m.remove_tag("production"),
            "delete_version": lambda: m.delete_version(1),
            "create": lambda: repo.create("other"),
            "delete": lambda: repo.delete("m"),
            "gc": lambda: gc(repo, 0),
        }
        for name, change in changes.items():
            try:
                await change()
            except RepositoryError as error:
                assert "is read-only" in str(error) and root in str(error), (name, error)
                print(name, "refused")
            else:
                print(name, "DONE")
        print("image", (await m.get_model_image()).version)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_every_change_through_the_python_api_is_refused(work):
    root = work / "repository"
    (work / "model").mkdir()
    (work / "model" / "weights.bin").write_bytes(b"w" * 1000)
    before = snapshot(root)
    result = ok(run(sys.executable, "-c", _API_CHANGES, root, work / "model", cwd=work))
    lines = result.stdout.splitlines()
    assert lines[-1] == "image 1"
    assert all(line.endswith(" refused") for line in lines[:-1]) and len(lines) == 8, lines
    assert snapshot(root) == before


def test_a_root_whose_name_has_url_characters_is_the_one_opened(work):
    """``?`` and ``#`` in the root once made the database URL name another
    file (beside the root, created empty); read-only, that file was written."""
    odd = work / "models #1?x=%20"
    shutil.copytree(work / "repository", odd)
    beside = sorted(os.listdir(work))
    assert [v["version"] for v in models_json(work, "log", "m", root=odd)] == [1]
    result = ok(run(*models("log", "m", "--repository", odd, "--json"), cwd=work, root=odd))
    assert [v["version"] for v in json.loads(result.stdout)] == [1]
    assert sorted(os.listdir(work)) == beside
