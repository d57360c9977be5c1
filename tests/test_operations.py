"""The dffml operations ``archive_pack``, ``archive_extract`` and
``archive_verify``: called directly, run in dataflows through the Python API
(MemoryOrchestrator) and through the real ``dffml dataflow create/run`` CLI,
exactly as a user would write them.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

import pytest
from dffml import DataFlow, GetSingle, Input, MemoryOrchestrator, run
from dffml.df.base import OperationImplementation
from dffml.df.types import InputFlow, Operation

import dffml_archive as da
from dffml_archive.operations import (
    ARCHIVE_DIRECTORY,
    ARCHIVE_PATH,
    ArchiveLimitsConfig,
    archive_extract,
    archive_pack,
    archive_verify,
)

from _helpers import read_tree, subprocess_env

REPO = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
MANIFEST_FORMAT = "dffml-archive-manifest"


def tamper(archive: pathlib.Path) -> None:
    """Flip one byte of config.json's content inside an uncompressed tar."""
    data = bytearray(archive.read_bytes())
    position = data.index(b'{"features": ["x"]')
    data[position + 2] ^= 0x20
    archive.write_bytes(bytes(data))


def dffml(*args, cwd=None) -> subprocess.CompletedProcess:
    script = shutil.which("dffml", path=str(BIN)) or shutil.which("dffml")
    if script is None:
        pytest.fail(f"the dffml console script is not installed (looked in {BIN} and PATH)")
    return subprocess.run(
        [script, *map(str, args)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=cwd,
        timeout=120,
    )


def pack_with_our_cli(directory, archive) -> None:
    subprocess.run(
        [sys.executable, "-m", "dffml_archive", "pack", str(directory), str(archive)],
        check=True,
        env=subprocess_env(),
        capture_output=True,
    )


def create_dataflow(path: pathlib.Path, *args) -> dict:
    result = dffml("dataflow", "create", *args)
    assert result.returncode == 0, result.stderr
    path.write_text(result.stdout)
    return json.loads(result.stdout)


def run_single(dataflow: pathlib.Path, *inputs) -> list:
    result = dffml("dataflow", "run", "single", "-dataflow", dataflow, "-inputs", *inputs)
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stderr[-3000:]}"
    return json.loads(result.stdout)


# --------------------------------------------------------------------------
# registration


@pytest.mark.parametrize("function", [archive_pack, archive_extract, archive_verify])
def test_operations_are_registered_under_their_names(function):
    name = function.__name__
    assert function.op.name == name
    assert Operation.load(name) is function.op
    assert OperationImplementation.load(name) is function.imp


# --------------------------------------------------------------------------
# direct calls


async def test_archive_pack_direct(tmp_path, model_tree):
    archive = tmp_path / "out" / "model.tar.gz"
    result = await archive_pack(str(model_tree), str(archive))
    assert set(result) == set(archive_pack.op.outputs)
    assert result["archive"] == str(archive)
    manifest = result["manifest"]
    assert manifest["format"] == MANIFEST_FORMAT
    assert {member["path"] for member in manifest["members"]} == set(read_tree(model_tree))
    assert manifest["model"] is None
    json.dumps(manifest)  # a dataflow value: plain JSON
    checked = await da.verify(archive)
    assert checked.to_json() == manifest

    model = {"plugin": "slr", "config": {"features": ["x:float:1"]}}
    result = await archive_pack(str(model_tree), str(archive), model)
    assert result["manifest"]["model"] == model
    assert (await da.inspect(archive)).manifest.model == model


async def test_archive_extract_direct(tmp_path, model_tree):
    archive = tmp_path / "model.zip"
    await da.pack(model_tree, archive)
    destination = tmp_path / "a" / "b" / "dest"
    result = await archive_extract(str(archive), str(destination))
    assert set(result) == set(archive_extract.op.outputs)
    assert result["directory"] == str(destination)
    assert result["verified"] is True
    assert result["manifest"]["format"] == MANIFEST_FORMAT
    assert read_tree(destination) == read_tree(model_tree)
    # The config: limits and replace.
    with pytest.raises(da.DestinationError):
        await archive_extract(str(archive), str(destination))
    with pytest.raises(da.ArchiveLimitError, match="1 members"):
        await archive_extract(
            str(archive), str(tmp_path / "other"), ArchiveLimitsConfig(max_members=1)
        )
    assert not (tmp_path / "other").exists()
    (destination / "config.json").write_text("changed")
    result = await archive_extract(
        str(archive), str(destination), ArchiveLimitsConfig(replace=True)
    )
    assert read_tree(destination) == read_tree(model_tree)


