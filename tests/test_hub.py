"""The model hub against real HTTP servers on 127.0.0.1 (port 0) speaking
each hub's protocol, with files the tests make.  No other address is used."""
import asyncio
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from _e2e_helpers import DFFML
from dffml_archive.errors import (
    HubDownloadError, HubIntegrityError, HubOfflineError, HubSourceError,
)
from dffml_archive.hub import HubCache, HuggingFaceHub, StorageType, hub_for, parse_source

BODY = os.urandom(3 * (1 << 20) + 12345)
SHA = hashlib.sha256(BODY).hexdigest()
FAST = dict(attempts=3, backoff=0.01, timeout=5)


@pytest.fixture(autouse=True)
def hub_env(tmp_path, monkeypatch):
    """A private cache and empty framework caches: nothing of the user's."""
    for name in ("MODELHUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "modelhub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return tmp_path / "modelhub"


def cache_files(root: pathlib.Path):
    """Every file under the framework directories (not the lock file/locks)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.relative_to(root).as_posix().startswith(".locks")
                  and p.name != "modelhub-lock.json")


async def test_download_verifies_and_records(server, hub_env):
    server.files["/models/m.bin"] = BODY
    hub = hub_for(f"{server.url}/models/m.bin", **FAST)
    path = await hub.download_model(f"{server.url}/models/m.bin", sha256=SHA)
    assert path.read_bytes() == BODY and path.name == "m.bin"
    assert str(path).startswith(str(hub_env / "url"))
    (entry,) = HubCache().list()
    assert (entry.sha256, entry.size, entry.source) == (SHA, len(BODY), f"{server.url}/models/m.bin")
    assert cache_files(hub_env) == [entry.path]  # no partial left
    again = await hub.download_model(f"{server.url}/models/m.bin", sha256=SHA)
    assert again == path and len(server.gets()) == 1  # a hit: no second request


async def test_resume_after_the_server_drops_the_connection(server):
    server.files["/m.bin"] = BODY
    server.plans["/m.bin"] = ["drop:1000000", "ok"]
    path = await hub_for(f"{server.url}/m.bin", **FAST).download_model(
        f"{server.url}/m.bin", sha256=SHA)
    assert path.read_bytes() == BODY
    first, second = server.gets()
    assert "Range" not in first[2] and second[2]["Range"] == "bytes=1000000-"


async def test_a_corrupted_byte_is_refused_and_nothing_is_cached(server, hub_env):
    server.files["/m.bin"] = BODY
    server.plans["/m.bin"] = ["corrupt"]
    with pytest.raises(HubIntegrityError, match="sha256"):
        await hub_for(f"{server.url}/m.bin", **FAST).download_model(
            f"{server.url}/m.bin", sha256=SHA)
    assert cache_files(hub_env) == [] and HubCache().list() == []


async def test_truncated_body_fails_then_resumes_next_time(server, hub_env):
    server.files["/m.bin"] = BODY
    server.plans["/m.bin"] = ["drop:5000"]
    hub = hub_for(f"{server.url}/m.bin", **FAST)
    with pytest.raises(HubDownloadError, match="after 3 tries"):
        await hub.download_model(f"{server.url}/m.bin", sha256=SHA)
    (partial,) = cache_files(hub_env)
    assert partial.endswith(".partial") and HubCache().list() == []
    server.plans["/m.bin"] = ["ok"]
    path = await hub.download_model(f"{server.url}/m.bin", sha256=SHA)
    assert path.read_bytes() == BODY
    assert server.gets()[-1][2]["Range"] == f"bytes={3 * 5000}-"
    assert cache_files(hub_env) == [HubCache().list()[0].path]


@pytest.mark.parametrize("lie", ["short", "long"])
async def test_a_server_lying_about_content_length(server, hub_env, lie):
    server.files["/m.bin"] = BODY
    server.plans["/m.bin"] = [lie]
    with pytest.raises((HubIntegrityError, HubDownloadError)):
        await hub_for(f"{server.url}/m.bin", **FAST).download_model(
            f"{server.url}/m.bin", sha256=SHA)
    assert HubCache().list() == []
    assert not [p for p in cache_files(hub_env) if not p.endswith(".partial")]


async def test_404_fails_at_once(server):
    with pytest.raises(HubDownloadError, match="HTTP 404"):
        await hub_for(f"{server.url}/none.bin", **FAST).download_model(
            f"{server.url}/none.bin", sha256=SHA)
    assert len(server.gets()) == 1


async def test_500_then_success_and_a_timeout_are_retried(server):
    server.files["/a.bin"] = server.files["/b.bin"] = BODY
    server.plans["/a.bin"] = ["status:500", "status:503", "ok"]
    server.plans["/b.bin"] = ["sleep:1.5", "ok"]
    options = dict(attempts=3, backoff=0.01, timeout=0.5)
    for name in ("a.bin", "b.bin"):
        path = await hub_for(f"{server.url}/{name}", **options).download_model(
            f"{server.url}/{name}", sha256=SHA)
        assert path.read_bytes() == BODY
    assert len(server.gets("/a.bin")) == 3 and len(server.gets("/b.bin")) == 2


async def test_ten_concurrent_downloads_make_one_transfer(server):
    server.files["/m.bin"] = BODY
    source = f"{server.url}/m.bin"
    paths = await asyncio.gather(*[
        hub_for(source, **FAST).download_model(source, sha256=SHA) for _ in range(10)
    ])
    assert len(set(paths)) == 1 and paths[0].read_bytes() == BODY
    assert len(server.gets()) == 1


async def test_concurrent_processes_make_one_transfer(server, tmp_path):
    server.files["/m.bin"] = BODY
    server.plans["/m.bin"] = ["sleep:0.5", "ok"]
    command = [sys.executable, "-m", "dffml_archive", "hub", "download",
               f"{server.url}/m.bin", "--sha256", SHA]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(4)]
    outputs = [worker.communicate(timeout=60) for worker in workers]
    assert [w.returncode for w in workers] == [0] * 4, outputs
    assert len({out.strip().splitlines()[-1] for out, _ in outputs}) == 1
    assert len(server.gets()) == 1


async def test_malicious_file_names_are_refused(server, hub_env):
    for source in (f"{server.url}/..%2F..%2Fevil.bin", f"{server.url}/a/%2e%2e",
                   "hf:org/name/../../evil.bin", "hf:org/name//etc/passwd",
                   "hf:org/../x/f.bin", "hf:org/name/f.bin@../main"):
        with pytest.raises(HubSourceError):
            await hub_for(source if source.startswith("hf:") else f"{server.url}/x",
                          **FAST).download_model(source, sha256=SHA)
    assert server.requests == [] and not hub_env.exists()


async def test_the_file_name_comes_from_the_url_never_a_header(server, hub_env):
    server.files["/m.bin"] = BODY  # the server sends filename="../../evil.sh"
    path = await hub_for(f"{server.url}/m.bin", **FAST).download_model(
        f"{server.url}/m.bin", sha256=SHA)
    assert path.name == "m.bin" and not list(hub_env.parent.rglob("evil.sh"))


async def test_offline_hit_and_miss(server, monkeypatch):
    server.files["/m.bin"] = BODY
    source = f"{server.url}/m.bin"
    path = await hub_for(source, **FAST).download_model(source, sha256=SHA)
    monkeypatch.setenv("MODELHUB_OFFLINE", "1")
    before = len(server.requests)
    assert await hub_for(source).download_model(source, sha256=SHA) == path
    with pytest.raises(HubOfflineError, match="offline"):
        await hub_for(f"{server.url}/other.bin").download_model(
            f"{server.url}/other.bin", sha256=SHA)
    with pytest.raises(HubOfflineError):
        await hub_for("hf:org/name/f.bin").download_model("hf:org/name/f.bin")
    monkeypatch.delenv("MODELHUB_OFFLINE")
    with pytest.raises(HubOfflineError):  # the option, without the variable
        await hub_for(f"{server.url}/other.bin", offline=True).download_model(
            f"{server.url}/other.bin", sha256=SHA)
    assert len(server.requests) == before


async def test_a_hit_in_torchs_own_cache_makes_no_request(server, tmp_path):
    name = f"net-{SHA[:8]}.pth"
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / name).write_bytes(BODY)
    path = await hub_for(f"torch:{server.url}/{name}").download_model(f"torch:{server.url}/{name}")
    assert path.read_bytes() == BODY and server.requests == []
    assert path.parent.name == "torch" and HubCache().list()[0].sha256 == SHA
    # A copy that does not match its name is not taken: downloaded instead.
    bad = f"other-{SHA[:8]}.pth"
    (checkpoints / bad).write_bytes(BODY[:-1])
    server.files[f"/{bad}"] = BODY
    with pytest.warns(UserWarning, match="ignored"):
        await hub_for(f"torch:{server.url}/{bad}").download_model(f"torch:{server.url}/{bad}")
    assert len(server.gets()) == 1


def hf_repo(server, files, lfs=()):
    commit = hashlib.sha1(repr(sorted(files)).encode()).hexdigest()
    server.hf["org/name"] = {"commit": commit, "revisions": ["main", "v1"], "files": files,
                             "lfs": set(lfs)}
    return commit


async def test_hugging_face_protocol_pins_the_commit(server, monkeypatch):
    small = b'{"hidden_size": 8}\n'
    commit = hf_repo(server, {"model.bin": BODY, "cfg/config.json": small}, lfs=["model.bin"])
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    hub = HuggingFaceHub(**FAST)
    path = await hub.download_model("hf:org/name/model.bin")
    assert path.read_bytes() == BODY and commit in path.parts
    config = await hub.download_model(f"hf:org/name/cfg/config.json@{commit}")
    assert config.read_bytes() == small  # verified by its git blob id
    assert [r[1] for r in server.gets()] == [
        f"/org/name/resolve/{commit}/model.bin", f"/org/name/resolve/{commit}/cfg/config.json"]
    entries = {e.path.rsplit("/", 1)[-1]: e for e in HubCache().list()}
    assert entries["model.bin"].commit == commit and entries["model.bin"].revision == "main"
    # A pinned commit is a hit without any request; offline, the branch too.
    count = len(server.requests)
    assert await hub.download_model(f"hf:org/name/model.bin@{commit}") == path
    monkeypatch.setenv("MODELHUB_OFFLINE", "1")
    assert await HuggingFaceHub().download_model("hf:org/name/model.bin") == path
    assert len(server.requests) == count


async def test_hugging_face_corrupt_lfs_file_refused(server, monkeypatch, hub_env):
    hf_repo(server, {"model.bin": BODY}, lfs=["model.bin"])
    server.plans["/hf/org/name/model.bin"] = ["corrupt"]
    with pytest.raises(HubIntegrityError):
        await HuggingFaceHub(endpoint=server.url, **FAST).download_model("hf:org/name/model.bin")
    assert cache_files(hub_env) == []


async def test_a_hit_in_the_hugging_face_cache_makes_no_request(server, tmp_path):
    commit = "c" * 40
    repo = tmp_path / "hf-home" / "hub" / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / SHA).write_bytes(BODY)
    (repo / "snapshots" / commit).mkdir(parents=True)
    os.symlink(repo / "blobs" / SHA, repo / "snapshots" / commit / "model.bin")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    hub = HuggingFaceHub(endpoint=server.url, **FAST)
    path = await hub.download_model(f"hf:org/name/model.bin@{commit}")
    assert path.read_bytes() == BODY and server.requests == []
    assert await HuggingFaceHub(offline=True).download_model("hf:org/name/model.bin") == path


async def test_uncompressed_unpacks_with_our_extractor(server, tmp_path):
    import tarfile

    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "a.txt").write_text("a")
    with tarfile.open(tmp_path / "m.tar.gz", "w:gz") as tar:
        tar.add(tree / "pkg", arcname="pkg")
    data = (tmp_path / "m.tar.gz").read_bytes()
    server.files["/m.tar.gz"] = data
    sha = hashlib.sha256(data).hexdigest()
    hub = hub_for(f"{server.url}/m.tar.gz", **FAST)
    directory = await hub.download_model(f"{server.url}/m.tar.gz", sha256=sha,
                                         storage=StorageType.UNCOMPRESSED)
    assert (directory / "pkg" / "a.txt").read_text() == "a"
    assert HubCache().verify() == []


async def test_verify_prune_remove(server, hub_env):
    server.files["/m.bin"] = BODY
    path = await hub_for(f"{server.url}/m.bin", **FAST).download_model(
        f"{server.url}/m.bin", sha256=SHA)
    cache = HubCache()
    assert cache.verify() == []
    stray = hub_env / "url" / "stray.bin"
    stray.write_bytes(b"x")
    partial = path.with_name(".m.bin.0123456789ab.partial")
    partial.write_bytes(b"x")
    removed = await cache.prune()
    assert sorted(removed) == sorted([cache.relative(stray), cache.relative(partial)])
    assert path.exists()
    with open(path, "r+b") as handle:
        handle.write(b"\0")
    assert cache.verify()[0]["problem"].startswith("sha256")
    assert await cache.remove(f"{server.url}/m.bin") == [cache.relative(path)]
    assert not path.exists() and cache.list() == []


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "dffml_archive", "hub", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_cli_download_list_verify_prune_remove(server, hub_env):
    server.files["/m.bin"] = BODY
    done = run_cli("download", f"{server.url}/m.bin", "--sha256", SHA)
    assert done.returncode == 0, done.stderr
    path = done.stdout.strip().splitlines()[-1]
    assert os.path.isabs(path) and pathlib.Path(path).read_bytes() == BODY
    listed = json.loads(run_cli("list", "--json").stdout)
    assert [e["sha256"] for e in listed] == [SHA]
    assert run_cli("verify").returncode == 0
    with open(path, "r+b") as handle:
        handle.write(b"\0")
    failed = run_cli("verify")
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr
    assert run_cli("prune").returncode == 0
    assert run_cli("remove", path).returncode == 0 and not os.path.exists(path)


def test_cli_failures_are_one_error_line(server):
    for args in (["download", f"{server.url}/none.bin", "--sha256", SHA],
                 ["download", f"{server.url}/m.bin"],  # a URL needs its sha256
                 ["download", "ftp://example.invalid/x"],
                 ["download", f"{server.url}/m.bin", "--sha256", SHA, "--offline"]):
        failed = run_cli(*args)
        assert failed.returncode == 1, args
        assert failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1, failed.stderr


def test_dffml_service_hub(server):
    server.files["/m.bin"] = BODY
    done = subprocess.run([DFFML, "service", "hub", "download", f"{server.url}/m.bin",
                           "--sha256", SHA], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert pathlib.Path(done.stdout.strip().splitlines()[-1]).read_bytes() == BODY


async def test_dead_partials_of_a_file_are_cleaned_up(server, hub_env):
    server.files["/m.bin"] = BODY
    server.plans["/m.bin"] = ["drop:5000"]
    source = f"{server.url}/m.bin"
    other = "0" * 64  # a download of the same file with another checksum dies
    with pytest.raises(HubDownloadError):
        await hub_for(source, **FAST).download_model(source, sha256=other)
    assert [p for p in cache_files(hub_env) if p.endswith(".partial")]
    server.plans["/m.bin"] = ["ok"]
    await hub_for(source, **FAST).download_model(source, sha256=SHA)
    assert not [p for p in cache_files(hub_env) if p.endswith(".partial")]


async def test_a_lock_held_too_long_times_out_clearly(server, hub_env):
    from dffml_archive.errors import HubLockTimeoutError

    server.files["/m.bin"] = BODY
    source = f"{server.url}/m.bin"
    hub = hub_for(source, lock_timeout=0.3, **FAST)
    relative = hub.relative_path(parse_source(source))
    async with hub.cache.locked(relative, relative):
        with pytest.raises(HubLockTimeoutError, match="MODELHUB_LOCK_TIMEOUT"):
            await hub.download_model(source, sha256=SHA)
    assert server.requests == []


async def test_stage_pushes_into_the_model_repository(server, tmp_path, monkeypatch):
    from dffml_archive.repository import Repository
    from test_hub_stage import make_spacy_package

    monkeypatch.setenv("DFFML_ARCHIVE_REPOSITORY", str(tmp_path / "repository"))
    data = make_spacy_package(tmp_path)
    server.files["/en_fruit-0.0.1.tar.gz"] = data
    source = f"spacy:{server.url}/en_fruit-0.0.1.tar.gz"
    await hub_for(source).stage_model(source, tmp_path / "f.tar.gz", repository="fruit")
    async with Repository() as store:
        (version,) = await (await store.get("fruit")).log()
    assert version["version"] == 1
