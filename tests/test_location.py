"""``archive_location``: extract on enter, repack on a clean exit only when
something changed, byte-identical archive after an exception, nesting, the
inter-process lock and the verified extraction cache.

Everything runs against real files and, for the locking tests, real
processes.  The ``private_cache`` fixture (conftest.py) gives every test its
own ``DFFML_ARCHIVE_CACHE``; subprocesses inherit it through the environment.
"""
import asyncio
import hashlib
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

import dffml_archive as da
from dffml_archive import archive_location
from _helpers import read_tree, subprocess_env

REPO = pathlib.Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------
# helpers


def identity(path) -> tuple:
    """What changes when a file is rewritten (atomic replace: new inode)."""
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ["DFFML_ARCHIVE_CACHE"])


async def archive_members(archive) -> dict:
    """Path -> sha256 (None for directories) from the archive's manifest,
    after verifying every member against it."""
    manifest = await da.verify(archive)
    return {member.path: member.sha256 for member in manifest.members}


def tree_digests(root) -> dict:
    return {
        path: (None if data is None else sha256(data))
        for path, data in read_tree(root).items()
    }


@pytest.fixture
def no_extract_cache(monkeypatch):
    monkeypatch.setenv("DFFML_ARCHIVE_EXTRACT_CACHE", "0")


@pytest.fixture(params=["cache", "no-cache"])
def cache_mode(request, monkeypatch):
    """Run a test with the extraction cache on and off."""
    monkeypatch.setenv(
        "DFFML_ARCHIVE_EXTRACT_CACHE", "1" if request.param == "cache" else "0"
    )
    return request.param


@pytest.fixture
async def packed(tmp_path, model_tree):
    """model_tree packed into an archive."""
    archive = tmp_path / "model.tar.gz"
    await da.pack(model_tree, archive)
    return archive


# --------------------------------------------------------------------------
# new archives


@pytest.mark.parametrize("extension", [".tar.gz", ".zip", ".tar.zst", ".tar"])
async def test_new_location_is_packed_on_exit(tmp_path, cache_mode, extension):
    archive = tmp_path / "out" / ("model" + extension)
    archive.parent.mkdir()
    async with archive_location(archive) as copy:
        assert copy.archive == archive
        assert copy.manifest is None
        assert not archive.exists(), "nothing may be written before the exit"
        (copy.directory / "weights").mkdir()
        (copy.directory / "weights" / "w.bin").write_bytes(b"\x00\x01" * 5000)
        (copy.directory / "config.json").write_text('{"a": 1}')
        (copy.directory / "empty").mkdir()
        written = read_tree(copy.directory)
    assert archive.is_file()
    assert await archive_members(archive) == {
        path: (None if data is None else sha256(data)) for path, data in written.items()
    }
    destination = tmp_path / "check"
    await da.extract(archive, destination)
    assert read_tree(destination) == written
    # The atomic write left nothing behind.
    assert sorted(os.listdir(archive.parent)) == [archive.name]


async def test_new_location_with_nothing_written_creates_no_archive(tmp_path, cache_mode):
    archive = tmp_path / "model.tar.gz"
    async with archive_location(archive) as copy:
        assert copy.directory.is_dir()
    assert not archive.exists()
    assert [name for name in os.listdir(tmp_path) if name != "cache"] == []
    # And a second, real save still works afterwards.
    async with archive_location(archive) as copy:
        (copy.directory / "f").write_text("x")
    assert await archive_members(archive) == {"f": sha256(b"x")}


# --------------------------------------------------------------------------
# re-entering an existing archive


async def test_reenter_sees_files_and_unchanged_exit_does_not_rewrite(
    packed, model_tree, cache_mode
):
    before_bytes = packed.read_bytes()
    before = identity(packed)
    for _ in range(2):  # the second round re-enters through the cache (if on)
        async with archive_location(packed) as copy:
            assert read_tree(copy.directory) == read_tree(model_tree)
            assert copy.manifest is not None
            assert {m.path for m in copy.manifest.members} == set(read_tree(model_tree))
            assert os.access(copy.directory / "run.sh", os.X_OK)
        assert identity(packed) == before
        assert packed.read_bytes() == before_bytes


