"""The repository on real servers (PostgreSQL and SeaweedFS, started by
``scripts/services``): several hosts at once, and servers that fail.

A "host" is a process with its own host name (a UTS namespace:
``unshare -u``), its own cache and its own repository root, sharing only
the two servers."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import fresh_database
from _helpers import read_tree, subprocess_env

HOSTS = ("host-a", "host-b", "host-c")
TIMEOUT = 300


@pytest.fixture
def servers(scaleout_servers, tmp_path) -> dict:
    """The environment of a fresh repository on the servers: a new database
    and a new S3 prefix."""
    import secrets

    env = subprocess_env()
    env.update({name: value for name, value in scaleout_servers.items() if not name.startswith("_")})
    env["DFFML_ARCHIVE_REPOSITORY_DB"] = fresh_database(scaleout_servers["DFFML_ARCHIVE_REPOSITORY_DB"])
    env["DFFML_ARCHIVE_REPOSITORY_BLOBS"] += f"/t-{secrets.token_hex(6)}"
    env["_SERVICES_DIR"] = scaleout_servers["_SERVICES_DIR"]
    return env


def host_env(servers: dict, tmp_path: pathlib.Path, host: str) -> dict:
    env = dict(servers)
    env["DFFML_ARCHIVE_CACHE"] = str(tmp_path / host / "cache")
    env["DFFML_ARCHIVE_REPOSITORY"] = str(tmp_path / host / "root")
    return env


def on_host(host: str, *args) -> list:
    """``python -m dffml_archive models ARGS`` as if on ``host``."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is missing: cannot give processes their own host names")
    return ["unshare", "-u", "sh", "-c", 'hostname "$0" && exec "$@"', host,
            sys.executable, "-m", "dffml_archive", "models", *map(str, args)]


def run(command, env, cwd, check=True):
    result = subprocess.run(command, env=env, cwd=str(cwd), capture_output=True, text=True,
                            timeout=TIMEOUT)
    if check and result.returncode != 0:
        pytest.fail(f"{command[-6:]} exited {result.returncode}: {result.stderr}")
    return result


def make_model(directory: pathlib.Path, seed: str) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "shared.bin").write_bytes(b"shared" * 100_000)
    (directory / "own.txt").write_text(seed)
    return directory


