"""The model repository from the outside: the real ``dffml`` CLI training into
and predicting from ``models:`` locations, ``dffml service models`` and
``python -m dffml_archive models``, and what must survive concurrent,
killed, read-only and full-disk saves."""
import json
import os
import pathlib
import random
import shlex
import signal
import subprocess
import sys
import time

import pytest

from _e2e_helpers import (
    CLI_TIMEOUT, DFFML, dffml_cli, parse_records, without_root_override, write_csv,
)
from _helpers import read_tree, subprocess_env
from _repository_helpers import replace_blob, stored_digests

TRAIN = [{"experience": x, "salary": 10 * x + 5} for x in range(8)]
QUERY = [{"experience": 20}]
SLR = ["-model", "slr_archive", "-model-features", "experience:int:1",
       "-model-predict", "salary:float:1"]


@pytest.fixture
def embedded_work(tmp_path, monkeypatch) -> pathlib.Path:
    """A work directory and an embedded repository (for what only a local
    disk can show: permissions, a full disk)."""
    for name in ("DFFML_ARCHIVE_REPOSITORY_DB", "DFFML_ARCHIVE_REPOSITORY_BLOBS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DFFML_ARCHIVE_REPOSITORY", str(tmp_path / "repository"))
    write_csv(tmp_path / "train.csv", TRAIN)
    write_csv(tmp_path / "query.csv", QUERY)
    return tmp_path


@pytest.fixture
def work(tmp_path, monkeypatch, repository_backend) -> pathlib.Path:
    """The same on each backend: embedded, and PostgreSQL + SeaweedFS."""
    monkeypatch.setenv("DFFML_ARCHIVE_REPOSITORY", str(tmp_path / "repository"))
    write_csv(tmp_path / "train.csv", TRAIN)
    write_csv(tmp_path / "query.csv", QUERY)
    return tmp_path


def env() -> dict:
    return subprocess_env()