async def test_unchanged_exit_does_not_repack_under_a_strict_umask(packed, cache_mode):
    """umask 077 (common on hardened hosts): extraction and the change check
    must agree on what an untouched tree looks like."""
    before = identity(packed)
    old_umask = os.umask(0o077)
    try:
        for _ in range(2):
            async with archive_location(packed) as copy:
                assert (copy.directory / "config.json").exists()
            assert identity(packed) == before, "an unchanged tree was repacked"
    finally:
        os.umask(old_umask)


async def test_rewriting_identical_bytes_does_not_repack(packed, cache_mode):
    before = identity(packed)
    async with archive_location(packed) as copy:
        config = copy.directory / "config.json"
        weights = copy.directory / "weights" / "layer0.bin"
        time.sleep(0.01)  # make sure mtimes really move
        # In place (same inode, new mtime) ...
        config.write_bytes(config.read_bytes())
        # ... and through a new file renamed over the old one (new inode).
        replacement = weights.with_name("layer0.tmp")
        replacement.write_bytes(weights.read_bytes())
        os.replace(replacement, weights)
    assert identity(packed) == before


@pytest.mark.parametrize(
    "mutation",
    ["modify", "modify-same-size", "add-file", "delete-file", "add-empty-dir", "chmod"],
)
async def test_real_change_repacks(packed, model_tree, cache_mode, mutation):
    before = identity(packed)
    async with archive_location(packed) as copy:
        root = copy.directory
        if mutation == "modify":
            (root / "config.json").write_text('{"features": ["x", "z"]}')
        elif mutation == "modify-same-size":
            data = bytearray((root / "weights" / "layer0.bin").read_bytes())
            data[100_000] ^= 0xFF
            (root / "weights" / "layer0.bin").write_bytes(bytes(data))
        elif mutation == "add-file":
            (root / "weights" / "layer1.bin").write_bytes(b"new layer")
        elif mutation == "delete-file":
            (root / "notes ü.txt").unlink()
        elif mutation == "add-empty-dir":
            (root / "logs").mkdir()
        elif mutation == "chmod":
            os.chmod(root / "config.json", 0o755)
        expected = read_tree(root)
        expected_modes = {
            path: os.stat(root / path).st_mode & 0o755 for path in expected
        }
    assert identity(packed) != before, "the change was not saved"
    manifest = await da.verify(packed)
    assert {m.path: m.sha256 for m in manifest.members} == {
        path: (None if data is None else sha256(data)) for path, data in expected.items()
    }
    assert {m.path: m.mode for m in manifest.members} == expected_modes
    async with archive_location(packed) as copy:
        assert read_tree(copy.directory) == expected


async def test_model_change_alone_repacks_and_is_in_the_manifest(packed, cache_mode):
    model = {"plugin": "slr", "config": {"features": ["x:float:1"], "predict": "y:float:1"}}
    before = identity(packed)
    async with archive_location(packed) as copy:
        assert copy.model is None
        copy.model = model
    assert identity(packed) != before
    info = await da.inspect(packed)
    assert info.manifest.model == model
    after = identity(packed)
    async with archive_location(packed) as copy:
        assert copy.model == model
        assert copy.manifest.model == model
        # An equal (not identical) value is not a change.
        copy.model = {"config": dict(model["config"]), "plugin": "slr"}
    assert identity(packed) == after


async def test_new_archive_with_only_a_model_is_saved(tmp_path, cache_mode):
    archive = tmp_path / "model.zip"
    async with archive_location(archive) as copy:
        copy.model = {"plugin": "slr"}
    info = await da.inspect(archive)
    assert info.manifest.model == {"plugin": "slr"}
    assert info.members == []


# --------------------------------------------------------------------------
# exceptions and cancellation