async def test_archive_extract_of_a_foreign_archive_is_unverified(tmp_path, model_tree):
    archive = tmp_path / "foreign.tar"
    with tarfile.open(archive, "w") as bundle:
        bundle.add(model_tree / "config.json", arcname="config.json")
    with pytest.warns(da.UnverifiedArchiveWarning):
        result = await archive_extract(str(archive), str(tmp_path / "dest"))
    assert result["verified"] is False
    assert read_tree(tmp_path / "dest") == {"config.json": (model_tree / "config.json").read_bytes()}


async def test_archive_verify_direct(tmp_path, model_tree):
    archive = tmp_path / "model.tar"
    await da.pack(model_tree, archive)
    result = await archive_verify(str(archive))
    assert set(result) == set(archive_verify.op.outputs)
    assert result["verified"] is True
    assert result["error"] is None
    assert result["manifest"]["format"] == MANIFEST_FORMAT

    tamper(archive)
    result = await archive_verify(str(archive))
    assert result["verified"] is False
    assert result["manifest"] is None
    assert str(archive) in result["error"]
    assert "config.json" in result["error"]

    missing = tmp_path / "missing.tar.gz"
    result = await archive_verify(str(missing))
    assert result["verified"] is False and str(missing) in result["error"]

    result = await archive_verify(str(tmp_path / "model.rar"))
    assert result["verified"] is False and "model.rar" in result["error"]


async def test_archive_verify_direct_with_limits(tmp_path, model_tree):
    archive = tmp_path / "model.tar.zst"
    await da.pack(model_tree, archive)
    result = await archive_verify(str(archive), ArchiveLimitsConfig(max_members=2))
    assert result["verified"] is False
    assert "2 members" in result["error"]
    result = await archive_verify(str(archive), ArchiveLimitsConfig._fromdict(max_members=100))
    assert result["verified"] is True


# --------------------------------------------------------------------------
# Python API dataflows


async def _run_flow(dataflow, *inputs) -> dict:
    outputs = []
    async for _ctx, results in run(dataflow, list(inputs), orchestrator=MemoryOrchestrator()):
        outputs.append(results)
    assert len(outputs) == 1
    return outputs[0]


def _spec(*names) -> Input:
    return Input(value=list(names), definition=GetSingle.op.inputs["spec"])


async def test_python_dataflow_pack(tmp_path, model_tree):
    """The automatic flow, as DataFlow(...) builds it from the operations."""
    archive = tmp_path / "model.tar.gz"
    dataflow = DataFlow(archive_pack, GetSingle)
    assert "seed" in dataflow.flow["archive_pack"].inputs["archive"], (
        "archive_pack's 'archive' input is fed only by its own 'archive' output "
        f"(same definition): {dataflow.flow['archive_pack'].inputs}"
    )
    results = await _run_flow(
        dataflow,
        Input(value=str(model_tree), definition=ARCHIVE_DIRECTORY),
        Input(value=str(archive), definition=ARCHIVE_PATH),
        _spec("archive_manifest"),
    )
    assert archive.is_file(), "archive_pack never ran"
    await da.verify(archive)
    members = {m["path"] for m in results["archive_manifest"]["members"]}
    assert members == set(read_tree(model_tree))


async def test_python_dataflow_extract(tmp_path, model_tree):
    archive = tmp_path / "model.tar.gz"
    await da.pack(model_tree, archive)
    destination = tmp_path / "dest"
    dataflow = DataFlow(archive_extract, GetSingle)
    results = await _run_flow(
        dataflow,
        Input(value=str(archive), definition=ARCHIVE_PATH),
        Input(value=str(destination), definition=ARCHIVE_DIRECTORY),
        _spec("archive_verified"),
    )
    assert results == {"archive_verified": True}
    assert read_tree(destination) == read_tree(model_tree)


async def test_python_dataflow_verify(tmp_path, model_tree):
    archive = tmp_path / "model.tar"
    await da.pack(model_tree, archive)
    dataflow = DataFlow(archive_verify, GetSingle)
    results = await _run_flow(
        dataflow,
        Input(value=str(archive), definition=ARCHIVE_PATH),
        _spec("archive_verified", "archive_error"),
    )
    assert results == {"archive_verified": True, "archive_error": None}