def models(*args, cwd, prefix=(), check=True, service=False, timeout=CLI_TIMEOUT):
    """``python -m dffml_archive models ARGS`` (or ``dffml service models``)."""
    command = [DFFML, "service", "models"] if service else [
        sys.executable, "-m", "dffml_archive", "models"]
    result = subprocess.run(
        [*prefix, *command, *map(str, args)], cwd=str(cwd), env=env(), capture_output=True,
        text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(f"models {args} exited {result.returncode}: {result.stderr}")
    return result


def one_error_line(result, *fragments):
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def predict(location, cwd):
    result = dffml_cli(
        "predict", "all", "-model", "slr_archive", "-model-location", location,
        "-sources", "f=csv", "-source-filename", "query.csv", cwd=cwd, env=env(),
    )
    return parse_records(result.stdout)[0]["prediction"]["salary"]["value"]


def train(location, cwd, *extra):
    return dffml_cli("train", *SLR, *extra, "-model-location", location, "-sources", "f=csv",
                     "-source-filename", "train.csv", cwd=cwd, env=env())


def test_quick_start_train_push_tag_predict(work):
    """README's quick start: train into the repository, push an archive,
    tag a version, predict from the tag."""
    train("models:credit-risk", work)
    log = json.loads(models("log", "credit-risk", "--json", cwd=work).stdout)
    assert [(v["version"], v["tags"]) for v in log] == [(1, ["latest"])]
    assert set(log[0]) >= {"version", "tags", "comment", "created"}
    assert abs(predict("models:credit-risk:1", work) - 205) < 1e-6

    # An archive trained elsewhere, pushed with metadata and an attachment.
    dffml_cli("train", *SLR, "-model-location", "elsewhere.tar.gz", "-sources", "f=csv",
              "-source-filename", "train.csv", cwd=work, env=env())
    pushed = models("push", "elsewhere.tar.gz", "credit-risk", "--comment", "from a laptop",
                    "--meta", "Accuracy=0.93", "--meta", "owner=risk team",
                    "--attach", "train.csv", "--json", cwd=work, service=True)
    assert json.loads(pushed.stdout)["version"] == 2
    models("tag", "credit-risk:2", "production", cwd=work)
    assert abs(predict("models:credit-risk:production", work) - 205) < 1e-6

    shown = json.loads(models("show", "credit-risk:production", "--json", cwd=work).stdout)
    assert shown["version"] == 2 and "production" in shown["tags"]
    assert shown["metadata"]["Accuracy"] == 0.93 and shown["metadata"]["owner"] == "risk team"
    assert shown["metadata"]["entrypoint"] == "slr_archive"
    assert shown["metadata"]["config"]["features"][0]["name"] == "experience"
    assert shown["attachments"] == {"train.csv": (work / "train.csv").stat().st_size}
    assert [m["path"] for m in shown["members"]] == ["Model"]

    found = json.loads(models(
        "find", 'entrypoint == "slr_archive" and Accuracy > 0.8 and "experience" in features',
        "--json", cwd=work).stdout)
    assert [(f["name"], f["version"]) for f in found] == [("credit-risk", 2)]

    models("download", "credit-risk:production", "downloaded.zip", cwd=work)
    assert predict("downloaded.zip", work) == predict("models:credit-risk:2", work)


def test_training_into_a_name_adds_a_version_and_continues_from_latest(work):
    train("models:m", work)
    # No options: the newest version's configuration is used.
    dffml_cli("train", "-model", "slr_archive", "-model-location", "models:m", "-sources",
              "f=csv", "-source-filename", "train.csv", cwd=work, env=env())
    log = json.loads(models("log", "m", "--json", cwd=work).stdout)
    assert [v["version"] for v in log] == [2, 1]
    assert log[0]["new_bytes"] == 0  # the same state: nothing new stored
    # Predicting and assessing add no version.
    predict("models:m", work)
    dffml_cli("accuracy", "-model", "slr_archive", "-model-location", "models:m:latest",
              "-scorer", "mse", "-features", "experience:int:1", "-sources", "f=csv",
              "-source-filename", "train.csv", cwd=work, env=env())
    assert len(json.loads(models("log", "m", "--json", cwd=work).stdout)) == 2


def test_training_into_a_version_is_refused_before_training(work):
    train("models:m", work)
    result = subprocess.run(
        [DFFML, "train", *SLR, "-model-location", "models:m:1", "-sources", "f=csv",
         "-source-filename", "train.csv"], cwd=work, env=env(), capture_output=True, text=True,
        timeout=CLI_TIMEOUT,
    )
    assert result.returncode != 0
    assert "versions are immutable" in result.stderr and "Traceback" not in result.stderr


def test_predicting_from_an_unknown_version_or_tag_says_so(work):
    train("models:m", work)
    for location, message in [("models:m:7", "has no version 7"),
                              ("models:m:prod", "has no tag 'prod'"),
                              ("models:nothing:1", "no such model repository")]:
        result = subprocess.run(
            [DFFML, "predict", "all", "-model", "slr_archive", "-model-location", location,
             "-sources", "f=csv", "-source-filename", "query.csv"],
            cwd=work, env=env(), capture_output=True, text=True, timeout=CLI_TIMEOUT,
        )
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_failed_training_adds_no_version(work):
    train("models:m", work)
    write_csv(work / "bad.csv", [{"experience": "not a number", "salary": 1}])
    result = subprocess.run(
        [DFFML, "train", "-model", "slr_archive", "-model-location", "models:m",
         "-sources", "f=csv", "-source-filename", "bad.csv"],
        cwd=work, env=env(), capture_output=True, text=True, timeout=CLI_TIMEOUT,
    )
    assert result.returncode != 0
    assert [v["version"] for v in json.loads(models("log", "m", "--json", cwd=work).stdout)] == [1]


def test_commands_and_their_errors(work):
    (work / "model").mkdir()
    (work / "model" / "weights.bin").write_bytes(os.urandom(10_000))
    (work / "a.txt").write_text("a")
    (work / "b.txt").write_text("bb")
    out = models("push", "model", "team/m", "--comment", "first", "--meta", "x=1", "y=[2]",
                 "--meta", "z=text", "--attach", "a.txt", "b.txt", cwd=work).stdout
    assert "saved team/m:1" in out
    shown = json.loads(models("show", "team/m:1", "--json", cwd=work).stdout)
    assert (shown["metadata"]["x"], shown["metadata"]["y"], shown["metadata"]["z"]) == (
        1, [2], "text")
    assert shown["attachments"] == {"a.txt": 1, "b.txt": 2}
    assert "team/m" in models("list", cwd=work).stdout
    assert json.loads(models("list", "--json", "--namespace", "team", cwd=work).stdout)[0][
        "latest"] == 1
    models("tag", "team/m:1", "production", cwd=work)
    assert "production" in models("log", "team/m", cwd=work).stdout
    assert "tag production -> 1" in models("log", "team/m", "--events", cwd=work).stdout
    models("untag", "team/m:production", cwd=work)
    one_error_line(models("untag", "team/m:production", cwd=work, check=False), "no tag")
    one_error_line(models("show", "team/m:9", cwd=work, check=False), "team/m:9", "no version 9")
    one_error_line(models("log", "../x", cwd=work, check=False), "is not a repository name")
    one_error_line(models("push", "model", "", cwd=work, check=False), "is not a repository name")
    one_error_line(models("push", "nothing", "m", cwd=work, check=False), "does not exist")
    one_error_line(models("tag", "team/m:1", "latest", cwd=work, check=False), "kept by")
    one_error_line(models("delete", "team/m:production", cwd=work, check=False), "no version")
    one_error_line(models("find", "1 +", cwd=work, check=False), "is not a selector")
    one_error_line(models("push", "model", "m", "--meta", "novalue", cwd=work, check=False),
                   "is not KEY=VALUE")
    one_error_line(models("create", "team/m", cwd=work, check=False), "already exists")
    models("delete", "team/m:1", cwd=work)
    assert json.loads(models("log", "team/m", "--json", cwd=work).stdout) == []
    freed = json.loads(models("gc", "--grace", "0", "--json", cwd=work).stdout)
    assert freed["freed_bytes"] == 10_003
    assert "ok: 0 blob(s)" in models("verify", cwd=work).stdout


def test_verify_names_the_damaged_member(work):
    import asyncio

    from dffml_archive.repository import Repository

    (work / "model").mkdir()
    (work / "model" / "weights.bin").write_bytes(b"good" * 1000)
    models("push", "model", "m", cwd=work)

    async def damage():
        async with Repository(work / "repository") as repo:
            (digest,) = await stored_digests(repo)
            await replace_blob(repo, digest, b"bad!" * 1000)

    asyncio.run(damage())
    one_error_line(models("verify", cwd=work, check=False), "1 of 1 blob(s) damaged",
                   "m:1 weights.bin")
    one_error_line(models("download", "m:1", "m.tar", cwd=work, check=False),
                   "m:1: member 'weights.bin'", "do not match")
    assert not (work / "m.tar").exists()


def stored_blobs(root) -> set:
    import asyncio

    from dffml_archive.repository import Repository

    async def listing():
        async with Repository(root) as repo:
            return await stored_digests(repo)

    return asyncio.run(listing())


CONCURRENT_SAVES = 6


def test_processes_saving_at_once_get_distinct_consecutive_versions(work):
    for i in range(CONCURRENT_SAVES):
        (work / f"model{i}").mkdir()
        (work / f"model{i}" / "weights.bin").write_bytes(os.urandom(300_000))
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "dffml_archive", "models", "push", f"model{i}", "m",
             "--comment", f"from {i}", "--json"],
            cwd=work, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(CONCURRENT_SAVES)
    ]
    outputs = [child.communicate(timeout=CLI_TIMEOUT) for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    versions = sorted(json.loads(out)["version"] for out, _ in outputs)
    assert versions == list(range(1, CONCURRENT_SAVES + 1))
    log = json.loads(models("log", "m", "--json", cwd=work).stdout)
    assert sorted(v["comment"] for v in log) == [f"from {i}" for i in range(CONCURRENT_SAVES)]
    for entry in log:  # no image lost: each is whole and is its source
        i = int(entry["comment"].split()[1])
        models("download", f"m:{entry['version']}", f"v{i}.tar", cwd=work)
        subprocess.run([sys.executable, "-m", "dffml_archive", "extract", f"v{i}.tar", f"x{i}"],
                       cwd=work, env=env(), check=True, capture_output=True)
        assert read_tree(work / f"x{i}") == read_tree(work / f"model{i}")


def test_a_save_killed_anywhere_leaves_no_half_version_and_gc_reclaims_it(work):
    (work / "model").mkdir()
    for i in range(6):
        (work / "model" / f"w{i}.bin").write_bytes(os.urandom(4 << 20))
    models("push", "model", "m", cwd=work)
    rng = random.Random(1234)
    for attempt in range(8):
        (work / "model" / "w0.bin").write_bytes(os.urandom(4 << 20))
        (work / "model" / f"new{attempt}.bin").write_bytes(os.urandom(2 << 20))
        child = subprocess.Popen(
            [sys.executable, "-m", "dffml_archive", "models", "push", "model", "m"],
            cwd=work, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 0.9))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=CLI_TIMEOUT)
    log = json.loads(models("log", "m", "--json", cwd=work).stdout)
    assert [v["version"] for v in log] == sorted(
        (v["version"] for v in log), reverse=True)
    for entry in log:  # every version that exists is whole
        models("download", f"m:{entry['version']}", "check.tar", cwd=work)
    assert "ok:" in models("verify", cwd=work).stdout
    models("gc", "--grace", "0", cwd=work)
    repository = work / "repository"
    referenced = set()
    for entry in log:
        shown = json.loads(models("show", f"m:{entry['version']}", "--json", cwd=work).stdout)
        referenced |= {m["sha256"] for m in shown["members"] if m["type"] == "file"}
    assert stored_blobs(repository) == referenced  # nothing a killed save left survives gc
    assert list((repository / "tmp").iterdir()) == []


