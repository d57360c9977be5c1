"""Damaged, truncated and bomb-like streams (issue 15, items 4-6):

* whatever a codec raises on damage is the damaged-archive error (never a
  traceback), through the API, the CLI and the ``archive_verify`` operation;
* a cut-off stream is always an error: the codec's own end (zstd frame,
  gzip trailer) and tar's end-of-archive marker are checked;
* an archive with a manifest is held to the sizes it declares (so our own
  all-zero tensors open anywhere), an archive without one to a compression
  ratio (a foreign gzip bomb is refused early).
"""
import gzip
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import time

import pytest

import dffml_archive
from dffml_archive import ArchiveLimitError, CorruptArchiveError, Limits
from dffml_archive._extract import extract_archive, verify_archive
from dffml_archive._pack import pack_directory
from dffml_archive.errors import ArchiveError

from test_cli import cli

FORMATS = (".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst", ".zip")


@pytest.fixture
def source(tmp_path) -> pathlib.Path:
    tree = tmp_path / "src"
    (tree / "weights").mkdir(parents=True)
    (tree / "model.json").write_text(json.dumps({"w": list(range(300))}))
    (tree / "weights" / "layer0.bin").write_bytes(os.urandom(3000) + bytes(3000))
    return tree


def flipped(data: bytes, bit: int) -> bytes:
    damaged = bytearray(data)
    damaged[bit // 8] ^= 1 << (bit % 8)
    return bytes(damaged)


@pytest.mark.parametrize("ext", FORMATS)
def test_every_bit_flip_is_clean_or_the_damaged_archive_error(tmp_path, source, ext):
    archive = tmp_path / ("model" + ext)
    pack_directory(source, archive)
    data = archive.read_bytes()
    damaged = tmp_path / ("damaged" + ext)
    outcomes = {"verified": 0, "refused": 0}
    step = max(1, len(data) * 8 // 2500)  # ~2,500 flips spread over every byte
    for bit in range(0, len(data) * 8, step):
        damaged.write_bytes(flipped(data, bit))
        try:
            verify_archive(damaged)  # content checked against the manifest
            outcomes["verified"] += 1
        except ArchiveError as error:
            assert str(damaged) in str(error)
            outcomes["refused"] += 1
        except Exception as error:  # pragma: no cover - the regression
            pytest.fail(f"bit {bit}: {type(error).__module__}.{type(error).__name__}: {error}")
    assert outcomes["refused"] > outcomes["verified"], outcomes


def deflate_damaged(tmp_path, source, ext) -> pathlib.Path:
    """An archive whose deflate stream (not a header) has a byte changed."""
    archive = tmp_path / ("model" + ext)
    pack_directory(source, archive)
    data = bytearray(archive.read_bytes())
    for offset in range(10, len(data) - 10):
        data[offset] ^= 0x5A
        candidate = tmp_path / ("damaged" + ext)
        candidate.write_bytes(bytes(data))
        try:
            verify_archive(candidate)
        except CorruptArchiveError as error:
            if "Invalid" in str(error):  # ISA-L's own word: the codec failed
                return candidate
        data[offset] ^= 0x5A
    pytest.fail(f"no byte of {archive.name} makes its codec fail")


@pytest.mark.parametrize("ext", [".tar.gz", ".zip"])
@pytest.mark.parametrize("command", ["verify", "inspect", "extract"])
def test_the_cli_says_damaged_in_one_line(tmp_path, source, ext, command):
    damaged = deflate_damaged(tmp_path, source, ext)
    args = [command, damaged] + ([tmp_path / "out"] if command == "extract" else [])
    result = cli(*args)
    if command == "inspect" and result.returncode == 0:
        return  # inspect reads the manifest only; it may not reach the damage
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "damaged or truncated" in result.stderr
    assert not (tmp_path / "out").exists()


async def test_the_verify_operation_returns_false_for_a_damaged_stream(tmp_path, source):
    from dffml_archive.operations import archive_verify

    damaged = deflate_damaged(tmp_path, source, ".tar.gz")
    result = await archive_verify(str(damaged))
    assert result["verified"] is False and "damaged or truncated" in result["error"]


@pytest.mark.parametrize("ext, cut", [
    *((".tar.zst", cut) for cut in (1, 2, 3, 4)),  # zstd's frame end (and checksum)
    # tar's end-of-archive blocks and our record padding
    *((".tar", cut) for cut in (1, 100, 511, 512, 513, 1024, 4096, 9216, 10240)),
    *((ext, 1) for ext in (".tar.gz", ".tar.bz2", ".tar.xz")),  # each codec's own end
])
def test_a_cut_off_stream_is_refused(tmp_path, source, ext, cut):
    archive = tmp_path / ("model" + ext)
    pack_directory(source, archive)
    archive.write_bytes(archive.read_bytes()[:-cut])
    with pytest.raises(CorruptArchiveError, match="damaged or truncated"):
        verify_archive(archive)


def test_a_foreign_tar_with_the_minimal_end_marker_is_read(tmp_path, source):
    # Writers such as Go's archive/tar end with the two zero blocks and no
    # record padding: valid, and accepted.
    archive = tmp_path / "foreign.tar"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(source / "model.json", "model.json")
    data = buffer.getvalue().rstrip(b"\0")
    data += b"\0" * (-len(data) % 512) + b"\0" * 1024
    archive.write_bytes(data)
    with pytest.warns(dffml_archive.UnverifiedArchiveWarning):
        manifest = verify_archive(archive)
    assert [member.path for member in manifest.members] == ["model.json"]
    archive.write_bytes(data[:-512])  # one zero block: cut off
    with pytest.raises(CorruptArchiveError, match="end-of-archive marker"):
        verify_archive(archive)


def test_our_archive_of_zeros_opens_whatever_its_ratio(tmp_path):
    # An all-zero tensor (optimizer state at step 0) compresses ~10,000:1.
    tree = tmp_path / "zeros"
    tree.mkdir()
    with open(tree / "state.bin", "wb") as handle:
        for _ in range(64):
            handle.write(bytes(1 << 20))
    archive = tmp_path / "zeros.tar.zst"
    pack_directory(tree, archive)
    assert archive.stat().st_size * 1000 < 64 << 20
    assert verify_archive(archive).verified
    extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "state.bin").stat().st_size == 64 << 20


def gzip_bomb(path: pathlib.Path, size: int) -> None:
    """A foreign .tar.gz of one ``size``-byte file of zeros, streamed."""
    with gzip.open(path, "wb", compresslevel=9) as raw, tarfile.open(
        fileobj=raw, mode="w|"
    ) as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size

        class Zeros(io.RawIOBase):
            left = size

            def readinto(self, view):
                count = min(len(view), self.left)
                view[:count] = bytes(count)
                self.left -= count
                return count

        tar.addfile(info, Zeros())


def test_a_foreign_gzip_bomb_is_refused_early_with_default_limits(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    gzip_bomb(bomb, 1 << 30)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(ArchiveLimitError, match="compression ratio above 100:1") as raised:
        extract_archive(bomb, tmp_path / "out")
    assert "without a manifest" in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_a_member_larger_than_its_manifest_declares_is_refused(tmp_path, source):
    # A manifest that under-declares a member (to slip past max_size) is
    # caught before more than the declared size is written.
    archive = tmp_path / "model.tar"
    pack_directory(source, archive)
    with tarfile.open(archive) as tar:
        members = [(info, tar.extractfile(info).read() if info.isfile() else None)
                   for info in tar.getmembers()]
    manifest = json.loads(members[0][1])
    for member in manifest["members"]:
        if member["path"] == "weights/layer0.bin":
            member["size"] = 100
    forged = tmp_path / "forged.tar"
    with tarfile.open(forged, "w", format=tarfile.PAX_FORMAT) as tar:
        for index, (info, data) in enumerate(members):
            if index == 0:
                data = json.dumps(manifest).encode()
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    with pytest.raises(CorruptArchiveError, match="manifest declares 100"):
        verify_archive(forged)


@pytest.mark.parametrize("command", ["verify", "inspect", "extract"])
def test_a_directory_given_as_the_archive_is_named_as_one(tmp_path, command):
    args = [command, tmp_path] + ([tmp_path / "out"] if command == "extract" else [])
    result = cli(*args)
    assert result.returncode == 1, result.stderr
    assert "is a directory" in result.stderr and "unsupported" not in result.stderr


def test_inspect_shows_the_names_extract_writes(tmp_path, source):
    archive = tmp_path / "gnu.tar.gz"
    subprocess.run(["tar", "-C", str(source), "-czf", str(archive), "."], check=True)
    shown = cli("inspect", archive)
    assert shown.returncode == 0, shown.stderr
    listed = [line.split()[-1] for line in shown.stdout.splitlines() if line.startswith("  ")]
    assert "./" not in listed and not any(name.startswith("./") for name in listed)
    assert sorted(listed) == ["model.json", "weights/", "weights/layer0.bin"]


def test_extract_into_a_243_character_directory(tmp_path, source):
    archive = tmp_path / "model.tar.gz"
    pack_directory(source, archive)
    destination = tmp_path / ("d" * 243)
    result = cli("extract", archive, destination)
    assert result.returncode == 0, result.stderr
    assert (destination / "weights" / "layer0.bin").is_file()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


_HOLD_A_DIRECTORY = (
    "import fcntl, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_staging_left_by_a_killed_extract_is_removed_by_the_next(tmp_path, source):
    archive = tmp_path / "model.tar.gz"
    pack_directory(source, archive)
    abandoned = tmp_path / ".out.k1l2m3n4.extracting"  # a killed extract's, 1 MiB
    (abandoned / "weights").mkdir(parents=True)
    (abandoned / "weights" / "layer0.bin").write_bytes(bytes(1 << 20))
    alive = tmp_path / ".out.a1b2c3d4.extracting"  # a running extract's
    (alive / "part").mkdir(parents=True)
    other = tmp_path / ".outer.q1w2e3r4.extracting"  # another destination's
    (other / "x").mkdir(parents=True)
    young = tmp_path / ".out.y1o2u3n4.extracting"  # just made: maybe not locked yet
    young.mkdir()
    an_hour_ago = time.time() - 3600
    for directory in (abandoned, alive, other):
        os.utime(directory, (an_hour_ago, an_hour_ago))
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_A_DIRECTORY, str(alive)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = cli("extract", archive, tmp_path / "out")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    assert not abandoned.exists()
    assert alive.exists() and other.exists() and young.exists()


def test_dffml_predict_on_a_damaged_model_archive_says_so_in_one_line(tmp_path):
    from _e2e_helpers import DFFML, write_csv
    from _helpers import subprocess_env

    write_csv(tmp_path / "train.csv", [{"x": float(x), "y": 2.0 * x} for x in range(10)])
    common = ["-sources", "f=csv", "-source-filename", "train.csv"]

    def dffml(*args):
        return subprocess.run([DFFML, *args, *common], cwd=str(tmp_path), capture_output=True,
                              text=True, timeout=300, env=subprocess_env())

    trained = dffml("train", "-model", "slr_archive", "-model-features", "x:float:1",
                    "-model-predict", "y:float:1", "-model-location", "model.tar.gz")
    assert trained.returncode == 0, trained.stderr
    data = bytearray((tmp_path / "model.tar.gz").read_bytes())
    for offset in range(10, len(data) - 10):  # a byte inside the deflate stream
        data[offset] ^= 0x5A
        (tmp_path / "damaged.tar.gz").write_bytes(bytes(data))
        data[offset] ^= 0x5A
        try:
            verify_archive(tmp_path / "damaged.tar.gz")
        except CorruptArchiveError as error:
            if "Invalid" in str(error):
                break
    else:
        pytest.fail("no byte of the model archive makes its codec fail")
    result = dffml("predict", "all", "-model", "slr_archive", "-model-location", "damaged.tar.gz")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "damaged or truncated" in last
