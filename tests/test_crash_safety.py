"""Crash safety: a process killed (SIGKILL) at any point of a pack or of an
``archive_location`` exit-repack leaves the complete old or the complete new
archive, and the next successful write removes leftover ``.partial`` files.

The victims are real subprocesses working on ~60 MB trees; kill points are
chosen from phase markers the victim prints (progress callbacks) plus a
spread of delays, so every run kills while hashing, while writing and
between writes.
"""
import asyncio
import dataclasses
import hashlib
import json
import os
import pathlib
import queue
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import dffml_archive as da
from dffml_archive import archive_location

from _e2e_helpers import without_root_override
from _helpers import subprocess_env

REPO = pathlib.Path(__file__).resolve().parent.parent
FILES_PER_TREE = 3
FILE_SIZE = 20_000_000  # 3 x 20 MB = 60 MB per tree


def digests(root) -> dict:
    root = pathlib.Path(root)
    result = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        result[relative] = (
            None if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        )
    return result


def one_file_tree(root: pathlib.Path, text: str) -> pathlib.Path:
    """A directory holding one small file, ``f``."""
    root.mkdir()
    (root / "f").write_text(text)
    return root

def partials(directory, archive_name) -> list:
    return sorted(
        name
        for name in os.listdir(directory)
        if name.startswith(f".{archive_name}.") and name.endswith(".partial")
    )


@dataclasses.dataclass
class Trees:
    a: pathlib.Path
    b: pathlib.Path
    a_digests: dict
    b_digests: dict

    def which(self, found: dict) -> str:
        if found == self.a_digests:
            return "A"
        if found == self.b_digests:
            return "B"
        raise AssertionError("the archive holds neither the complete old nor the complete new tree")


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> Trees:
    base = tmp_path_factory.mktemp("crash-trees")
    made = []
    for label in ("a", "b"):
        root = base / label
        (root / "weights").mkdir(parents=True)
        for index in range(FILES_PER_TREE):
            (root / "weights" / f"layer{index}.bin").write_bytes(os.urandom(FILE_SIZE))
        (root / "config.json").write_text(f'{{"tree": "{label}"}}')
        made.append(root)
    return Trees(made[0], made[1], digests(made[0]), digests(made[1]))


