"""Interoperability with GNU tar, Info-ZIP and the stdlib, and event-loop
responsiveness while the engine works."""
import asyncio
import hashlib
import io
import json
import os
import pathlib
import stat
import subprocess
import tarfile
import time
import zipfile

import pytest
import zstandard

import dffml_archive
from dffml_archive import UnverifiedArchiveWarning
from _helpers import fixed_umask  # noqa: F401

pytestmark = pytest.mark.usefixtures("fixed_umask")

FORMATS = (".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst", ".zip")
TAR_FORMATS = FORMATS[:5]
MANIFEST_NAME = ".dffml-archive-manifest.json"
UTF8_ENV = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")

GNU_TAR_EXTRACT = {
    ".tar": ["tar", "-xf"],
    ".tar.gz": ["tar", "-xzf"],
    ".tar.bz2": ["tar", "-xjf"],
    ".tar.xz": ["tar", "-xJf"],
    ".tar.zst": ["tar", "-I", "zstd", "-xf"],
}
GNU_TAR_CREATE = {
    ".tar": ["tar", "-cf"],
    ".tar.gz": ["tar", "-czf"],
    ".tar.bz2": ["tar", "-cjf"],
    ".tar.xz": ["tar", "-cJf"],
    ".tar.zst": ["tar", "-I", "zstd", "-cf"],
}


def make_tree(root) -> pathlib.Path:
    (root / "weights" / "empty").mkdir(parents=True)
    (root / "nested" / "deeper" / "deepest").mkdir(parents=True)
    (root / "weights" / "layer0.bin").write_bytes(os.urandom(300_000))  # stored in zips
    (root / "weights" / "layer1.txt").write_bytes(b"0.125 " * 50_000)  # deflated
    (root / "nested" / "deeper" / "deepest" / "leaf.json").write_text('{"leaf": true}\n')
    (root / "config.json").write_text('{"features": ["x"], "predict": "y"}\n')
    (root / "empty-file").write_bytes(b"")
    (root / "caf\u00e9 \u65e5\u672c.txt").write_text("unicode name\n")
    (root / "run.sh").write_text("#!/bin/sh\necho ok\n")
    os.chmod(root / "run.sh", 0o755)
    return root


def state(root, skip=()) -> dict:
    result = {}
    root = pathlib.Path(root)
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if relative in skip:
            continue
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            result[relative] = ("dir", mode, None)
        else:
            assert stat.S_ISREG(st.st_mode), relative
            result[relative] = ("file", mode, path.read_bytes())
    return result


def check_manifest_file(path, source_state):
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == "dffml-archive-manifest"
    assert {member["path"] for member in document["members"]} == set(source_state)


@pytest.fixture
def source(tmp_path):
    return make_tree(tmp_path / "src")


# ---------------------------------------------------------------------------
# Archives we write, read by other tools
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", TAR_FORMATS)
async def test_gnu_tar_reads_our_archives(fmt, source, tmp_path):
    archive = tmp_path / f"model{fmt}"
    await dffml_archive.pack(source, archive)
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        GNU_TAR_EXTRACT[fmt] + [str(archive), "-C", str(out)],
        capture_output=True, text=True, env=UTF8_ENV,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warnings (time stamps, unknown pax keywords)
    assert state(out, skip={MANIFEST_NAME}) == state(source)
    check_manifest_file(out / MANIFEST_NAME, state(source))
    listing = subprocess.run(
        GNU_TAR_EXTRACT[fmt][:-1] + ["-tf", str(archive)],
        capture_output=True, text=True, env=UTF8_ENV, check=True,
    ).stdout.splitlines()
    assert listing[0] == MANIFEST_NAME