def test_a_read_only_repository_gives_one_error_and_changes_nothing(embedded_work):
    (embedded_work / "model").mkdir()
    (embedded_work / "model" / "weights.bin").write_bytes(os.urandom(10_000))
    models("push", "model", "m", cwd=embedded_work)
    repository = embedded_work / "repository"
    before = read_tree(repository)
    os.chmod(repository, 0o555)
    try:
        prefix = without_root_override()
        for args in (("push", "model", "m"), ("tag", "m:1", "production"), ("delete", "m:1"),
                     ("gc", "--grace", "0")):
            one_error_line(models(*args, cwd=embedded_work, prefix=prefix, check=False), "repository")
        result = subprocess.run(
            [*prefix, DFFML, "train", *SLR, "-model-location", "models:m", "-sources",
             "f=csv", "-source-filename", "train.csv"],
            cwd=embedded_work, env=env(), capture_output=True, text=True, timeout=CLI_TIMEOUT,
        )
        assert result.returncode != 0 and "is read-only" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    finally:
        os.chmod(repository, 0o755)
    assert read_tree(repository) == before


_FULL_DISK = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # no file past 1 MiB
sys.argv = ["dffml_archive", "models", "push", "model", "m"]
runpy.run_module("dffml_archive", run_name="__main__")
"""


def test_a_full_disk_gives_one_error_and_no_version(embedded_work):
    (embedded_work / "small").mkdir()
    (embedded_work / "small" / "weights.bin").write_bytes(os.urandom(1000))
    models("push", "small", "m", cwd=embedded_work)
    (embedded_work / "model").mkdir()
    (embedded_work / "model" / "weights.bin").write_bytes(os.urandom(3 << 20))
    result = subprocess.run([sys.executable, "-c", _FULL_DISK], cwd=embedded_work, env=env(),
                            capture_output=True, text=True, timeout=CLI_TIMEOUT)
    one_error_line(result, "cannot store")
    assert [v["version"] for v in json.loads(models("log", "m", "--json", cwd=embedded_work).stdout)] == [1]
    assert "ok: 1 blob(s)" in models("verify", cwd=embedded_work).stdout


def test_a_save_that_fails_keeps_the_trained_model_and_says_how_to_push_it(embedded_work):
    train("models:m", embedded_work)
    write_csv(embedded_work / "other.csv", [{"experience": x, "salary": 3 * x} for x in range(8)])
    blobs = embedded_work / "repository" / "blobs"
    directories = [blobs, *[p for p in blobs.rglob("*") if p.is_dir()]]
    for directory in directories:
        os.chmod(directory, 0o555)
    try:
        result = subprocess.run(
            [*without_root_override(), DFFML, "train", "-model", "slr_archive",
             "-model-location", "models:m", "-sources", "f=csv", "-source-filename",
             "other.csv"],
            cwd=embedded_work, env=env(), capture_output=True, text=True, timeout=CLI_TIMEOUT,
        )
    finally:
        for directory in directories:
            os.chmod(directory, 0o755)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "the model directory is kept at" in result.stderr, result.stderr
    command = result.stderr.split("push it when the cause is fixed: ", 1)[1].rsplit(")", 1)[0]
    assert [v["version"] for v in json.loads(models("log", "m", "--json", cwd=embedded_work).stdout)] == [1]
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "dffml_archive", "models"]
    pushed = models(*argv[4:], cwd=embedded_work)
    assert "saved m:2" in pushed.stdout
    assert abs(predict("models:m:2", embedded_work) - 60) < 1e-6  # the model trained on other.csv


async def test_python_api_trains_into_and_loads_from_the_repository(work):
    import dffml

    import dffml_archive
    from dffml_archive.repository import Repository

    model = dffml.Model.load("slr_archive")(
        features=dffml.Features(dffml.Feature("experience", int, 1)),
        predict=dffml.Feature("salary", float, 1),
        location="models:api",
    )
    await dffml.train(model, *TRAIN)
    async with Repository() as repo:
        image = await repo.get_model_image("api")
        assert image.version == 1 and image.get_metadata()["entrypoint"] == "slr_archive"
        loaded = await image.get_model()  # nothing to configure
    async for _, _, prediction in dffml.predict(loaded, {"experience": 20}):
        assert abs(prediction["salary"]["value"] - 205) < 1e-6
    again = await dffml_archive.load_model("models:api:latest")
    async for _, _, prediction in dffml.predict(again, {"experience": 1}):
        assert abs(prediction["salary"]["value"] - 15) < 1e-6
