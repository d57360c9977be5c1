"""Reading a model never depends on being able to write it.

* ``predict`` under another umask than the one the archive was extracted
  under leaves the archive alone (bytes and modification time);
* ``predict`` and ``accuracy`` on an archive that cannot be written (a
  read-only file, a read-only directory, a read-only mount) print their
  result and exit 0; state the backend changed (scikit stores the
  confidence measured by ``accuracy``) is not kept, which one ``warning:``
  line says, with a hint that fits the cause, and no ``rescued-*``
  directory is left;
* ``train`` on a read-only mount still fails before training.

Everything runs through the real ``dffml`` command line.  The read-only
mount is a real bind mount in a private mount namespace (``unshare``).
"""
import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import dffml_archive as da

from _e2e_helpers import DFFML, CLI_TIMEOUT, without_root_override, write_csv

TRAIN = [{"x": float(x), "y": 2.0 * x + 1.0} for x in range(10)]
QUERY = [{"x": 2.5}]
SLR = ["-model", "slr_archive", "-model-features", "x:float:1", "-model-predict", "y:float:1"]
SCIKIT = ["-model", "scikitlr_archive", "-model-features", "x:float:1",
          "-model-predict", "y:float:1"]
CAUSES = ("file", "directory", "mount")


@pytest.fixture
def work(tmp_path) -> pathlib.Path:
    """train.csv and query.csv, and ``models/`` (the folder made read-only)."""
    path = tmp_path / "work"
    (path / "models").mkdir(parents=True)
    write_csv(path / "train.csv", TRAIN)
    write_csv(path / "query.csv", QUERY)
    return path