async def test_unzip_reads_our_archives(source, tmp_path):
    archive = tmp_path / "model.zip"
    await dffml_archive.pack(source, archive)
    tested = subprocess.run(["unzip", "-t", str(archive)], capture_output=True, text=True, env=UTF8_ENV)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "No errors detected" in tested.stdout
    out = tmp_path / "out"
    done = subprocess.run(
        ["unzip", "-q", str(archive), "-d", str(out)], capture_output=True, text=True, env=UTF8_ENV
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert state(out, skip={MANIFEST_NAME}) == state(source)
    check_manifest_file(out / MANIFEST_NAME, state(source))


def stdlib_members(archive: pathlib.Path) -> list:
    """(name, kind, mode, data) in archive order, read by tarfile/zipfile."""
    found = []
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as bundle:
            assert bundle.testzip() is None
            for info in bundle.infolist():
                assert info.create_system == 3
                mode = stat.S_IMODE(info.external_attr >> 16)
                if info.is_dir():
                    found.append((info.filename.rstrip("/"), "dir", mode, None))
                else:
                    found.append((info.filename, "file", mode, bundle.read(info)))
        return found
    if archive.name.endswith(".tar.zst"):
        with open(archive, "rb") as raw:
            data = zstandard.ZstdDecompressor().stream_reader(raw).read()
        bundle = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    else:
        bundle = tarfile.open(archive, mode="r:*")
    with bundle:
        for info in bundle:
            if info.isdir():
                found.append((info.name, "dir", info.mode, None))
            else:
                assert info.isreg(), info.name
                found.append((info.name, "file", info.mode, bundle.extractfile(info).read()))
    return found


@pytest.mark.parametrize("fmt", FORMATS)
async def test_stdlib_reads_our_archives(fmt, source, tmp_path):
    archive = tmp_path / f"model{fmt}"
    await dffml_archive.pack(source, archive)
    members = stdlib_members(archive)
    assert members[0][0] == MANIFEST_NAME
    document = json.loads(members[0][3])
    read = {name: (kind, mode, data) for name, kind, mode, data in members[1:]}
    assert len(read) == len(members) - 1
    assert read == state(source)
    # The manifest describes exactly what is stored.
    for entry in document["members"]:
        kind, mode, data = read[entry["path"]]
        assert entry["mode"] == "%04o" % mode
        if entry["type"] == "file":
            assert entry["size"] == len(data)
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------
# Archives written by other tools, read by us
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", TAR_FORMATS)
async def test_we_read_gnu_tar_archives(fmt, source, tmp_path):
    archive = tmp_path / f"gnu{fmt}"
    subprocess.run(
        GNU_TAR_CREATE[fmt] + [str(archive), "-C", str(source), "."], check=True, env=UTF8_ENV
    )
    with pytest.warns(UnverifiedArchiveWarning):
        manifest = await dffml_archive.extract(archive, tmp_path / "out")
    assert manifest.verified is False
    assert state(tmp_path / "out") == state(source)
    with pytest.warns(UnverifiedArchiveWarning):
        await dffml_archive.verify(archive)


async def test_we_read_zip_r_archives(source, tmp_path):
    # Non-ASCII names are the next test's subject.
    (source / "caf\u00e9 \u65e5\u672c.txt").rename(source / "cafe.txt")
    archive = tmp_path / "info-zip.zip"
    subprocess.run(["zip", "-q", "-r", str(archive), "."], cwd=source, check=True, env=UTF8_ENV)
    with pytest.warns(UnverifiedArchiveWarning):
        manifest = await dffml_archive.extract(archive, tmp_path / "out")
    assert manifest.verified is False
    assert state(tmp_path / "out") == state(source)


async def test_we_read_zip_r_unicode_names(tmp_path):
    """Info-ZIP's zip 3.0 on Linux stores UTF-8 names without the UTF-8 flag
    (bit 11) and without a Unicode path extra field; unzip and GNU tools
    read them as UTF-8.  They must not come out as cp437 mojibake."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "caf\u00e9 \u65e5\u672c.txt").write_text("unicode name\n")
    archive = tmp_path / "info-zip.zip"
    subprocess.run(["zip", "-q", "-r", str(archive), "."], cwd=source, check=True, env=UTF8_ENV)
    with zipfile.ZipFile(archive) as bundle:  # the shape under test
        assert [info.flag_bits & 0x800 for info in bundle.infolist()] == [0]
    listed = subprocess.run(["unzip", "-Z1", str(archive)], capture_output=True, env=UTF8_ENV,
                            check=True).stdout
    assert listed.decode("utf-8").strip() == "caf\u00e9 \u65e5\u672c.txt"
    with pytest.warns(UnverifiedArchiveWarning):
        await dffml_archive.extract(archive, tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["caf\u00e9 \u65e5\u672c.txt"]


async def test_we_read_gnu_tar_of_a_named_directory(source, tmp_path):
    """``tar -czf x.tar.gz src`` (no ./ prefix, one top directory)."""
    archive = tmp_path / "named.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", str(tmp_path), "src"], check=True)
    with pytest.warns(UnverifiedArchiveWarning):
        await dffml_archive.extract(archive, tmp_path / "out")
    assert state(tmp_path / "out" / "src") == state(source)


# ---------------------------------------------------------------------------
# The event loop stays responsive while the engine works
# ---------------------------------------------------------------------------


async def _longest_gap_during(awaitable):
    loop = asyncio.get_running_loop()
    finished = False
    longest = 0.0
    ticks = 0

    async def ticker():
        nonlocal longest, ticks
        last = loop.time()
        while not finished:
            await asyncio.sleep(0.001)
            now = loop.time()
            longest = max(longest, now - last)
            last = now
            ticks += 1

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    started = time.monotonic()
    try:
        result = await awaitable
    finally:
        finished = True
        await ticking
    return result, longest, ticks, time.monotonic() - started


@pytest.mark.parametrize("fmt", [".tar.gz", ".zip"])
async def test_event_loop_stays_responsive(fmt, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    chunk = os.urandom(1 << 20).hex().encode()  # 2 MiB of compressible text
    for index in range(5):
        with open(source / f"part{index}.txt", "wb") as handle:
            for _ in range(10):
                handle.write(chunk)  # 5 x 20 MiB = 100 MiB
    archive = tmp_path / f"big{fmt}"

    _, longest, ticks, seconds = await _longest_gap_during(dffml_archive.pack(source, archive))
    assert ticks > 20, "the pack finished too fast to measure anything"
    assert longest < 0.2, f"pack blocked the loop for {longest * 1000:.0f} ms ({seconds:.1f}s run)"

    if fmt != ".tar.gz":
        return  # extraction is measured once; the readers share one loop
    _, longest, ticks, seconds = await _longest_gap_during(
        dffml_archive.extract(archive, tmp_path / "out")
    )
    assert longest < 0.2, f"extract blocked the loop for {longest * 1000:.0f} ms ({seconds:.1f}s run)"
    assert (tmp_path / "out" / "part4.txt").stat().st_size == 20 << 20


class _ScriptedStream:
    """Returns ``blocks`` one per read, then raises ``error`` (or ends)."""

    def __init__(self, blocks, error=None, endless=False):
        self.blocks, self.error, self.endless, self.closed = list(blocks), error, endless, False

    def read(self, size):
        if self.endless:
            return b"x" * size
        if self.blocks:
            return self.blocks.pop(0)
        if self.error is not None:
            raise self.error
        return b""

    def close(self):
        self.closed = True


def test_read_ahead_gives_the_stream_then_its_error_in_order():
    from dffml_archive._formats import _ReadAhead

    reader = _ReadAhead(_ScriptedStream([b"abc", b"defg"], EOFError("cut")), block_size=4, depth=1)
    view = bytearray(2)
    assert reader.readinto(view) == 2 and view == b"ab"
    assert reader.read(10) == b"c"  # short reads, as codec streams give
    assert reader.read(10) == b"defg"
    with pytest.raises(EOFError, match="cut"):
        reader.read(1)
    reader.close()
    reader = _ReadAhead(_ScriptedStream([b"abc"]), block_size=4)
    assert reader.read(-1) == b"abc" and reader.read(5) == b"" and reader.readinto(view) == 0
    reader.close()


def test_read_ahead_closes_while_its_thread_waits_on_a_full_queue():
    from dffml_archive._formats import _ReadAhead

    stream = _ScriptedStream([], endless=True)
    reader = _ReadAhead(stream, block_size=1 << 10, depth=2)
    assert reader.read(3) == b"xxx"
    reader.close()  # must not hang: the thread sees the close and stops
    assert stream.closed and not reader._thread.is_alive()


def test_read_ahead_thread_runs_below_the_process_priority():
    import os
    import threading

    from dffml_archive._formats import READ_AHEAD_NICENESS, _ReadAhead

    seen = {}

    class Probe(_ScriptedStream):
        def read(self, size):
            thread = threading.get_native_id()
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, thread)
            return b""

    reader = _ReadAhead(Probe([]))
    assert reader.read(1) == b""
    reader.close()
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen["nice"] == min(19, ours + READ_AHEAD_NICENESS)
