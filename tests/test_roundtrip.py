"""Pack/extract round trips in every format, reproducibility, destinations,
source errors, atomic replacement, progress and cancellation."""
import asyncio
import io
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile

import pytest
import zstandard

import dffml_archive
from dffml_archive import (
    ArchiveSourceError,
    DestinationError,
    UnsupportedArchiveError,
)

from _helpers import fixed_umask  # noqa: F401

pytestmark = pytest.mark.usefixtures("fixed_umask")

FORMATS = (".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst", ".zip")
MANIFEST_NAME = ".dffml-archive-manifest.json"
REPO = pathlib.Path(__file__).resolve().parent.parent


def state(root) -> dict:
    """Relative path -> (kind, permission bits, content) below ``root``."""
    result = {}
    root = pathlib.Path(root)
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            result[relative] = ("dir", mode, None)
        elif stat.S_ISREG(st.st_mode):
            result[relative] = ("file", mode, path.read_bytes())
        else:
            result[relative] = ("other", mode, None)
    return result


def read_archive_members(archive) -> dict:
    """The members as the stdlib sees them: name -> (kind, mode, data)."""
    archive = pathlib.Path(archive)
    result = {}
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as bundle:
            assert bundle.testzip() is None
            for info in bundle.infolist():
                mode = info.external_attr >> 16
                if info.is_dir():
                    result[info.filename.rstrip("/")] = ("dir", stat.S_IMODE(mode), None)
                else:
                    result[info.filename] = ("file", stat.S_IMODE(mode), bundle.read(info))
        return result
    data = archive.read_bytes()
    if archive.name.endswith(".tar.zst"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        mode = "r:"
    else:
        mode = "r:*"
    with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as bundle:
        for info in bundle:
            if info.isdir():
                result[info.name] = ("dir", info.mode, None)
            else:
                assert info.isreg(), info.name
                result[info.name] = ("file", info.mode, bundle.extractfile(info).read())
    return result


def first_member_name(archive) -> str:
    archive = pathlib.Path(archive)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as bundle:
            return bundle.infolist()[0].filename
    data = archive.read_bytes()
    if archive.name.endswith(".tar.zst"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as bundle:
        return bundle.next().name


def leftovers(directory) -> list:
    return sorted(
        name
        for name in os.listdir(directory)
        if name.endswith((".partial", ".extracting", ".old"))
    )


# ---------------------------------------------------------------------------
# A tree with everything a round trip must keep
# ---------------------------------------------------------------------------

UNICODE_NAMES = ("na\u00efve \u2713.txt", "\u65e5\u672c\u8a9e.txt", "emoji \U0001f389.bin",
                 "cafe\u0301-nfd.txt", "caf\u00e9-nfc.txt")


def make_rich_tree(root, reverse=False) -> dict:
    """Build the tree and return the state extraction must reproduce.
    ``reverse`` creates everything in the opposite order (different
    directory listing order, same content)."""
    steps = []
    steps.append(("dir", "a/b/c/deep", 0o755))
    steps.append(("dir", "empty", 0o755))
    steps.append(("dir", "a/empty-too", 0o755))
    steps.append(("dir", "private-dir", 0o700))
    steps.append(("dir", "unicod\u00e9", 0o755))
    steps.append(("file", "a/b/c/deep/leaf.txt", 0o644, b"leaf\n"))
    steps.append(("file", "top.bin", 0o644, bytes(range(256)) * 1200))
    steps.append(("file", "zeros.bin", 0o644, bytes(1 << 20)))
    steps.append(("file", "empty.txt", 0o644, b""))
    steps.append(("file", "run.sh", 0o755, b"#!/bin/sh\necho hi\n"))
    steps.append(("file", "plain.txt", 0o644, b"plain\n"))
    steps.append(("file", "owner-only.txt", 0o600, b"secret-ish\n"))
    steps.append(("file", "setuid-tool", 0o4755, b"\x7fELF pretend\n"))
    steps.append(("file", "setgid-tool", 0o2755, b"pretend\n"))
    steps.append(("file", "world-writable.txt", 0o666, b"ww\n"))
    steps.append(("file", "group-writable-exec", 0o775, b"gw\n"))
    steps.append(("file", "private-dir/key", 0o600, b"k\n"))
    for index, name in enumerate(UNICODE_NAMES):
        steps.append(("file", f"unicod\u00e9/{name}", 0o644, f"unicode {index}\n".encode()))
    if reverse:
        steps = steps[::-1]
    expected = {}
    root.mkdir(parents=True)
    for step in steps:
        path = root / step[1]
        if step[0] == "dir":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(step[3])
    # Modes last (parents before children do not matter for chmod).
    for step in steps:
        os.chmod(root / step[1], step[2])
    for step in steps:
        parts = step[1].split("/")
        for depth in range(1, len(parts)):
            expected.setdefault("/".join(parts[:depth]), ("dir", 0o755, None))
    for step in steps:
        if step[0] == "dir":
            expected[step[1]] = ("dir", step[2] & 0o755, None)
        else:
            expected[step[1]] = ("file", step[2] & 0o755, step[3])
    return expected


@pytest.mark.parametrize("fmt", FORMATS)
async def test_roundtrip_rich_tree(fmt, tmp_path):
    expected = make_rich_tree(tmp_path / "src")
    archive = tmp_path / f"model{fmt}"
    manifest = await dffml_archive.pack(tmp_path / "src", archive, model={"name": "m"})
    assert manifest.model == {"name": "m"}
    assert {m.path for m in manifest.members} == set(expected)

    # What the archive stores, as the stdlib reads it: the manifest first,
    # modes already stripped of setuid/setgid and group/world write.
    assert first_member_name(archive) == MANIFEST_NAME
    stored = read_archive_members(archive)
    manifest_doc = json.loads(stored.pop(MANIFEST_NAME)[2])
    assert stored == expected
    assert stored["setuid-tool"][1] == 0o755
    listed = {m["path"]: m for m in manifest_doc["members"]}
    assert listed["setuid-tool"]["mode"] == "0755"
    assert listed["world-writable.txt"]["mode"] == "0644"

    extracted = await dffml_archive.extract(archive, tmp_path / "out")
    assert extracted.verified
    assert extracted.model == {"name": "m"}
    assert state(tmp_path / "out") == expected
    assert leftovers(tmp_path) == []
    assert (await dffml_archive.verify(archive)).verified
    info = await dffml_archive.inspect(archive)
    assert info.format == fmt.lstrip(".")
    assert info.manifest is not None


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", ["no-entries", "only-empty-directories"])
async def test_roundtrip_tree_without_files(fmt, shape, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    if shape == "only-empty-directories":
        (source / "a" / "b" / "c").mkdir(parents=True)
        (source / "d").mkdir()
    archive = tmp_path / f"empty{fmt}"
    manifest = await dffml_archive.pack(source, archive)
    assert manifest.total_size == 0
    result = await dffml_archive.extract(archive, tmp_path / "out")
    assert result.verified
    assert (tmp_path / "out").is_dir()
    assert state(tmp_path / "out") == state(source)
    await dffml_archive.verify(archive)


# One format keeps the suite fast; zip has the most per-member work (local
# header, central directory entry, a seek back per member).
@pytest.mark.parametrize("fmt", [".zip"])
async def test_roundtrip_5000_small_files(fmt, tmp_path):
    source = tmp_path / "src"
    for index in range(5000):
        directory = source / f"shard{index % 50:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index:05d}.txt").write_bytes(f"file {index}\n".encode() * (index % 7))
    archive = tmp_path / f"many{fmt}"
    manifest = await dffml_archive.pack(source, archive)
    assert len(manifest.members) == 5050
    await dffml_archive.extract(archive, tmp_path / "out")
    assert state(tmp_path / "out") == state(source)


# ---------------------------------------------------------------------------
# A 1 GiB file with bounded memory, measured in a child process
# ---------------------------------------------------------------------------

_BIG_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, resource, sys, time
    import dffml_archive

    source, archive, destination = sys.argv[1:4]
    os.makedirs(source)
    with open(os.path.join(source, "big.bin"), "wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GiB of zeros, no disk used
    started = time.monotonic()
    packed = asyncio.run(dffml_archive.pack(source, archive))
    # 1 GiB of zeros compresses far beyond the default ratio limit.
    limits = dffml_archive.Limits(max_ratio=float("inf"))
    extracted = asyncio.run(dffml_archive.extract(archive, destination, limits=limits))
    print(json.dumps({
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the
        # forking parent (a pytest process that imported torch and
        # tensorflow reads ~1 GB); VmHWM belongs to this process's own memory.
        "maxrss_kib": int(next(
            line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")
        )),
        "seconds": time.monotonic() - started,
        "packed_sha256": [m.sha256 for m in packed.members if m.path == "big.bin"][0],
        "verified": extracted.verified,
    }))
    """
)


async def test_one_gib_file_streams_with_bounded_memory(tmp_path):
    archive = tmp_path / "big.tar.zst"
    destination = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.run(
        [sys.executable, "-c", _BIG_CHILD, str(tmp_path / "src"), str(archive), str(destination)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    peak_mb = report["maxrss_kib"] * 1024 / 1e6
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"
    assert report["verified"]
    # sha256 of 1 GiB of zero bytes, known independently of the engine.
    assert report["packed_sha256"] == (
        "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14"
    )
    big = destination / "big.bin"
    assert big.stat().st_size == 1 << 30
    with open(big, "rb") as handle:
        for offset in (0, 123_456_789, (1 << 30) - 4096):
            handle.seek(offset)
            assert handle.read(4096) == bytes(4096)


# ---------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------


def _touch_everything(root, when):
    for path in [root, *pathlib.Path(root).rglob("*")]:
        os.utime(path, (when + 12345, when), follow_symlinks=False)


@pytest.fixture
def listing_order_dir(tmp_path):
    """A directory on tmpfs when there is one: tmpfs lists entries newest
    first, so trees created in different orders list differently (ext4
    lists by name hash, whatever the creation order)."""
    import tempfile

    shm = pathlib.Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        directory = pathlib.Path(tempfile.mkdtemp(dir=shm, prefix="dffml-archive-test-"))
        yield directory
        shutil.rmtree(directory, ignore_errors=True)
    else:  # pragma: no cover - depends on the machine
        yield tmp_path / "trees"


def _embedded_timestamps(archive: pathlib.Path) -> set:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as bundle:
            return {info.date_time for info in bundle.infolist()}
    data = archive.read_bytes()
    if archive.name.endswith(".tar.gz"):
        assert data[4:8] == bytes(4)  # gzip header MTIME: none recorded
    if archive.name.endswith(".tar.zst"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as bundle:
        return {info.mtime for info in bundle}


@pytest.mark.parametrize("fmt", FORMATS)
async def test_reproducible_bytes(fmt, tmp_path, listing_order_dir):
    first_tree = listing_order_dir / "one" / "model"
    make_rich_tree(first_tree)
    _touch_everything(first_tree, 1_600_000_000)
    await dffml_archive.pack(first_tree, tmp_path / f"a{fmt}")

    _touch_everything(first_tree, 1_700_000_000)
    await dffml_archive.pack(first_tree, tmp_path / f"b{fmt}")

    # Same content elsewhere, under another name, created in reverse order.
    other = listing_order_dir / "somewhere" / "else" / "copy-of-model"
    make_rich_tree(other, reverse=True)
    _touch_everything(other, 1_400_000_000)
    await dffml_archive.pack(other, tmp_path / f"c{fmt}")

    first = (tmp_path / f"a{fmt}").read_bytes()
    assert (tmp_path / f"b{fmt}").read_bytes() == first
    assert (tmp_path / f"c{fmt}").read_bytes() == first
    # No clock or file time leaks in (packs within one second would hide it).
    stamps = _embedded_timestamps(tmp_path / f"a{fmt}")
    assert stamps == ({(1980, 1, 1, 0, 0, 0)} if fmt == ".zip" else {315532800})


_CPU_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    os.cpu_count = lambda: int(sys.argv[3])  # the machine this pack runs on
    import dffml_archive
    asyncio.run(dffml_archive.pack(sys.argv[1], sys.argv[2]))
    """
)


async def test_zstd_bytes_do_not_depend_on_cpu_count(tmp_path):
    """The same tree packed on a 1-CPU machine and on a 4-CPU machine."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "weights.bin").write_bytes(bytes(range(256)) * 40_000 + os.urandom(300_000))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    outputs = []
    for cpus in (1, 4):
        archive = tmp_path / f"cpus{cpus}.tar.zst"
        subprocess.run(
            [sys.executable, "-c", _CPU_CHILD, str(source), str(archive), str(cpus)],
            check=True, env=env, timeout=60,
        )
        outputs.append(archive.read_bytes())
    assert outputs[0] == outputs[1]


# ---------------------------------------------------------------------------
# Destinations
# ---------------------------------------------------------------------------


@pytest.fixture
async def small_archive(tmp_path):
    source = tmp_path / "src"
    (source / "d").mkdir(parents=True)
    (source / "d" / "x.txt").write_bytes(b"new content\n")
    (source / "y.bin").write_bytes(os.urandom(1000))
    archive = tmp_path / "small.tar.gz"
    await dffml_archive.pack(source, archive)
    return archive, state(source)


async def test_extract_creates_missing_destination(small_archive, tmp_path):
    archive, expected = small_archive
    destination = tmp_path / "not" / "there" / "yet"
    await dffml_archive.extract(archive, destination)
    assert state(destination) == expected


async def test_extract_into_existing_empty_directory(small_archive, tmp_path):
    archive, expected = small_archive
    destination = tmp_path / "empty"
    destination.mkdir()
    await dffml_archive.extract(archive, destination)
    assert state(destination) == expected
    assert leftovers(tmp_path) == []


async def test_extract_into_non_empty_directory_is_refused(small_archive, tmp_path):
    archive, _ = small_archive
    destination = tmp_path / "busy"
    (destination / "sub").mkdir(parents=True)
    (destination / "sub" / "mine.txt").write_bytes(b"mine\n")
    before = state(destination)
    inode = (destination / "sub" / "mine.txt").stat().st_ino
    with pytest.raises(DestinationError) as caught:
        await dffml_archive.extract(archive, destination)
    assert str(destination) in str(caught.value)
    assert str(archive) in str(caught.value)
    assert state(destination) == before
    assert (destination / "sub" / "mine.txt").stat().st_ino == inode
    assert leftovers(tmp_path) == []


async def test_extract_replace_replaces_whole_tree(small_archive, tmp_path):
    archive, expected = small_archive
    destination = tmp_path / "busy"
    (destination / "d").mkdir(parents=True)
    (destination / "d" / "x.txt").write_bytes(b"old content\n")
    (destination / "stale.txt").write_bytes(b"stale\n")
    await dffml_archive.extract(archive, destination, replace=True)
    assert state(destination) == expected
    assert leftovers(tmp_path) == []


def test_replacing_swaps_the_trees_in_one_step(tmp_path):
    """extract --replace swaps the new tree in with one renameat2 call, so the
    destination never goes missing (with two renames, a process killed
    between them left none).  Linux >= 3.15 on ext4/tmpfs has it."""
    from dffml_archive._atomic import exchange_paths as _exchange

    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "n").write_text("new\n")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "o").write_text("old\n")
    assert _exchange(str(tmp_path / "new"), str(tmp_path / "old"))
    assert sorted(os.listdir(tmp_path / "old")) == ["n"]
    assert sorted(os.listdir(tmp_path / "new")) == ["o"]
    with pytest.raises(FileNotFoundError):
        _exchange(str(tmp_path / "missing"), str(tmp_path / "old"))


async def test_extract_onto_a_file_is_refused(small_archive, tmp_path):
    archive, _ = small_archive
    destination = tmp_path / "a-file"
    destination.write_bytes(b"not a directory")
    with pytest.raises(DestinationError):
        await dffml_archive.extract(archive, destination, replace=True)
    assert destination.read_bytes() == b"not a directory"


# ---------------------------------------------------------------------------
# Pack: source errors, atomic replacement, unknown formats
# ---------------------------------------------------------------------------


def _with_symlink(source):
    os.symlink("/etc/passwd", source / "sub" / "link")
    return source / "sub" / "link"


def _with_dangling_symlink(source):
    os.symlink("nowhere", source / "sub" / "dangling")
    return source / "sub" / "dangling"


def _with_fifo(source):
    os.mkfifo(source / "sub" / "pipe")
    return source / "sub" / "pipe"


@pytest.mark.parametrize("fmt", [".tar.gz", ".zip"])
@pytest.mark.parametrize("make_bad", [_with_symlink, _with_dangling_symlink, _with_fifo],
                         ids=["symlink", "dangling-symlink", "fifo"])
async def test_pack_refuses_links_and_special_files(fmt, make_bad, tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "ok.txt").write_bytes(b"ok\n")
    bad = make_bad(source)
    out = tmp_path / "out"
    out.mkdir()
    previous = out / f"model{fmt}"
    previous.write_bytes(b"previous archive bytes")
    with pytest.raises(ArchiveSourceError) as caught:
        await dffml_archive.pack(source, previous)
    assert str(bad) in str(caught.value)
    assert previous.read_bytes() == b"previous archive bytes"
    assert leftovers(out) == []
    fresh = out / f"fresh{fmt}"
    with pytest.raises(ArchiveSourceError):
        await dffml_archive.pack(source, fresh)
    assert sorted(os.listdir(out)) == [f"model{fmt}"]


async def test_pack_missing_directory(tmp_path):
    with pytest.raises(ArchiveSourceError) as caught:
        await dffml_archive.pack(tmp_path / "missing", tmp_path / "x.tar.gz")
    assert "missing" in str(caught.value)
    assert not (tmp_path / "x.tar.gz").exists()
    assert leftovers(tmp_path) == []


async def test_pack_a_file_instead_of_a_directory(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ArchiveSourceError):
        await dffml_archive.pack(tmp_path / "file.txt", tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.parametrize("fmt", FORMATS)
async def test_pack_replaces_existing_archive_atomically(fmt, tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "weights.bin").write_bytes(os.urandom(200_000))
    (tmp_path / "v2" / "sub").mkdir(parents=True)
    (tmp_path / "v2" / "sub" / "weights.bin").write_bytes(os.urandom(300_000))
    out = tmp_path / "out"
    archive = out / f"model{fmt}"
    await dffml_archive.pack(tmp_path / "v1", archive)
    os.chmod(archive, 0o640)
    old_bytes = archive.read_bytes()
    with open(archive, "rb") as reader:  # a reader that opened the old archive
        await dffml_archive.pack(tmp_path / "v2", archive)
        assert reader.read() == old_bytes  # it still sees the complete old file
    assert archive.read_bytes() != old_bytes
    assert stat.S_IMODE(archive.stat().st_mode) == 0o640  # permissions kept
    assert os.listdir(out) == [f"model{fmt}"]  # no .partial files
    await dffml_archive.extract(archive, tmp_path / "check")
    assert state(tmp_path / "check") == state(tmp_path / "v2")


async def test_unknown_extension_lists_supported_ones(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    with pytest.raises(UnsupportedArchiveError) as caught:
        await dffml_archive.pack(tmp_path / "src", tmp_path / "model.rar")
    message = str(caught.value)
    assert "model.rar" in message
    for extension in dffml_archive.SUPPORTED_EXTENSIONS:
        assert extension in message
    assert set(os.listdir(tmp_path)) - {"cache"} == {"src"}
    assert not (tmp_path / "model.rar").exists()
    assert leftovers(tmp_path) == []

    (tmp_path / "other.rar").write_bytes(b"Rar!\x1a\x07\x00" + bytes(100))
    with pytest.raises(UnsupportedArchiveError) as caught:
        await dffml_archive.extract(tmp_path / "other.rar", tmp_path / "out")
    assert ".tar.zst" in str(caught.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(UnsupportedArchiveError):
        await dffml_archive.verify(tmp_path / "other.rar")


# ---------------------------------------------------------------------------
# Progress and cancellation
# ---------------------------------------------------------------------------


async def test_progress_is_monotonic_and_complete(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for index in range(6):
        (source / f"part{index}.bin").write_bytes(os.urandom(3 << 20))
    archive = tmp_path / "model.tar.gz"

    for operation in ("pack", "extract"):
        calls = []

        def progress(done, total):
            calls.append((done, total))

        if operation == "pack":
            await dffml_archive.pack(source, archive, progress=progress)
        else:
            await dffml_archive.extract(archive, tmp_path / "out", progress=progress)
        assert calls, operation
        totals = {total for _, total in calls}
        assert len(totals) == 1, (operation, totals)
        total = totals.pop()
        assert total is not None and total >= 18 << 20
        dones = [done for done, _ in calls]
        assert dones == sorted(dones), operation
        assert 0 <= dones[0] and dones[-1] == total, operation


async def _cancel_pack_when(tmp_path, fmt, phase):
    source = tmp_path / "src"
    source.mkdir()
    with open(source / "big.bin", "wb") as handle:
        handle.truncate(200 << 20)
    (source / "small.txt").write_text("small\n")
    archive = tmp_path / f"model{fmt}"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "f.txt").write_text("the previous archive\n")
    await dffml_archive.pack(tmp_path / "old", archive)
    old_bytes = archive.read_bytes()

    reached = asyncio.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if total and done > 0 and (phase == "hashing" or done > total // 2):
            reached.set()

    task = asyncio.ensure_future(dffml_archive.pack(source, archive, progress=progress))
    await asyncio.wait_for(reached.wait(), timeout=60)
    assert not task.done()
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stop_seconds = time.monotonic() - cancelled_at
    return archive, old_bytes, stop_seconds, seen


@pytest.mark.parametrize("phase", ["hashing", "writing"])
async def test_cancelling_pack_keeps_previous_archive(phase, tmp_path):
    archive, old_bytes, stop_seconds, seen = await _cancel_pack_when(tmp_path, ".tar.xz", phase)
    assert stop_seconds < 5
    assert seen[-1][0] < seen[-1][1]  # it really stopped part-way
    assert archive.read_bytes() == old_bytes
    await asyncio.sleep(0.2)  # the worker is gone: nothing appears later
    assert leftovers(tmp_path) == []
    assert archive.read_bytes() == old_bytes
    await dffml_archive.extract(archive, tmp_path / "check")
    assert (tmp_path / "check" / "f.txt").read_text() == "the previous archive\n"
