"""The command line, run for real: ``python -m dffml_archive ...`` and the
same commands through the installed ``dffml`` console script
(``dffml service archive ...``).

Contract: exit 0 on success, 1 when the operation failed (exactly one
``error: ...`` line on stderr, no traceback unless ``-v``), 2 for usage
errors; ``warning: ...`` lines for archives made by other tools.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import dffml_archive

from _e2e_helpers import without_root_override
from _helpers import read_tree, subprocess_env

REPO = pathlib.Path(__file__).resolve().parent.parent
# Not resolved: a virtual environment's python is a symlink to the base one.
BIN = pathlib.Path(sys.executable).parent


def cli(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dffml_archive", *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
        **kwargs,
    )


def dffml_script() -> str:
    found = shutil.which("dffml", path=str(BIN)) or shutil.which("dffml")
    if found is None:
        pytest.fail(f"the dffml console script is not installed (looked in {BIN} and PATH)")
    return found


def service(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [dffml_script(), "service", "archive", *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
    )


def assert_ok(result):
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"


def assert_one_error_line(result, *fragments):
    assert result.returncode == 1, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def assert_usage_error(result):
    assert result.returncode == 2, f"rc={result.returncode}\n{result.stderr}"
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------
# python -m dffml_archive: success paths


@pytest.mark.parametrize("extension", [".tar.gz", ".zip", ".tar.zst"])
def test_pack_extract_verify_inspect_round_trip(tmp_path, model_tree, extension):
    archive = tmp_path / "out" / ("model" + extension)
    result = cli("pack", model_tree, archive)
    assert_ok(result)
    assert result.stderr == ""  # no progress bar or warnings off a terminal
    files = sum(1 for data in read_tree(model_tree).values() if data is not None)
    assert f"packed {files} file(s)" in result.stdout
    assert str(archive) in result.stdout
    assert archive.is_file()

    destination = tmp_path / "not" / "yet" / "there"
    result = cli("extract", archive, destination)
    assert_ok(result)
    assert result.stderr == ""
    assert read_tree(destination) == read_tree(model_tree)
    assert os.access(destination / "run.sh", os.X_OK)

    result = cli("verify", archive)
    assert_ok(result)
    assert "OK" in result.stdout and str(archive) in result.stdout

    result = cli("inspect", archive)
    assert_ok(result)
    assert "manifest: version 1" in result.stdout
    for member in ("config.json", "weights/layer0.bin", "notes ü.txt", "weights/empty/"):
        assert member in result.stdout

    result = cli("inspect", "--json", archive)
    assert_ok(result)
    info = json.loads(result.stdout)
    assert info["path"] == str(archive)
    assert info["format"] == extension[1:]
    assert info["verified_manifest"] is True
    assert info["size"] == archive.stat().st_size
    assert {member["path"] for member in info["members"]} == set(read_tree(model_tree))
    members = {member["path"]: member for member in info["members"]}
    assert members["run.sh"]["mode"] == "0755"
    assert members["weights/empty"]["type"] == "directory"
    assert info["manifest"]["created_by"]["dffml-archive"] == dffml_archive.__version__


def test_version():
    result = cli("--version")
    assert_ok(result)
    assert dffml_archive.__version__ in result.stdout


@pytest.mark.parametrize(
    "extension, level", [(".tar.gz", "1"), (".tar.bz2", "9"), (".tar.xz", "9"), (".tar.zst", "19")]
)
def test_pack_with_a_valid_level(tmp_path, model_tree, extension, level):
    archive = tmp_path / ("model" + extension)
    assert_ok(cli("pack", "--level", level, model_tree, archive))
    assert_ok(cli("verify", archive))


@pytest.mark.parametrize("extension", [".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst"])
def test_pack_with_an_out_of_range_level_is_one_clear_error(tmp_path, model_tree, extension):
    """Like every failure: one ``error:`` line that names the archive (see
    errors.py), no traceback, nothing left on disk."""
    archive = tmp_path / ("model" + extension)
    assert_one_error_line(cli("pack", "--level", "99", model_tree, archive), archive.name)
    assert not archive.exists()
    assert [name for name in os.listdir(tmp_path) if name.endswith(".partial")] == []


def test_extract_refuses_non_empty_destination_unless_replace(tmp_path, model_tree):
    archive = tmp_path / "model.zip"
    assert_ok(cli("pack", model_tree, archive))
    destination = tmp_path / "dest"
    destination.mkdir()
    (destination / "old.txt").write_text("old")
    line = assert_one_error_line(cli("extract", archive, destination), "not empty")
    assert "--replace" in line
    assert read_tree(destination) == {"old.txt": b"old"}
    assert_ok(cli("extract", archive, destination, "--replace"))
    assert read_tree(destination) == read_tree(model_tree)
    # An existing *empty* directory is fine without --replace.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_ok(cli("extract", archive, empty))
    assert read_tree(empty) == read_tree(model_tree)


# --------------------------------------------------------------------------
# failures: one line, exit 1


def test_missing_archive(tmp_path):
    missing = tmp_path / "nope.tar.gz"
    for command in ("verify", "inspect"):
        assert_one_error_line(cli(command, missing), str(missing))
    assert_one_error_line(cli("extract", missing, tmp_path / "dest"), str(missing))
    assert not (tmp_path / "dest").exists()


def test_unknown_extension_lists_the_supported_ones(tmp_path, model_tree):
    archive = tmp_path / "model.rar"
    line = assert_one_error_line(cli("pack", model_tree, archive), "model.rar")
    for extension in dffml_archive.SUPPORTED_EXTENSIONS:
        assert extension in line
    assert not archive.exists()
    assert_one_error_line(cli("verify", archive), ".tar.gz")


def test_pack_of_a_missing_directory(tmp_path):
    archive = tmp_path / "model.tar"
    assert_one_error_line(cli("pack", tmp_path / "nothing-here", archive), "nothing-here")
    assert not archive.exists()


def test_tampered_and_truncated_archives(tmp_path, model_tree):
    archive = tmp_path / "model.tar"
    assert_ok(cli("pack", model_tree, archive))
    data = bytearray(archive.read_bytes())
    marker = b'"predict": "y"'
    position = data.index(b'{"features": ["x"], ' + marker)
    data[position + 2] ^= 0x20  # 'f' -> 'F' inside config.json
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(bytes(data))
    assert_one_error_line(cli("verify", tampered), "tampered.tar", "config.json")
    destination = tmp_path / "dest"
    assert_one_error_line(cli("extract", tampered, destination), "config.json")
    assert not destination.exists(), "a failed extraction must leave nothing behind"
    assert [n for n in os.listdir(tmp_path) if n.startswith(".dest")] == []

    truncated = tmp_path / "truncated.tar.gz"
    assert_ok(cli("pack", model_tree, tmp_path / "good.tar.gz"))
    good = (tmp_path / "good.tar.gz").read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    assert_one_error_line(cli("verify", truncated), "truncated.tar.gz")


def test_max_members_limit(tmp_path, model_tree):
    archive = tmp_path / "model.tar.xz"
    assert_ok(cli("pack", model_tree, archive))
    line = assert_one_error_line(cli("verify", "--max-members", "1", archive))
    assert "1 members" in line and "max-members" in line
    destination = tmp_path / "dest"
    assert_one_error_line(cli("extract", archive, destination, "--max-members", "1"), "1 members")
    assert not destination.exists()
    assert_ok(cli("verify", "--max-members", "100", archive))


def test_verbose_shows_a_traceback(tmp_path):
    missing = tmp_path / "nope.zip"
    result = cli("-v", "verify", missing)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: ")


def test_foreign_archive_warns(tmp_path, model_tree):
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("GNU tar is not installed")
    archive = tmp_path / "foreign.tar.gz"
    subprocess.run([tar, "czf", str(archive), "-C", str(model_tree), "."], check=True)
    for args in (("verify", archive), ("extract", archive, tmp_path / "dest")):
        result = cli(*args)
        assert_ok(result)
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
        assert len(warnings) == 1, result.stderr
        assert "foreign.tar.gz" in warnings[0] and "manifest" in warnings[0]
        assert "Traceback" not in result.stderr
    assert read_tree(tmp_path / "dest") == read_tree(model_tree)
    result = cli("inspect", archive)
    assert_ok(result)
    assert "manifest: none" in result.stdout
    info = json.loads(cli("inspect", "--json", archive).stdout)
    assert info["verified_manifest"] is False and info["manifest"] is None


# --------------------------------------------------------------------------
# usage errors: exit 2


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["pack"],
        ["pack", "only-one"],
        ["extract", "a.zip"],
        ["pack", "d", "a.zip", "--level", "high"],
        ["verify", "a.zip", "--max-members", "many"],
        ["verify", "a.zip", "--max-size", "-1"],
        ["extract", "a.zip", "out", "--max-ratio", "0"],
        ["inspect", "a.zip", "--no-such-option"],
    ],
)
def test_usage_errors_exit_2(args):
    assert_usage_error(cli(*args))


def test_a_limit_of_zero_or_less_from_the_environment_is_one_clear_error(tmp_path, model_tree):
    archive = tmp_path / "m.zip"
    assert_ok(cli("pack", model_tree, archive))
    result = subprocess.run(
        [sys.executable, "-m", "dffml_archive", "verify", str(archive)],
        capture_output=True, text=True, env=dict(subprocess_env(), DFFML_ARCHIVE_MAX_SIZE="-3"),
    )
    assert_one_error_line(result, "DFFML_ARCHIVE_MAX_SIZE='-3'", "positive")


# --------------------------------------------------------------------------
# paths a user can get wrong: each named, nothing lost


def test_an_empty_destination_is_refused_and_nothing_is_deleted(tmp_path, model_tree):
    archive = tmp_path / "m.zip"
    assert_ok(cli("pack", model_tree, archive))
    (tmp_path / "precious.txt").write_text("keep me\n")
    before = read_tree(tmp_path)
    # "" is what an unset $DEST gives; it must not mean the current directory.
    assert_one_error_line(cli("extract", archive, "", "--replace", cwd=str(tmp_path)),
                          "empty path")
    assert read_tree(tmp_path) == before


def test_replace_refuses_a_destination_that_holds_the_archive(tmp_path, model_tree):
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "m.tar.gz"
    assert_ok(cli("pack", model_tree, archive))
    before = read_tree(work)
    assert_one_error_line(cli("extract", archive, work, "--replace"),
                          "would delete the archive")
    assert read_tree(work) == before


def test_an_empty_directory_to_pack_is_refused(tmp_path):
    assert_one_error_line(cli("pack", "", tmp_path / "m.zip", cwd=str(tmp_path)), "empty path")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["pack", "extract"])
def test_swapped_arguments_are_named_as_such(tmp_path, model_tree, command):
    archive = tmp_path / "m.zip"
    assert_ok(cli("pack", model_tree, archive))
    before = read_tree(tmp_path)
    if command == "pack":
        result, usage = cli("pack", archive, model_tree), "pack DIRECTORY ARCHIVE"
    else:
        result, usage = cli("extract", model_tree, archive), "extract ARCHIVE DEST"
    assert_one_error_line(result, "m.zip", "look swapped", usage)
    assert read_tree(tmp_path) == before


def test_an_archive_path_that_is_a_directory(tmp_path, model_tree):
    (tmp_path / "dir.zip").mkdir()
    assert_one_error_line(cli("verify", tmp_path / "dir.zip"), "is a directory, not an archive")
    assert_one_error_line(cli("pack", model_tree, tmp_path / "dir.zip"),
                          "is a directory, not an archive")
    assert sorted(tmp_path.iterdir()) == [tmp_path / "dir.zip", model_tree]  # no temp file left


def test_a_file_in_the_archive_path(tmp_path, model_tree):
    (tmp_path / "plain").write_text("a file\n")
    assert_one_error_line(cli("pack", model_tree, tmp_path / "plain" / "m.zip"),
                          "plain", "is a file, not a directory")


def cli_as_a_user(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*without_root_override(), sys.executable, "-m", "dffml_archive", *map(str, args)],
        capture_output=True, text=True, env=subprocess_env(), timeout=120, **kwargs,
    )


def test_permission_errors_name_the_place_and_never_a_temporary_file(tmp_path, model_tree):
    archive = tmp_path / "m.zip"
    assert_ok(cli("pack", model_tree, archive))
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    unreadable = tmp_path / "secret.zip"
    shutil.copy(archive, unreadable)
    unreadable.chmod(0)
    try:
        packed = cli_as_a_user("pack", model_tree, read_only / "x.zip")
        extracted = cli_as_a_user("extract", archive, read_only / "out")
        verified = cli_as_a_user("verify", unreadable)
    finally:
        read_only.chmod(0o755)
        unreadable.chmod(0o644)
    assert_one_error_line(packed, "x.zip", f"cannot write in {str(read_only)!r}",
                          "permission denied")
    assert_one_error_line(extracted, "cannot create", "permission denied")
    assert_one_error_line(verified, "secret.zip: cannot be read: permission denied")
    for result in (packed, extracted, verified):
        assert ".partial" not in result.stderr and ".extracting" not in result.stderr
        assert "damaged" not in result.stderr
    assert list(read_only.iterdir()) == []


def test_output_into_a_closed_pipe_ends_quietly(tmp_path, model_tree):
    archive = tmp_path / "m.zip"
    assert_ok(cli("pack", model_tree, archive))
    reader = subprocess.Popen(
        [sys.executable, "-m", "dffml_archive", "inspect", str(archive), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(),
    )
    reader.stdout.close()  # as `| head -0` does: the reader is gone before the output
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_output_that_cannot_be_written_is_one_clear_error(tmp_path, model_tree):
    archive = tmp_path / "m.zip"
    assert_ok(cli("pack", model_tree, archive))
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "dffml_archive", "inspect", str(archive), "--json"],
            stdout=full, stderr=subprocess.PIPE, text=True, env=subprocess_env(), timeout=60,
        )
    assert_one_error_line(result, "cannot write the output", "No space left")


def test_the_console_script_calls_itself_by_its_name():
    script = shutil.which("dffml-archive", path=str(BIN))
    if script is None:
        pytest.fail(f"the dffml-archive console script is not installed in {BIN}")
    result = subprocess.run([script], capture_output=True, text=True, env=subprocess_env())
    assert_usage_error(result)
    assert result.stderr.startswith("usage: dffml-archive ")


# --------------------------------------------------------------------------
# start-up


HELP_PROBE = """
import runpy, sys
sys.argv = ["dffml_archive", "--help"]
try:
    runpy.run_module("dffml_archive", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
heavy = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("dffml", "numpy", "pandas", "sklearn", "pkg_resources")
)
print("PROBE", code, ",".join(heavy), file=sys.stderr)
"""


def test_help_does_not_import_dffml():
    result = subprocess.run(
        [sys.executable, "-c", HELP_PROBE],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    probe = [line for line in result.stderr.splitlines() if line.startswith("PROBE")]
    assert probe, result.stderr
    _, code, heavy = (probe[0].split(" ") + [""])[:3]
    assert code == "0"
    assert heavy == "", f"--help imported {heavy}"
    for command in ("pack", "extract", "verify", "inspect"):
        assert command in result.stdout
    # The same with -X importtime on the real module entry point.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dffml_archive", "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert result.returncode == 0
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert not [name for name in imported if name == "dffml" or name.startswith("dffml.")]


# --------------------------------------------------------------------------
# dffml service archive ...


def test_service_round_trip(tmp_path, model_tree):
    archive = tmp_path / "model.tar.gz"
    result = service("pack", model_tree, archive)
    assert_ok(result)
    assert "packed" in result.stdout
    assert archive.is_file()

    destination = tmp_path / "a" / "b" / "dest"
    result = service("extract", archive, destination)
    assert_ok(result)
    assert read_tree(destination) == read_tree(model_tree)

    result = service("verify", archive)
    assert_ok(result)
    assert "OK" in result.stdout

    result = service("inspect", "--json", archive)
    assert_ok(result)
    info = json.loads(result.stdout)
    assert info["format"] == "tar.gz"
    assert info["verified_manifest"] is True
    assert {member["path"] for member in info["members"]} == set(read_tree(model_tree))


def test_service_passes_options_through_and_exit_codes_propagate(tmp_path, model_tree):
    archive = tmp_path / "model.zip"
    assert_ok(service("pack", model_tree, archive))
    destination = tmp_path / "dest"
    destination.mkdir()
    (destination / "old").write_text("old")
    # Exit 1 with our one-line error, not a dffml traceback.
    assert_one_error_line(service("extract", archive, destination), "not empty")
    # Options after the command reach our parser untouched (not dffml's).
    assert_ok(service("extract", archive, destination, "--replace", "--max-members", "50"))
    assert read_tree(destination) == read_tree(model_tree)
    assert_one_error_line(service("verify", tmp_path / "missing.zip"), "missing.zip")
    # Usage errors: exit 2.
    assert service("pack", "only-one").returncode == 2