async def test_python_dataflow_with_explicit_flow_and_configs(tmp_path, model_tree):
    """The operations themselves work inside the MemoryOrchestrator when the
    flow and the configs are spelled out (control for the tests above)."""
    archive = tmp_path / "model.tar.xz"
    pack_flow = DataFlow(
        archive_pack,
        GetSingle,
        flow={
            "archive_pack": InputFlow(inputs={"directory": ["seed"], "archive": ["seed"]}),
            "get_single": InputFlow(inputs={"spec": ["seed"]}),
        },
    )
    results = await _run_flow(
        pack_flow,
        Input(value=str(model_tree), definition=ARCHIVE_DIRECTORY),
        Input(value=str(archive), definition=ARCHIVE_PATH),
        _spec("archive_manifest"),
    )
    assert {m["path"] for m in results["archive_manifest"]["members"]} == set(read_tree(model_tree))
    verify_flow = DataFlow(
        archive_verify, GetSingle, configs={"archive_verify": ArchiveLimitsConfig()}
    )
    results = await _run_flow(
        verify_flow,
        Input(value=str(archive), definition=ARCHIVE_PATH),
        _spec("archive_verified", "archive_error"),
    )
    assert results == {"archive_verified": True, "archive_error": None}


# --------------------------------------------------------------------------
# the dffml CLI: dataflow create / dataflow run single


def test_cli_dataflow_pack(tmp_path, model_tree):
    dataflow = tmp_path / "pack.json"
    created = create_dataflow(
        dataflow, "archive_pack", "get_single", "-inputs", '["archive_manifest"]=get_single_spec'
    )
    inputs = created["flow"]["archive_pack"]["inputs"]
    assert inputs["archive"] == ["seed"], f"archive_pack inputs are not seeded: {inputs}"
    archive = tmp_path / "model.tar.gz"
    results = run_single(dataflow, f"{model_tree}=archive_directory", f"{archive}=archive_path")
    assert archive.is_file(), "archive_pack never ran"
    manifest = results[0]["archive_manifest"]
    assert {m["path"] for m in manifest["members"]} == set(read_tree(model_tree))


def test_cli_dataflow_extract(tmp_path, model_tree):
    archive = tmp_path / "model.zip"
    pack_with_our_cli(model_tree, archive)
    dataflow = tmp_path / "extract.json"
    created = create_dataflow(
        dataflow, "archive_extract", "get_single", "-inputs", '["archive_verified"]=get_single_spec'
    )
    inputs = created["flow"]["archive_extract"]["inputs"]
    assert inputs["directory"] == ["seed"], f"archive_extract inputs are not seeded: {inputs}"
    destination = tmp_path / "out" / "dest"
    results = run_single(dataflow, f"{archive}=archive_path", f"{destination}=archive_directory")
    assert results == [{"archive_verified": True}]
    assert read_tree(destination) == read_tree(model_tree)


def test_cli_dataflow_verify(tmp_path, model_tree):
    archive = tmp_path / "model.tar"
    pack_with_our_cli(model_tree, archive)
    dataflow = tmp_path / "verify.json"
    create_dataflow(
        dataflow,
        "archive_verify",
        "get_single",
        "-inputs",
        '["archive_verified", "archive_error"]=get_single_spec',
    )
    results = run_single(dataflow, f"{archive}=archive_path")
    assert results == [{"archive_verified": True, "archive_error": None}]
    tamper(archive)
    results = run_single(dataflow, f"{archive}=archive_path")
    assert results[0]["archive_verified"] is False
    assert str(archive) in results[0]["archive_error"]


def test_cli_dataflow_with_explicit_flow_and_config(tmp_path, model_tree):
    """Control for the three tests above: with the seeding flow and a config
    spelled out, the operations run through the real dffml CLI."""
    archive = tmp_path / "model.tar.bz2"
    pack = tmp_path / "pack.json"
    create_dataflow(
        pack,
        "archive_pack",
        "get_single",
        "-flow",
        '["seed"]=archive_pack.inputs.archive',
        "-inputs",
        '["archive_manifest"]=get_single_spec',
    )
    results = run_single(pack, f"{model_tree}=archive_directory", f"{archive}=archive_path")
    assert archive.is_file()
    assert {m["path"] for m in results[0]["archive_manifest"]["members"]} == set(
        read_tree(model_tree)
    )

    extract = tmp_path / "extract.json"
    create_dataflow(
        extract,
        "archive_extract",
        "get_single",
        "-flow",
        '["seed"]=archive_extract.inputs.directory',
        "-config",
        "100=archive_extract.max_members",
        "-inputs",
        '["archive_verified"]=get_single_spec',
    )
    destination = tmp_path / "dest"
    results = run_single(extract, f"{archive}=archive_path", f"{destination}=archive_directory")
    assert results == [{"archive_verified": True}]
    assert read_tree(destination) == read_tree(model_tree)