def read_only_mount_prefix(directory: pathlib.Path) -> list:
    """Run the command with ``directory`` bind-mounted read-only over itself."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: cannot make a read-only mount")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    script = 'mount -o bind,ro "$1" "$1" && shift && exec "$@"'
    return ["unshare", "-rm", "sh", "-c", script, "sh", str(directory)]


def dffml(*args, cwd, umask=None, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, DFFML, *map(str, args)], cwd=str(cwd), capture_output=True, text=True,
        timeout=CLI_TIMEOUT, preexec_fn=None if umask is None else lambda: os.umask(umask),
    )


def ok(result) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def identity(path: pathlib.Path):
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, st.st_ino


def rescued(cache: pathlib.Path) -> list:
    return sorted(path.name for path in cache.glob("rescued-*")) if cache.is_dir() else []


def lines_about(stderr: str, archive_name: str) -> list:
    """Our lines on stderr (the backends log lines of their own)."""
    return [line for line in stderr.splitlines() if archive_name in line]


@pytest.fixture
def read_only(work):
    """make(cause) makes ``models/`` or the archive in it read-only and gives
    the command prefix that runs under it; everything is writable again
    after the test."""
    models = work / "models"

    def make(cause: str, archive: pathlib.Path) -> list:
        if cause == "mount":
            return read_only_mount_prefix(models)
        (archive if cause == "file" else models).chmod(0o444 if cause == "file" else 0o555)
        return without_root_override()

    yield make
    models.chmod(0o755)
    for path in models.iterdir():
        path.chmod(0o644)


# -- the umask ----------------------------------------------------------------


@pytest.mark.parametrize("trained_under, read_under", [(0o022, 0o077), (0o077, 0o022)],
                         ids=["umask-022-then-077", "umask-077-then-022"])
def test_predict_under_another_umask_leaves_the_archive_alone(work, trained_under, read_under):
    archive = work / "models" / "slr.tar.gz"
    ok(dffml("train", *SLR, "-model-location", archive, "-sources", "f=csv",
             "-source-filename", "train.csv", cwd=work, umask=trained_under))
    before = identity(archive)
    for _ in range(2):
        result = ok(dffml("predict", "all", "-model", "slr_archive", "-model-location", archive,
                          "-sources", "f=csv", "-source-filename", "query.csv",
                          cwd=work, umask=read_under))
        assert json.loads(result.stdout)[0]["prediction"]["y"]["value"] == pytest.approx(6.0)
        assert identity(archive) == before, "reading the model rewrote its archive"


def test_predict_keeps_the_versions_of_the_training(work):
    """What docs/models.rst says: other versions than the recorded ones are
    no reason to rewrite the archive when only reading it."""
    archive = work / "models" / "slr.tar.gz"
    ok(dffml("train", *SLR, "-model-location", archive, "-sources", "f=csv",
             "-source-filename", "train.csv", cwd=work))

    async def record_old_versions():
        async with da.archive_location(archive) as copy:
            copy.model = dict(copy.model, versions={"dffml": "0.0.1", "python": "3.0"})

    asyncio.run(record_old_versions())
    before = identity(archive)
    ok(dffml("predict", "all", "-model", "slr_archive", "-model-location", archive,
             "-sources", "f=csv", "-source-filename", "query.csv", cwd=work))
    assert identity(archive) == before


# -- read-only archives ----------------------------------------------------------


@pytest.mark.parametrize("cause", CAUSES)
def test_predict_from_a_read_only_archive_under_another_umask(work, read_only, cause):
    archive = work / "models" / "slr.tar.gz"
    ok(dffml("train", *SLR, "-model-location", archive, "-sources", "f=csv",
             "-source-filename", "train.csv", cwd=work, umask=0o022))
    before = identity(archive)
    prefix = read_only(cause, archive)
    result = ok(dffml("predict", "all", "-model", "slr_archive", "-model-location", archive,
                      "-sources", "f=csv", "-source-filename", "query.csv",
                      cwd=work, umask=0o077, prefix=prefix))
    assert json.loads(result.stdout)[0]["prediction"]["y"]["value"] == pytest.approx(6.0)
    assert lines_about(result.stderr, archive.name) == []  # nothing changed: nothing to say
    assert identity(archive) == before
    assert rescued(work.parent / "cache") == []


#: What the one warning line must say (and must not) for each cause.
HINTS = {
    "file": (["the archive is read-only", "chmod u+w"], []),
    "directory": (["is not writable", "chmod u+w", "models"], []),
    "mount": (["read-only file system"], ["chmod"]),
}


@pytest.mark.parametrize("cause", CAUSES)
def test_accuracy_on_a_read_only_scikit_archive_prints_the_score_and_warns_once(
    work, read_only, cause
):
    archive = work / "models" / "lr.zip"
    ok(dffml("train", *SCIKIT, "-model-location", archive, "-sources", "f=csv",
             "-source-filename", "train.csv", cwd=work))
    before = identity(archive)
    prefix = read_only(cause, archive)
    wanted, unwanted = HINTS[cause]
    for _ in range(2):  # each run: the score, one warning, nothing left behind
        result = ok(dffml("accuracy", "-model", "scikitlr_archive", "-model-location", archive,
                          "-sources", "f=csv", "-source-filename", "train.csv",
                          cwd=work, prefix=prefix))
        assert float(result.stdout.strip()) == pytest.approx(1.0)
        ours = lines_about(result.stderr, archive.name)
        assert len(ours) == 1, result.stderr
        assert ours[0].startswith("warning: ") and "was not updated" in ours[0], ours[0]
        for fragment in wanted:
            assert fragment in ours[0], (fragment, ours[0])
        for fragment in unwanted:
            assert fragment not in ours[0], (fragment, ours[0])
        assert identity(archive) == before
        assert rescued(work.parent / "cache") == []
        assert sorted(os.listdir(work / "models")) == [archive.name]
    result = ok(dffml("predict", "all", "-model", "scikitlr_archive", "-model-location",
                      archive, "-sources", "f=csv", "-source-filename", "query.csv",
                      cwd=work, prefix=prefix))
    assert json.loads(result.stdout)[0]["prediction"]["y"]["value"] == pytest.approx(6.0)


def test_training_on_a_read_only_mount_fails_before_training(work):
    archive = work / "models" / "lr.zip"
    ok(dffml("train", *SCIKIT, "-model-location", archive, "-sources", "f=csv",
             "-source-filename", "train.csv", cwd=work))
    before = identity(archive)
    result = dffml("train", *SCIKIT, "-model-location", archive, "-sources", "f=csv",
                   "-source-filename", "train.csv", cwd=work,
                   prefix=read_only_mount_prefix(work / "models"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "could not be saved here" in line, line
    assert identity(archive) == before
    assert rescued(work.parent / "cache") == []


# -- the same through the API: WorkingCopy.best_effort ------------------------------


async def test_a_best_effort_session_leaves_a_read_only_archive_and_warns(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "state.json").write_text('{"confidence": null}')
    archive = tmp_path / "model.zip"
    await da.pack(tmp_path / "src", archive)
    archive.chmod(0o444)  # refused to root as well (no write bit at all)
    before = identity(archive)
    with pytest.warns(da.ArchiveNotUpdatedWarning, match="the archive is read-only.*chmod u"):
        async with da.archive_location(archive) as copy:
            (copy.directory / "state.json").write_text('{"confidence": 1.0}')
            copy.best_effort = True
    assert identity(archive) == before
    assert rescued(tmp_path / "cache") == []
    async with da.archive_location(archive) as copy:  # not a stale cached tree
        assert (copy.directory / "state.json").read_text() == '{"confidence": null}'


#: A best-effort session whose save fails only while writing: files may
#: not grow past 64 KiB once the tree is written (EFBIG; a full disk gives
#: ENOSPC the same way).
_SAVE_THAT_DOES_NOT_FIT = """
import asyncio, os, resource, signal, sys, warnings
import dffml_archive

async def main(archive):
    async with dffml_archive.archive_location(archive) as copy:
        (copy.directory / "weights.bin").write_bytes(os.urandom(1 << 20))
        copy.best_effort = True
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("ignore")
    warnings.simplefilter("always", dffml_archive.ArchiveWarning)
    asyncio.run(main(sys.argv[1]))
for warning in caught:
    print(warning.category.__name__, warning.message)
"""


def test_a_best_effort_save_that_fails_while_writing_warns_and_keeps_nothing(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "weights.bin").write_bytes(b"old")
    archive = tmp_path / "model.tar"
    asyncio.run(da.pack(tmp_path / "src", archive))
    before = identity(archive)
    child = subprocess.run(
        [sys.executable, "-c", _SAVE_THAT_DOES_NOT_FIT, str(archive)],
        capture_output=True, text=True, timeout=CLI_TIMEOUT,
    )
    assert child.returncode == 0, child.stderr
    lines = child.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ArchiveNotUpdatedWarning "), child.stdout
    assert "model.tar: was not updated (cannot write the archive" in lines[0], lines[0]
    assert identity(archive) == before
    assert rescued(tmp_path / "cache") == []
    assert sorted(os.listdir(tmp_path)) == ["cache", "model.tar", "src"]