def test_hosts_saving_at_once_get_distinct_consecutive_versions(servers, tmp_path):
    children = []
    for host in HOSTS:
        for i in range(3):
            model = make_model(tmp_path / f"{host}-{i}", f"{host} {i}")
            children.append(subprocess.Popen(
                on_host(host, "push", model, "shared/m", "--comment", f"{host} {i}", "--json"),
                env=host_env(servers, tmp_path, host), cwd=str(tmp_path),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
    results = [child.communicate(timeout=TIMEOUT) for child in children]
    assert all(child.returncode == 0 for child in children), results
    versions = sorted(json.loads(out)["version"] for out, _ in results)
    assert versions == list(range(1, 10))
    log = json.loads(run(on_host("host-a", "log", "shared/m", "--json"),
                         host_env(servers, tmp_path, "host-a"), tmp_path).stdout)
    assert sorted((v["host"], v["comment"].split()[0]) for v in log) == sorted(
        (h, h) for h in HOSTS for _ in range(3))
    # The shared file is stored once for all nine versions.
    assert sum(v["new_bytes"] for v in log) == 600_000 + sum(
        len(f"{h} {i}") for h in HOSTS for i in range(3))


def test_a_tag_moved_on_one_host_is_seen_by_the_others(servers, tmp_path):
    a, b = host_env(servers, tmp_path, "host-a"), host_env(servers, tmp_path, "host-b")
    for i in range(2):
        run(on_host("host-a", "push", make_model(tmp_path / f"m{i}", str(i)), "m"), a, tmp_path)
    run(on_host("host-a", "tag", "m:1", "production"), a, tmp_path)
    shown = json.loads(run(on_host("host-b", "show", "m:production", "--json"), b,
                           tmp_path).stdout)
    assert shown["version"] == 1
    run(on_host("host-b", "tag", "m:2", "production"), b, tmp_path)
    shown = json.loads(run(on_host("host-c", "show", "m:production", "--json"),
                           host_env(servers, tmp_path, "host-c"), tmp_path).stdout)
    assert shown["version"] == 2
    events = run(on_host("host-a", "log", "m", "--events"), a, tmp_path).stdout
    assert "tag production -> 2 (was 1)" in events


def test_gc_on_one_host_never_removes_a_blob_a_save_elsewhere_needs(servers, tmp_path):
    """Host A deletes the only version using a blob and collects garbage over
    and over with no grace period, while host B saves versions that need
    that very blob: every saved version must stay whole."""
    a, b = host_env(servers, tmp_path, "host-a"), host_env(servers, tmp_path, "host-b")
    model = make_model(tmp_path / "model", "first")
    run(on_host("host-a", "push", model, "m"), a, tmp_path)
    run(on_host("host-a", "delete", "m:1"), a, tmp_path)
    collector = subprocess.Popen(
        ["sh", "-c", 'for i in $(seq 25); do "$@" >/dev/null || exit 1; done', "gc",
         *on_host("host-a", "gc", "--grace", "0")],
        env=a, cwd=str(tmp_path), stderr=subprocess.PIPE, text=True,
    )
    for i in range(6):
        (model / "own.txt").write_text(f"version {i}")
        run(on_host("host-b", "push", model, "m"), b, tmp_path)
    _, errors = collector.communicate(timeout=TIMEOUT)
    assert collector.returncode == 0, errors
    run(on_host("host-b", "verify"), b, tmp_path)
    for version in range(2, 8):
        out = tmp_path / f"v{version}.tar"
        run(on_host("host-b", "download", f"m:{version}", out), b, tmp_path)
        subprocess.run([sys.executable, "-m", "dffml_archive", "extract", str(out),
                        str(tmp_path / f"x{version}")], env=b, check=True, capture_output=True)
        assert (tmp_path / f"x{version}" / "shared.bin").read_bytes() == b"shared" * 100_000


def _s3_client(servers):
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "s3", endpoint_url=servers["AWS_ENDPOINT_URL"], region_name=servers["AWS_REGION"],
        aws_access_key_id=servers["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=servers["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _services(servers, command):
    env = dict(os.environ, DFFML_ARCHIVE_SERVICES_DIR=servers["_SERVICES_DIR"])
    result = subprocess.run(
        [sys.executable, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"
                             / "_services.py"), command],
        env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads((pathlib.Path(servers["_SERVICES_DIR"]) / "state.json").read_text())


def test_the_store_killed_during_a_multipart_upload(servers, tmp_path):
    """The save fails with one error naming the store and adds no version;
    after a restart, the retry uploads only what is missing."""
    env = host_env(servers, tmp_path, "host-a")
    model = tmp_path / "model"
    model.mkdir()
    for name in ("a.bin", "b.bin"):
        (model / name).write_bytes(os.urandom(1 << 20))
    (model / "z-weights.bin").write_bytes(os.urandom(160 << 20))  # ten 16 MiB parts
    state = _services(servers, "env")
    client = _s3_client(servers)
    bucket, prefix = servers["DFFML_ARCHIVE_REPOSITORY_BLOBS"][len("s3://"):].split("/", 1)
    push = subprocess.Popen(
        [sys.executable, "-m", "dffml_archive", "models", "push", str(model), "m"],
        env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads"):
            assert push.poll() is None, "the push ended before its multipart upload began"
            assert time.monotonic() < deadline, "no multipart upload began"
            time.sleep(0.02)
        os.killpg(state["weed_pid"], signal.SIGKILL)
        _, errors = push.communicate(timeout=TIMEOUT)
    finally:
        if push.poll() is None:
            push.kill()
        state = _services(servers, "start")  # starts the killed server again, same data
    assert push.returncode == 1, errors
    lines = errors.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), errors
    assert servers["DFFML_ARCHIVE_REPOSITORY_BLOBS"] in lines[0] and "Traceback" not in errors
    log = run([sys.executable, "-m", "dffml_archive", "models", "log", "m", "--json"], env,
              tmp_path, check=False)
    assert log.returncode == 1 or json.loads(log.stdout) == []  # no version
    retry = json.loads(run([sys.executable, "-m", "dffml_archive", "models", "push",
                            str(model), "m", "--json"], env, tmp_path).stdout)
    assert retry["version"] == 1
    assert retry["new_bytes"] == 160 << 20  # the small files were already there
    out = tmp_path / "m.tar"
    run([sys.executable, "-m", "dffml_archive", "models", "download", "m:1", str(out)], env,
        tmp_path)
    run([sys.executable, "-m", "dffml_archive", "extract", str(out), str(tmp_path / "x")], env,
        tmp_path)
    assert read_tree(tmp_path / "x") == read_tree(model)


async def test_a_database_restart_between_operations_reconnects(servers, tmp_path, monkeypatch):
    from dffml_archive.repository import Repository

    for name, value in servers.items():
        if not name.startswith("_"):
            monkeypatch.setenv(name, value)
    state = _services(servers, "env")
    async with Repository(tmp_path / "root") as repo:
        await repo.create("before")
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, "pg_ctl", "-D", state["postgres_data"], "-m", "fast", "-w",
                        "stop"], check=True, capture_output=True, timeout=TIMEOUT)
        _services(servers, "start")  # starts the stopped server again, same data
        await repo.create("after")
        assert [row["name"] for row in await repo.list()] == ["after", "before"]


@pytest.mark.parametrize("change, message", [
    ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "refused the credentials"),
    ({"DFFML_ARCHIVE_REPOSITORY_BLOBS": "s3://no-such-bucket/x"}, "does not exist"),
])
def test_bad_credentials_or_bucket_give_one_error_and_write_nothing(servers, tmp_path, change,
                                                                     message):
    env = {**host_env(servers, tmp_path, "host-a"), **change}
    model = make_model(tmp_path / "model", "x")
    result = run([sys.executable, "-m", "dffml_archive", "models", "push", str(model), "m"],
                 env, tmp_path, check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert "wrong" not in lines[0]  # never a secret in a message
    good = host_env(servers, tmp_path, "host-a")
    listing = json.loads(run([sys.executable, "-m", "dffml_archive", "models", "list",
                              "--json"], good, tmp_path).stdout)
    assert listing == []


async def test_reopening_an_image_on_the_same_host_reads_the_verified_local_cache(
        servers, tmp_path, monkeypatch):
    """After one read, the blobs come from the local read cache: the store's
    copy can even be gone.  A damaged cache entry is fetched again."""
    from dffml_archive.repository import Repository

    from _repository_helpers import stored_digests

    for name, value in host_env(servers, tmp_path, "host-a").items():
        if not name.startswith("_"):
            monkeypatch.setenv(name, value)
    model = make_model(tmp_path / "model", "cached")
    async with Repository(tmp_path / "root") as repo:
        image = await (await repo.create("m")).new_image(model).save()
        await image.materialize(tmp_path / "first")
        digests = await stored_digests(repo)
        cached = {digest: repo.blobs.cached_path(digest) for digest in digests}
        assert all(path.exists() for path in cached.values())
        for digest in digests:  # gone from the store: only the cache has them
            await repo.blobs.client.delete_object(Bucket=repo.blobs.bucket,
                                                  Key=repo.blobs.key(digest))
        await image.materialize(tmp_path / "second")
        assert read_tree(tmp_path / "second") == read_tree(model)
        shared = cached[max(cached, key=lambda d: cached[d].stat().st_size)]
        os.chmod(shared, 0o644)
        shared.write_bytes(b"damaged")  # a bad cache entry is not trusted
        with pytest.raises(Exception, match="is missing"):
            await image.materialize(tmp_path / "third")


@pytest.mark.parametrize("size", [1 << 20, (16 << 20) + 12345])  # one PutObject; multipart
async def test_a_file_hashed_once_is_stored_only_if_it_is_still_that_file(
        servers, tmp_path, monkeypatch, size):
    """``ingest`` hashes a file once and does not hash it again while
    uploading: the upload is committed only if the file's stat is still the
    one it was hashed with.  Changed in between (same size, new bytes), it
    is refused and no object exists under the digest; unchanged, it is
    stored and reads back intact."""
    import hashlib

    from dffml_archive.repository import Repository
    from dffml_archive.repository._blobs import BlobMismatch

    for name, value in host_env(servers, tmp_path, "host-a").items():
        if not name.startswith("_"):
            monkeypatch.setenv(name, value)
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(size))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    hashed = os.stat(path)
    async with Repository(tmp_path / "root") as repo:
        with open(path, "r+b") as handle:  # another writer, after the hashing
            handle.write(b"\0" * 64)
        with pytest.raises(BlobMismatch):
            await repo.blobs.put_file(path, digest, hashed=hashed)
        assert await repo.blobs.missing([digest]) == {digest}
        uploads = await repo.blobs.client.list_multipart_uploads(Bucket=repo.blobs.bucket)
        assert not [u for u in uploads.get("Uploads", []) if u["Key"] == repo.blobs.key(digest)]

        time.sleep(0.1)  # out of the racy window: ingest hashes it once, then trusts its stat
        stored = await repo.blobs.ingest([path])
        (new_digest, new_size, new_bytes), = stored
        assert new_digest == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (new_size, new_bytes) == (size, size)
        await repo.blobs.copy_to(new_digest, tmp_path / "back", 0o644)
        assert (tmp_path / "back").read_bytes() == path.read_bytes()
