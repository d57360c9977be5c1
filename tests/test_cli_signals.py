"""The command lines when something outside them happens: a SIGTERM, a lock
held by another process, a warning.

* ``python -m dffml_archive extract|pack`` handles SIGTERM like Ctrl-C: the
  staging directory or the partial archive is removed, the destination or
  the previous archive is left as it was, one ``error:`` line, exit 143;
* a command waiting for an archive's lock says so (once, one line, naming
  the archive and the lock file) while it waits;
* our warnings print as one ``warning:`` line on the ``dffml`` command line,
  without Python's ``file:line: Category:`` and source line; other
  libraries' warnings are left as Python prints them.
"""
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from _e2e_helpers import DFFML, write_csv
from _helpers import read_tree, subprocess_env

TIMEOUT = 120
BIG = 200_000_000


def start(command) -> subprocess.Popen:
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=subprocess_env(),
    )


def start_cli(*args, front=None) -> subprocess.Popen:
    """``python -m dffml_archive ARGS``, or through ``front`` (a command
    prefix, such as ``dffml service archive``)."""
    prefix = front or [sys.executable, "-m", "dffml_archive"]
    return start([*prefix, *map(str, args)])


FRONTS = {"python-m": None, "dffml-service": [DFFML, "service", "archive"]}


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> dict:
    """200 MB of random data, as a directory and as a .tar: made once."""
    root = tmp_path_factory.mktemp("big")
    (root / "src").mkdir()
    with open(root / "src" / "big.bin", "wb") as handle:
        for _ in range(BIG // (1 << 20)):
            handle.write(os.urandom(1 << 20))
    archive = root / "big.tar"
    packed = subprocess.run([sys.executable, "-m", "dffml_archive", "pack", str(root / "src"),
                             str(archive)], capture_output=True, text=True,
                            env=dict(subprocess_env(), DFFML_ARCHIVE_CACHE=str(root / "cache")),
                            timeout=TIMEOUT)
    assert packed.returncode == 0, packed.stderr
    return {"src": root / "src", "tar": archive}


def wait_for_entry(directory: pathlib.Path, pattern: str, process: subprocess.Popen) -> str:
    """The first entry of ``directory`` matching ``pattern``, as soon as it
    appears (failing if the process ends first)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for name in os.listdir(directory):
            if re.fullmatch(pattern, name):
                return name
        if process.poll() is not None:
            pytest.fail(f"exited {process.returncode} before {pattern!r} appeared: "
                        f"{process.stderr.read()}")
        time.sleep(0.001)
    pytest.fail(f"{pattern!r} never appeared in {directory}")


def terminated(process: subprocess.Popen) -> str:
    """SIGTERM it; it must exit 143 with one error line: that line."""
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 143, f"rc={process.returncode}\n{stderr}"
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: terminated"), stderr
    return lines[0]


# -- SIGTERM -------------------------------------------------------------------------


@pytest.mark.parametrize("front", sorted(FRONTS))
@pytest.mark.parametrize("replace", [False, True], ids=["new-destination", "replace"])
def test_sigterm_during_extract_removes_the_staging_directory(tmp_path, big, replace, front):
    destination = tmp_path / "dest"
    if replace:
        destination.mkdir()
        (destination / "old.txt").write_text("old\n")
    before = sorted(os.listdir(tmp_path))
    process = start_cli("extract", big["tar"], destination, *(["--replace"] if replace else []),
                        front=FRONTS[front])
    wait_for_entry(tmp_path, r"\.dest\..+\.extracting", process)
    terminated(process)
    assert sorted(os.listdir(tmp_path)) == before, "a staging directory was left behind"
    if replace:
        assert read_tree(destination) == {"old.txt": b"old\n"}


def test_sigterm_during_pack_keeps_the_previous_archive_and_no_partial(tmp_path, big):
    small = tmp_path / "small"
    small.mkdir()
    (small / "f.txt").write_text("previous\n")
    archive = tmp_path / "m.tar.xz"  # xz: slow enough to be caught while writing
    assert start_cli("pack", small, archive).wait(TIMEOUT) == 0
    previous = archive.read_bytes()
    process = start_cli("pack", big["src"], archive)
    wait_for_entry(tmp_path, r"\.m\.tar\.xz\..+\.partial", process)
    terminated(process)
    assert sorted(os.listdir(tmp_path)) == ["cache", "m.tar.xz", "small"]
    assert archive.read_bytes() == previous


# -- waiting for a lock ------------------------------------------------------------------

#: Holds ``archive_location(argv[1])`` open until its stdin closes.
HOLDER = """
import asyncio, sys
import dffml_archive

async def main():
    async with dffml_archive.archive_location(sys.argv[1]):
        print("held", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def stderr_lines(process: subprocess.Popen):
    """A queue that gets each stderr line as it is written, and the thread
    that fills it (it ends with the process)."""
    lines = queue.Queue()

    def pump():
        for line in process.stderr:
            lines.put(line.rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def check_it_says_it_waits_while_it_waits(archive, cache, command) -> subprocess.Popen:
    """Run ``command`` while another process holds ``archive``'s lock: its
    first stderr line, while it still waits, names the archive and the lock
    file.  Returns the finished process (stderr lines in ``.lines``)."""
    holder = start([sys.executable, "-c", HOLDER, str(archive)])
    assert holder.stdout.readline().strip() == "held", holder.stderr.read()
    waiter = start(command)
    lines, pump = stderr_lines(waiter)
    try:
        first = lines.get(timeout=30)
    finally:
        still_waiting = waiter.poll() is None
        holder.stdin.close()
        assert holder.wait(TIMEOUT) == 0
    assert still_waiting, "it said nothing until the lock was free"
    lock_files = list((cache / "locks").glob("*.lock"))
    assert len(lock_files) == 1
    assert first.startswith("warning: ") and str(archive) in first, first
    assert "waiting" in first and str(lock_files[0]) in first, first
    waiter.wait(TIMEOUT)
    pump.join(TIMEOUT)
    waiter.lines = [first, *lines.queue]
    return waiter


def test_dffml_predict_says_that_it_waits_for_the_lock(tmp_path):
    write_csv(tmp_path / "train.csv", [{"x": float(x), "y": 2.0 * x + 1} for x in range(10)])
    write_csv(tmp_path / "query.csv", [{"x": 2.5}])
    archive = tmp_path / "slr.tar.gz"
    trained = subprocess.run(
        [DFFML, "train", "-model", "slr_archive", "-model-features", "x:float:1",
         "-model-predict", "y:float:1", "-model-location", str(archive),
         "-sources", "f=csv", "-source-filename", str(tmp_path / "train.csv")],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert trained.returncode == 0, trained.stderr
    waiter = check_it_says_it_waits_while_it_waits(archive, tmp_path / "cache", [
        DFFML, "predict", "all", "-model", "slr_archive", "-model-location", str(archive),
        "-sources", "f=csv", "-source-filename", str(tmp_path / "query.csv"),
    ])
    assert waiter.returncode == 0, waiter.lines
    assert len(waiter.lines) == 1, waiter.lines  # said once, in one line
    prediction = json.loads(waiter.stdout.read())[0]["prediction"]
    assert prediction["y"]["value"] == pytest.approx(6.0)


def test_pack_says_that_it_waits_for_the_lock(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "f.txt").write_text("new\n")
    archive = tmp_path / "m.zip"
    waiter = check_it_says_it_waits_while_it_waits(
        archive, tmp_path / "cache",
        [sys.executable, "-m", "dffml_archive", "pack", str(source), str(archive)],
    )
    assert waiter.returncode == 0, waiter.lines
    assert len(waiter.lines) == 1, waiter.lines
    assert archive.is_file()


# -- our warnings on the dffml command line ------------------------------------------------


def test_a_foreign_archive_warns_in_one_line_under_dffml(tmp_path):
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("GNU tar is not installed")
    write_csv(tmp_path / "train.csv", [{"x": float(x), "y": 2.0 * x + 1} for x in range(10)])
    write_csv(tmp_path / "query.csv", [{"x": 2.5}])
    options = ["-model", "slr_archive", "-model-features", "x:float:1",
               "-model-predict", "y:float:1"]
    trained = subprocess.run(
        [DFFML, "train", *options, "-model-location", str(tmp_path / "plain"),
         "-sources", "f=csv", "-source-filename", str(tmp_path / "train.csv")],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert trained.returncode == 0, trained.stderr
    foreign = tmp_path / "foreign.tar.gz"  # made by another tool: no manifest
    subprocess.run([tar, "czf", str(foreign), "-C", str(tmp_path / "plain"), "."], check=True)
    result = subprocess.run(
        [DFFML, "predict", "all", *options, "-model-location", str(foreign),
         "-sources", "f=csv", "-source-filename", str(tmp_path / "query.csv")],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"warning: {foreign}: no dffml-archive manifest"), lines[0]
    assert "UnverifiedArchiveWarning" not in result.stderr  # no file:line: Category:
    assert json.loads(result.stdout)[0]["prediction"]["y"]["value"] == pytest.approx(6.0)


#: In a process that calls itself dffml: one of our warnings and another's.
TWO_WARNINGS = """
import sys, warnings
sys.argv[0] = "dffml"
from dffml_archive._dffml_cli import install_one_line_errors
from dffml_archive import ArchiveLockWaitWarning
install_one_line_errors()
warnings.warn(ArchiveLockWaitWarning("m.zip: ours"))
warnings.warn(UserWarning("theirs"))
"""


def test_only_our_warnings_are_shortened():
    result = subprocess.run([sys.executable, "-c", TWO_WARNINGS], capture_output=True,
                            text=True, env=subprocess_env(), timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "warning: m.zip: ours", result.stderr
    assert lines[1].endswith("UserWarning: theirs"), result.stderr  # as Python prints it
    assert not lines[1].startswith("warning:"), result.stderr