async def test_exception_leaves_archive_byte_identical(packed, model_tree, cache_mode):
    # Warm the cache first so a dirty tree *could* be reused.
    async with archive_location(packed):
        pass
    before_bytes = packed.read_bytes()
    before = identity(packed)
    with pytest.raises(RuntimeError, match="boom"):
        async with archive_location(packed) as copy:
            (copy.directory / "config.json").write_text("half written")
            (copy.directory / "weights" / "layer0.bin").unlink()
            (copy.directory / "extra").write_text("extra")
            copy.model = {"changed": True}
            raise RuntimeError("boom")
    assert identity(packed) == before
    assert packed.read_bytes() == before_bytes
    async with archive_location(packed) as copy:
        assert read_tree(copy.directory) == read_tree(model_tree)
        assert copy.model is None
    assert identity(packed) == before


async def test_exception_in_new_location_creates_nothing(tmp_path, cache_mode):
    archive = tmp_path / "model.tar.xz"
    with pytest.raises(ValueError):
        async with archive_location(archive) as copy:
            (copy.directory / "f").write_text("x")
            raise ValueError()
    assert not archive.exists()
    async with archive_location(archive) as copy:
        assert read_tree(copy.directory) == {}
    assert not archive.exists()


async def test_cancellation_inside_context_leaves_archive_unchanged(
    packed, model_tree, cache_mode
):
    async with archive_location(packed):
        pass
    before_bytes = packed.read_bytes()
    before = identity(packed)
    inside = asyncio.Event()

    async def work():
        async with archive_location(packed) as copy:
            (copy.directory / "config.json").write_text("half written")
            (copy.directory / "new").write_text("new")
            inside.set()
            await asyncio.sleep(3600)

    task = asyncio.ensure_future(work())
    await asyncio.wait_for(inside.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert identity(packed) == before
    assert packed.read_bytes() == before_bytes
    async with archive_location(packed) as copy:
        assert read_tree(copy.directory) == read_tree(model_tree)
    assert identity(packed) == before


# --------------------------------------------------------------------------
# nesting


async def test_nested_enters_share_one_copy_and_only_outermost_exit_saves(
    packed, tmp_path, cache_mode
):
    before_bytes = packed.read_bytes()
    before = identity(packed)
    # Another spelling of the same path must still count as the same location.
    other_spelling = tmp_path / "sub" / ".." / packed.name
    (tmp_path / "sub").mkdir()
    async with archive_location(packed) as outer:
        async with archive_location(str(other_spelling)) as inner:
            assert inner is outer
            (inner.directory / "config.json").write_text("changed by the inner block")
            async with archive_location(packed) as innermost:
                assert innermost is outer
                (innermost.directory / "deep").write_text("deep")
            assert identity(packed) == before
        # After the inner exits: archive untouched, changes still visible.
        assert identity(packed) == before
        assert packed.read_bytes() == before_bytes
        assert (outer.directory / "config.json").read_text() == "changed by the inner block"
        assert (outer.directory / "deep").read_text() == "deep"
    assert identity(packed) != before
    members = await archive_members(packed)
    assert members["config.json"] == sha256(b"changed by the inner block")
    assert members["deep"] == sha256(b"deep")


async def test_nested_new_location_is_created_by_outermost_exit_only(tmp_path, cache_mode):
    archive = tmp_path / "model.tar.bz2"
    async with archive_location(archive) as outer:
        async with archive_location(archive) as inner:
            assert inner is outer
            (inner.directory / "f").write_text("x")
        assert not archive.exists()
    assert await archive_members(archive) == {"f": sha256(b"x")}


async def test_exception_in_nested_block_caught_by_outer_still_saves_outer(
    packed, cache_mode
):
    async with archive_location(packed) as outer:
        try:
            async with archive_location(packed) as inner:
                (inner.directory / "a").write_text("a")
                raise KeyError("inner")
        except KeyError:
            pass
        (outer.directory / "b").write_text("b")
    members = await archive_members(packed)
    assert members["b"] == sha256(b"b")


# --------------------------------------------------------------------------
# the working directory


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
async def test_working_directory_is_private(tmp_path, packed, cache_mode, existing):
    archive = packed if existing else tmp_path / "new.tar.gz"
    for _ in range(2):  # second round: from the cache when it is on
        async with archive_location(archive) as copy:
            mode = copy.directory.stat().st_mode & 0o777
            assert mode == 0o700, f"working directory mode is {mode:04o}"
            (copy.directory / "touched").write_text(str(time.time()))


async def test_plain_directory_is_yielded_as_is(tmp_path, model_tree):
    async with archive_location(model_tree) as copy:
        assert copy.directory == model_tree
        assert copy.archive is None and copy.manifest is None
        (copy.directory / "written").write_text("x")
    assert (model_tree / "written").read_text() == "x"
    # An existing directory always counts as a directory, whatever its name.
    looks_like_archive = tmp_path / "model.tar.gz"
    looks_like_archive.mkdir()
    async with archive_location(str(looks_like_archive)) as copy:
        assert copy.directory == looks_like_archive
        assert copy.archive is None
    assert looks_like_archive.is_dir()
    assert not (cache_dir() / "extract").exists()


# --------------------------------------------------------------------------
# refusals


async def test_unsupported_extension_is_refused_before_anything_is_created(tmp_path):
    archive = tmp_path / "model.rar"
    with pytest.raises(da.UnsupportedArchiveError) as info:
        async with archive_location(archive):
            pytest.fail("the body must not run for an unsupported archive")
    message = str(info.value)
    assert "model.rar" in message
    assert ".tar.gz" in message and ".zip" in message
    assert not archive.exists()
    assert not cache_dir().exists()


async def _truncated_copy(packed, tmp_path) -> pathlib.Path:
    corrupt = tmp_path / "corrupt.tar.gz"
    data = packed.read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    return corrupt


async def test_corrupt_archive_raises_on_enter_and_stays_untouched(
    packed, tmp_path, cache_mode
):
    corrupt = await _truncated_copy(packed, tmp_path)
    before_bytes = corrupt.read_bytes()
    before = identity(corrupt)
    for _ in range(2):  # the second try proves the lock was released
        with pytest.raises(da.CorruptArchiveError) as info:
            await asyncio.wait_for(_enter_and_write(corrupt), 30)
        assert "corrupt.tar.gz" in str(info.value)
        assert identity(corrupt) == before
        assert corrupt.read_bytes() == before_bytes


async def _enter_and_write(archive):
    async with archive_location(archive) as copy:
        (copy.directory / "f").write_text("must never be reached")


async def test_corrupt_archive_leaves_no_session_directory(
    packed, tmp_path, no_extract_cache
):
    corrupt = await _truncated_copy(packed, tmp_path)
    with pytest.raises(da.CorruptArchiveError):
        await _enter_and_write(corrupt)
    extract_root = cache_dir() / "extract"
    leftovers = sorted(os.listdir(extract_root)) if extract_root.exists() else []
    assert leftovers == [], f"failed enter leaked {leftovers}"


# --------------------------------------------------------------------------
# the extraction cache


async def test_cache_reuses_the_extracted_tree(packed):
    async with archive_location(packed) as copy:
        directory = copy.directory
        weights = os.stat(copy.directory / "weights" / "layer0.bin").st_ino
    async with archive_location(packed) as copy:
        assert copy.directory == directory
        # Not extracted again: the very same file is still there.
        assert os.stat(copy.directory / "weights" / "layer0.bin").st_ino == weights
        assert copy.manifest is not None and copy.manifest.verified


async def test_cache_follows_an_archive_replaced_behind_our_back(
    packed, model_tree, tmp_path
):
    async with archive_location(packed) as copy:
        assert read_tree(copy.directory) == read_tree(model_tree)
    other = tmp_path / "other"
    (other / "weights").mkdir(parents=True)
    (other / "weights" / "layer0.bin").write_bytes(os.urandom(200_000))
    (other / "config.json").write_text('{"features": ["other"], "predict": "y"}')
    await da.pack(other, packed, model={"replaced": True})
    async with archive_location(packed) as copy:
        assert read_tree(copy.directory) == read_tree(other)
        assert copy.model == {"replaced": True}


async def test_cache_follows_an_archive_copied_over_in_place(packed, tmp_path):
    """Same inode, content rewritten by ``cp``-like in-place copying."""
    async with archive_location(packed):
        pass
    other = tmp_path / "other"
    other.mkdir()
    (other / "only").write_text("only file")
    staged = tmp_path / "staged.tar.gz"
    await da.pack(other, staged)
    inode = os.stat(packed).st_ino
    time.sleep(0.01)
    with open(packed, "r+b") as handle:
        handle.truncate(0)
        handle.write(staged.read_bytes())
    assert os.stat(packed).st_ino == inode
    async with archive_location(packed) as copy:
        assert read_tree(copy.directory) == {"only": b"only file"}


async def test_cache_detects_a_cached_file_modified_outside_a_context(packed, model_tree):
    async with archive_location(packed) as copy:
        cached = copy.directory
    assert cached.is_dir(), "with the cache on the tree stays after the exit"
    time.sleep(0.01)
    (cached / "config.json").write_text("tampered")
    (cached / "notes ü.txt").unlink()
    (cached / "intruder").write_text("x")
    async with archive_location(packed) as copy:
        assert read_tree(copy.directory) == read_tree(model_tree)


async def test_cache_detects_same_size_change_with_restored_mtime(packed, model_tree):
    """A same-size in-place rewrite that leaves (size, mtime, inode, mode) as
    they were: what a timestamp-preserving tool does, simulated with
    os.utime.  The content differs and the cache must not be trusted."""
    async with archive_location(packed) as copy:
        target = copy.directory / "weights" / "layer0.bin"
    st = os.stat(target)
    data = bytearray(target.read_bytes())
    data[0] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    async with archive_location(packed) as copy:
        assert read_tree(copy.directory) == read_tree(model_tree)


async def test_same_size_change_with_unchanged_mtime_inside_context_is_saved(packed):
    """The same situation inside a context must still be saved.  os.utime
    simulates a file system with coarse timestamps (ext4 before Linux 6.13
    stamps with the jiffy clock), where a quick same-size in-place rewrite
    right after the extraction keeps the mtime the extraction gave the file."""
    async with archive_location(packed):
        pass  # the cache now holds the tree and its stat snapshot
    async with archive_location(packed) as copy:
        target = copy.directory / "weights" / "layer0.bin"
        st = os.stat(target)
        data = bytearray(target.read_bytes())
        data[0] ^= 0xFF
        target.write_bytes(bytes(data))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        expected = sha256(bytes(data))
    members = await archive_members(packed)
    assert members["weights/layer0.bin"] == expected, "the change was silently dropped"


async def test_an_abandoned_session_s_tree_is_removed_by_the_next_session(packed, tmp_path,
                                                                          no_extract_cache):
    """Sessions hold a lock on their directory; one whose lock is free was
    left by a killed process (whatever its pid namespace)."""
    extract = tmp_path / "cache" / "extract"  # DFFML_ARCHIVE_CACHE (conftest)
    abandoned, live, young = (extract / f"session-{name}" for name in ("dead", "live", "young"))
    for directory in (abandoned, live, young):
        (directory / "tree").mkdir(parents=True)
    an_hour_ago = time.time() - 3600
    for directory in (abandoned, live):
        os.utime(directory, (an_hour_ago, an_hour_ago))
    holder = subprocess.Popen(  # another process, alive, holding its session's lock
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY);"
         " fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(live)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        async with archive_location(packed):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert sorted(path.name for path in extract.iterdir()) == [live.name, young.name]


async def test_the_cached_copy_of_a_deleted_archive_is_removed(packed, tmp_path, monkeypatch):
    from dffml_archive import _location

    other = tmp_path / "other.zip"
    await da.pack(tmp_path / "model", other)
    for archive in (packed, other):
        async with archive_location(archive):
            pass
    extract = tmp_path / "cache" / "extract"  # DFFML_ARCHIVE_CACHE (conftest)
    assert len(list(extract.iterdir())) == 2
    packed.unlink()
    monkeypatch.setattr(_location, "_pruned_in_this_process", False)  # a new process
    async with archive_location(other) as copy:
        kept = copy.directory.parent
    assert list(extract.iterdir()) == [kept]


async def test_disabled_cache_keeps_no_slot(packed, tmp_path, no_extract_cache):
    async with archive_location(packed) as copy:
        unchanged = copy.directory
    assert not unchanged.exists()
    async with archive_location(packed) as copy:
        changed = copy.directory
        (copy.directory / "new").write_text("new")
    assert not changed.exists()
    async with archive_location(tmp_path / "fresh.zip") as copy:
        fresh = copy.directory
        (copy.directory / "f").write_text("f")
    assert not fresh.exists()
    extract_root = cache_dir() / "extract"
    assert not extract_root.exists() or os.listdir(extract_root) == []


# --------------------------------------------------------------------------
# concurrency


COUNTER_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    from dffml_archive import archive_location

    async def main(path, rounds):
        for _ in range(rounds):
            async with archive_location(path) as copy:
                counter = copy.directory / "counter"
                value = int(counter.read_text()) if counter.exists() else 0
                await asyncio.sleep(0.02)
                counter.write_text(str(value + 1))
                with open(copy.directory / "log", "a") as log:
                    log.write(f"{os.getpid()} {value + 1}\\n")

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def test_processes_never_lose_an_update(tmp_path):
    processes = 4
    archive = tmp_path / "shared.tar.gz"
    rounds = 5
    children = [
        subprocess.Popen(
            [sys.executable, "-c", COUNTER_SCRIPT, str(archive), str(rounds)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
    total = processes * rounds
    async with archive_location(archive) as copy:
        assert (copy.directory / "counter").read_text() == str(total)
        log = (copy.directory / "log").read_text().splitlines()
    assert [int(line.split()[1]) for line in log] == list(range(1, total + 1))
    assert len({line.split()[0] for line in log}) == processes
    await da.verify(archive)
    assert [name for name in os.listdir(tmp_path) if name.endswith(".partial")] == []


async def test_concurrent_tasks_in_one_process_never_lose_an_update(tmp_path):
    """Two tasks of one event loop (e.g. two operations of one dataflow) are
    not nested: each must get a whole enter..exit session of its own."""
    archive = tmp_path / "shared.tar.gz"
    tasks, rounds = 3, 5

    async def worker():
        for _ in range(rounds):
            async with archive_location(archive) as copy:
                counter = copy.directory / "counter"
                value = int(counter.read_text()) if counter.exists() else 0
                await asyncio.sleep(0.01)
                counter.write_text(str(value + 1))

    results = await asyncio.gather(*(worker() for _ in range(tasks)), return_exceptions=True)
    errors = [repr(result) for result in results if isinstance(result, BaseException)]
    assert errors == []
    async with archive_location(archive) as copy:
        assert (copy.directory / "counter").read_text() == str(tasks * rounds)


HOLDER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from dffml_archive import archive_location

    async def main(path, value):
        async with archive_location(path) as copy:
            (copy.directory / "holder").write_text(value)
            print("inside", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_cancelled_while_waiting_for_the_lock_does_not_keep_it(tmp_path):
    archive = tmp_path / "locked.zip"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(archive), "first"],
        env=subprocess_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "inside"
        entered = asyncio.Event()

        async def waiter():
            async with archive_location(archive):
                entered.set()

        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.3)
        assert not entered.is_set(), "the lock held by another process was ignored"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        holder.communicate("\n", timeout=60)
        assert holder.returncode == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    await asyncio.sleep(0.2)
    # Another process must now get the lock promptly.
    second = subprocess.run(
        [sys.executable, "-c", HOLDER_SCRIPT, str(archive), "second"],
        env=subprocess_env(),
        input="\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 0, second.stderr
    assert await archive_members(archive) == {"holder": sha256(b"second")}