class Victim:
    """A subprocess whose stdout lines are collected by a thread, so that
    waiting for a marker can time out."""

    def __init__(self, script, *args):
        self.process = subprocess.Popen(
            [sys.executable, "-c", script, *map(str, args)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def wait_for(self, prefix, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                pytest.fail(f"no {prefix!r} marker within {timeout}s; saw {self.seen[-5:]}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                error = self.process.stderr.read()
                pytest.fail(f"victim exited before {prefix!r}: {self.seen[-5:]}\n{error}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        self.process.stdout.close()
        self.process.stderr.close()
        return self.process.returncode


PACK_LOOP = textwrap.dedent(
    """
    import asyncio, sys
    import dffml_archive as da

    async def main(first, second, archive, level=None):
        sources = [first, second]
        level = None if level is None else int(level)
        round = 0
        while True:
            phase = [None]

            def progress(done, total):
                if not total:
                    return
                now = "hash" if done < total / 2 else "write"
                if now != phase[0]:
                    phase[0] = now
                    print(now, round, flush=True)

            print("start", round, flush=True)
            await da.pack(sources[round % 2], archive, progress=progress, level=level)
            print("done", round, flush=True)
            round += 1

    asyncio.run(main(*sys.argv[1:]))
    """
)

# (marker to wait for, extra delay after it)
PACK_KILL_POINTS = [
    ("hash", 0.0),
    ("write", 0.0),
    ("write", 0.08),
    ("done", 0.0),
    ("start", 0.05),
    ("start", 0.7),
    ("start", 1.5),
]


async def test_sigkill_during_pack_leaves_old_or_new_archive(tmp_path, trees):
    archive = tmp_path / "model.tar.gz"
    await da.pack(trees.a, archive)
    outcomes = []
    after = "A"
    for marker, delay in PACK_KILL_POINTS:
        before = after
        # Always pack the other tree first, so a finished pack changes content.
        first, second = (trees.b, trees.a) if before == "A" else (trees.a, trees.b)
        victim = Victim(PACK_LOOP, first, second, archive)
        victim.wait_for(marker)
        if delay:
            time.sleep(delay)
        returncode = victim.kill()
        assert returncode == -signal.SIGKILL, f"victim ended on its own: {victim.seen}"
        manifest = await da.verify(archive)
        after = trees.which({m.path: m.sha256 for m in manifest.members})
        outcomes.append((marker, delay, before, after, len(partials(tmp_path, archive.name))))
        # Only the archive and (maybe) partials of it are in the directory.
        assert {n for n in os.listdir(tmp_path) if n != "cache"} - {archive.name} == set(
            partials(tmp_path, archive.name)
        )
    assert any(after != before for _, _, before, after, _ in outcomes), outcomes
    # A later successful pack removes every leftover.
    await da.pack(trees.b, archive)
    assert partials(tmp_path, archive.name) == []
    assert trees.which({m.path: m.sha256 for m in (await da.verify(archive)).members}) == "B"


async def test_sigkill_while_writing_leaves_old_archive_and_a_partial_that_is_cleaned_up(
    tmp_path, trees
):
    """Deterministic mid-write kill: xz at level 0 writes ~60 MB slowly, so
    the kill surely lands after the temp file was created and before the
    rename."""
    small = tmp_path / "small"
    small.mkdir()
    (small / "f").write_text("old content")
    archive = tmp_path / "model.tar.xz"
    await da.pack(small, archive)
    old_bytes = archive.read_bytes()
    victim = Victim(PACK_LOOP, trees.a, trees.b, archive, 0)
    victim.wait_for("write")
    assert partials(tmp_path, archive.name), "the new archive is written beside the target"
    assert victim.kill() == -signal.SIGKILL
    assert archive.read_bytes() == old_bytes
    await da.verify(archive)
    leftovers = partials(tmp_path, archive.name)
    assert len(leftovers) == 1, leftovers
    (small / "f").write_text("new content")
    await da.pack(small, archive)
    assert partials(tmp_path, archive.name) == []
    destination = tmp_path / "dest"
    await da.extract(archive, destination)
    assert (destination / "f").read_text() == "new content"


LOCATION_REPACK = textwrap.dedent(
    """
    import asyncio, os, shutil, sys
    from dffml_archive import archive_location

    async def main(archive, source):
        async with archive_location(archive) as copy:
            for entry in os.scandir(copy.directory):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            shutil.copytree(source, copy.directory, dirs_exist_ok=True)
            print("leaving", flush=True)
        print("left", flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)

LOCATION_KILL_DELAYS = [0.0, 0.15, 0.3, 0.6]


async def test_sigkill_during_location_repack_leaves_old_or_new_archive(tmp_path, trees):
    archive = tmp_path / "model.tar.gz"
    await da.pack(trees.a, archive)
    outcomes = []
    after = "A"
    for delay in LOCATION_KILL_DELAYS:
        before = after
        source = trees.b if before == "A" else trees.a
        victim = Victim(LOCATION_REPACK, archive, source)
        victim.wait_for("leaving")
        time.sleep(delay)
        victim.kill()
        manifest = await da.verify(archive)
        after = trees.which({m.path: m.sha256 for m in manifest.members})
        outcomes.append((delay, before, after, "left" in victim.seen))
        # The shared cache must not serve the victim's half-saved tree.
        async with archive_location(archive) as copy:
            assert digests(copy.directory) == {
                m.path: m.sha256 for m in manifest.members
            }, outcomes
        assert archive.exists()
    # A later successful save removes every leftover and is complete.
    async with archive_location(archive) as copy:
        (copy.directory / "config.json").write_text('{"tree": "final"}')
    assert partials(tmp_path, archive.name) == []
    manifest = await da.verify(archive)
    final = {m.path: m.sha256 for m in manifest.members}
    assert final["config.json"] == hashlib.sha256(b'{"tree": "final"}').hexdigest()


# --------------------------------------------------------------------------
# deterministic atomic-write properties


async def test_cancelled_pack_leaves_old_archive_and_no_partial(tmp_path, trees):
    archive = tmp_path / "model.tar.xz"
    small = tmp_path / "small"
    small.mkdir()
    (small / "f").write_text("old")
    await da.pack(small, archive)
    before_bytes_digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    writing = asyncio.Event()

    def progress(done, total):
        if total and done > 0.5 * total:
            writing.set()

    # xz level 0 writes ~60 MB slowly: the cancel lands mid-write.
    task = asyncio.ensure_future(da.pack(trees.b, archive, progress=progress, level=0))
    await asyncio.wait_for(writing.wait(), 60)
    assert partials(tmp_path, archive.name), "the new archive is written beside the target"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == before_bytes_digest
    assert partials(tmp_path, archive.name) == []


async def test_stale_partials_are_removed_by_the_next_successful_write(tmp_path):
    source = one_file_tree(tmp_path / "src", "f")
    archive = tmp_path / "model.tar.gz"
    stale = [tmp_path / ".model.tar.gz.a1b2c3d4.partial", tmp_path / ".model.tar.gz.zz_9x8y7.partial"]
    for path in stale:
        path.write_bytes(b"half an archive")
    unrelated = [
        tmp_path / "model.tar.gz.partial",  # no leading dot: not ours
        tmp_path / ".model.tar.gz.notes",  # not a partial
        tmp_path / ".other.zip.a1b2c3d4.partial",  # another archive's
    ]
    for path in unrelated:
        path.write_bytes(b"keep me")
    await da.pack(source, archive)
    assert [path for path in stale if path.exists()] == []
    assert [path for path in unrelated if not path.exists()] == []


async def test_partial_of_a_longer_named_archive_is_not_removed(tmp_path):
    """``model.tar`` and ``model.tar.gz`` are different archives with
    different locks: packing one must not delete the other's temp file,
    which may belong to a live writer in another process."""
    source = one_file_tree(tmp_path / "src", "f")
    other_writer = tmp_path / ".model.tar.gz.q7w8e9r0.partial"
    other_writer.write_bytes(b"another process is writing model.tar.gz")
    await da.pack(source, tmp_path / "model.tar")
    assert other_writer.exists(), "packing model.tar deleted model.tar.gz's temp file"


async def test_concurrent_packs_in_one_process_do_not_break_each_other(tmp_path, trees):
    """Two packs of the same archive from one process (two tasks, e.g. two
    dataflow operations): the lock must serialize them, and one writer's
    clean-up of stale partials must never delete the other's live temp file."""
    archive = tmp_path / "model.tar.gz"
    small = tmp_path / "small"
    small.mkdir()
    (small / "f").write_text("small")
    big = asyncio.ensure_future(da.pack(trees.a, archive))
    small_packs = 0
    while not big.done() and small_packs < 500:
        await da.pack(small, archive)
        small_packs += 1
    await asyncio.gather(big, return_exceptions=True)
    assert big.exception() is None, repr(big.exception())
    found = {m.path: m.sha256 for m in (await da.verify(archive)).members}
    assert found in (trees.a_digests, digests(small))
    assert partials(tmp_path, archive.name) == []


async def test_rewrite_keeps_the_archive_permissions(tmp_path):
    source = one_file_tree(tmp_path / "src", "f")
    archive = tmp_path / "model.zip"
    old_umask = os.umask(0o022)
    try:
        await da.pack(source, archive)
        assert archive.stat().st_mode & 0o777 == 0o644
        os.chmod(archive, 0o600)
        (source / "f").write_text("changed")
        await da.pack(source, archive)
        assert archive.stat().st_mode & 0o777 == 0o600
        async with archive_location(archive) as copy:
            (copy.directory / "g").write_text("g")
        assert archive.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old_umask)


_SAVE_THAT_DOES_NOT_FIT = textwrap.dedent(
    """
    import asyncio, json, os, resource, signal, sys
    import dffml_archive

    async def main(archive):
        async with dffml_archive.archive_location(archive) as copy:
            (copy.directory / "weights.bin").write_bytes(os.urandom(2 << 20))
            copy.model = {"entrypoint": "slr_archive", "config": {"note": "kept"}}
            # From here no file may grow past 1 MiB: the archive cannot be written
            # (EFBIG, as a full disk gives ENOSPC), the tree already is.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    try:
        asyncio.run(main(sys.argv[1]))
    except dffml_archive.ArchiveWriteError as error:
        print(json.dumps({"error": str(error), "type": type(error).__name__}))
    """
)


def test_a_save_that_does_not_fit_keeps_the_model_and_says_how_to_save_it(tmp_path):
    archive = tmp_path / "model.tar"
    stale = tmp_path / ".model.tar.k1l2m3n4.partial"  # a killed writer's, 1 MiB
    stale.write_bytes(bytes(1 << 20))
    child = subprocess.run(
        [sys.executable, "-c", _SAVE_THAT_DOES_NOT_FIT, str(archive)],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    message = report["error"]
    assert report["type"] == "ArchiveWriteError"
    assert "model.tar: cannot write the archive" in message and "previous archive" in message
    assert not archive.exists() and partials(tmp_path, archive.name) == []
    assert not stale.exists(), "a killed writer's leftover must go before writing"
    # The message names the kept directory and the command that saves it.
    command = message.split("then save it with: ", 1)[1].rstrip(")")
    kept = pathlib.Path(shlex.split(command)[4])
    assert "kept at" in message and str(kept) in message
    assert (kept / "weights.bin").stat().st_size == 2 << 20
    assert shlex.split(command)[:4] == ["python", "-m", "dffml_archive", "pack"]
    saved = subprocess.run([sys.executable, *shlex.split(command)[1:]],
                           capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert saved.returncode == 0, saved.stderr
    manifest = asyncio.run(da.verify(archive))
    assert [m.path for m in manifest.members] == ["weights.bin"]
    assert manifest.model == {"entrypoint": "slr_archive", "config": {"note": "kept"}}


def test_a_read_only_archive_is_not_replaced(tmp_path):
    source = one_file_tree(tmp_path / "src", "new\n")
    archive = tmp_path / "model.zip"
    asyncio.run(da.pack(tmp_path / "src", archive))
    before = archive.read_bytes()
    (source / "f").write_text("newer\n")
    archive.chmod(0o444)
    result = subprocess.run(
        [*without_root_override(), sys.executable, "-m", "dffml_archive", "pack", str(source),
         str(archive)],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )
    assert result.returncode == 1
    assert "model.zip: is read-only" in result.stderr and "chmod u+w" in result.stderr
    assert archive.read_bytes() == before
    assert partials(tmp_path, archive.name) == []


async def test_a_symbolic_link_to_an_archive_stays_a_link(tmp_path):
    source = one_file_tree(tmp_path / "src", "v1\n")
    target = tmp_path / "v1.tar.gz"
    await da.pack(source, target)
    link = tmp_path / "current.tar.gz"
    link.symlink_to(target.name)
    async with archive_location(link) as copy:
        (copy.directory / "f").write_text("v1, retrained\n")
    assert link.is_symlink() and os.readlink(link) == target.name
    extracted = tmp_path / "out"
    await da.extract(target, extracted)
    assert (extracted / "f").read_text() == "v1, retrained\n"
    assert partials(tmp_path, link.name) == [] and partials(tmp_path, target.name) == []


_ENTER_WITH_A_FULL_CACHE = textwrap.dedent(
    """
    import asyncio, json, resource, signal, sys
    import dffml_archive

    async def main(archive):
        async with dffml_archive.archive_location(archive):
            pass

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # no file past 1 MiB
    try:
        asyncio.run(main(sys.argv[1]))
    except dffml_archive.DestinationError as error:
        print(json.dumps({"error": str(error)}))
    """
)


async def test_a_full_cache_is_named_as_the_cache(tmp_path):
    source = tmp_path / "src"
    (source / "weights").mkdir(parents=True)
    (source / "weights" / "w.bin").write_bytes(os.urandom(2 << 20))
    archive = tmp_path / "model.tar.gz"
    await da.pack(source, archive)
    child = subprocess.run(
        [sys.executable, "-c", _ENTER_WITH_A_FULL_CACHE, str(archive)],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )
    assert child.returncode == 0, child.stderr
    message = json.loads(child.stdout.strip().splitlines()[-1])["error"]
    assert "member 'weights/w.bin'" in message and "the extraction cache is in" in message
    assert "DFFML_ARCHIVE_CACHE" in message
    assert ".extracting" not in message and "damaged" not in message


async def test_another_user_s_partial_is_left_alone_and_blocks_nothing(tmp_path):
    """A sticky shared directory: the file is theirs (maybe a live write)."""
    source = one_file_tree(tmp_path / "src", "f")
    theirs = tmp_path / ".model.zip.a1b2c3d4.partial"
    theirs.write_bytes(b"another user's write")
    os.chown(theirs, 12345, 12345)
    await da.pack(source, tmp_path / "model.zip")
    assert theirs.read_bytes() == b"another user's write"
    assert [m.path for m in (await da.verify(tmp_path / "model.zip")).members] == ["f"]


async def test_a_link_into_the_directory_being_packed_is_refused(tmp_path):
    source = tmp_path / "d"
    source.mkdir()
    (source / "f").write_text("f")
    link = tmp_path / "link.tar.gz"
    link.symlink_to(source / "out.tar.gz")
    with pytest.raises(da.ArchiveSourceError, match="inside"):
        await da.pack(source, link)
    assert sorted(os.listdir(source)) == ["f"]
