"""The hub cache's lease files (dffml_archive/hub/_locks.py) on the local
filesystem, forced with MODELHUB_LOCK_MODE=lease; real processes and files.
(The network filesystem itself: tests/test_hub_shared_cache.py.)"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from dffml_archive.errors import HubError, HubLockTimeoutError
from dffml_archive.hub import HubCache
from dffml_archive.hub._locks import Lease, lock_mode

HOLD = textwrap.dedent("""
    import asyncio, sys
    from dffml_archive.hub._locks import Lease

    async def main():
        lease = Lease(sys.argv[1])
        assert await lease.try_take() is None
        print("held", flush=True)
        await asyncio.sleep(float(sys.argv[2]))
        if sys.argv[3] == "release":
            lease.release()

    asyncio.run(main())
""")


@pytest.fixture(autouse=True)
def lease_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELHUB_LOCK_MODE", "lease")
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "modelhub"))


def hold(path, seconds, then="release") -> subprocess.Popen:
    """Another process holding the lease ``path``, once it says so."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds), then],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def lease_of(cache: HubCache, key: str):
    import hashlib

    return cache.root / ".locks" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".lease")


async def test_two_processes_exclude_and_the_timeout_names_the_holder(tmp_path):
    cache = HubCache(lock_timeout=0.8)
    path = lease_of(cache, "m.bin")
    path.parent.mkdir(parents=True)
    holder = hold(path, 3)
    with pytest.raises(HubLockTimeoutError) as caught:
        async with cache.locked("m.bin", "m.bin"):
            pass
    message = str(caught.value)
    assert f"pid {holder.pid} on host {socket.gethostname()}" in message
    assert str(path) in message and "MODELHUB_LOCK_TIMEOUT" in message
    holder.wait()
    async with cache.locked("m.bin", "m.bin"):  # released: ours now
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()  # and released again


async def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path):
    path = tmp_path / "x.lease"
    holder = hold(path, 0, then="die without releasing")
    holder.wait()
    assert path.exists()
    started = time.monotonic()
    lease = Lease(path)
    assert await lease.try_take() is None
    assert time.monotonic() - started < 2
    assert json.loads(path.read_text())["token"] == lease.token
    lease.release()
    assert not path.exists() and not list(tmp_path.glob("x.lease.dead-*"))


def plant(path, host, age):
    path.write_text(json.dumps({"host": host, "boot": "another", "pid": 1, "time": 0,
                                "token": "theirs"}))
    os.utime(path, (time.time() - age, time.time() - age))


async def test_another_hosts_lease_is_taken_over_only_when_stale(tmp_path):
    path = tmp_path / "x.lease"
    plant(path, "elsewhere", age=1)
    holder = await Lease(path, lease_seconds=30).try_take()
    assert holder["host"] == "elsewhere"  # fresh: theirs, even with pid 1 "alive" here
    plant(path, "elsewhere", age=31)
    lease = Lease(path, lease_seconds=30)
    assert await lease.try_take() is None
    lease.release()


async def test_the_heartbeat_keeps_a_long_holders_lease(tmp_path):
    path = tmp_path / "x.lease"
    long_download = Lease(path, lease_seconds=1, heartbeat_seconds=0.2)
    assert await long_download.try_take() is None
    other = Lease(path, lease_seconds=1)
    for _ in range(12):  # 3 lease periods
        await asyncio.sleep(0.25)
        assert (await other.try_take())["token"] == long_download.token
    long_download.release()
    silent = Lease(path, lease_seconds=1, heartbeat_seconds=100)
    assert await silent.try_take() is None
    await asyncio.sleep(1.2)  # no heartbeat within a lease period: dead
    assert await other.try_take() is None
    with pytest.warns(UserWarning, match="taken over by pid"):
        silent.release()  # no longer ours: left alone, and said
    assert json.loads(path.read_text())["token"] == other.token
    other.release()


async def test_release_removes_only_our_own_lease(tmp_path):
    path = tmp_path / "x.lease"
    lease = Lease(path)
    assert await lease.try_take() is None
    plant(path, "elsewhere", age=0)  # taken over meanwhile
    with pytest.warns(UserWarning, match="taken over by pid 1 on host elsewhere while we held"):
        lease.release()
    assert json.loads(path.read_text())["token"] == "theirs"


async def test_prune_spares_a_partial_with_a_fresh_heartbeat(tmp_path):
    cache = HubCache()
    directory = cache.root / "url" / "host"
    directory.mkdir(parents=True)
    fresh, stale = directory / ".a.bin.1.partial", directory / ".b.bin.2.partial"
    fresh.write_bytes(b"x")
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    assert await cache.prune() == ["url/host/.b.bin.2.partial"]
    assert fresh.exists()


def test_modes_and_a_bad_mode(monkeypatch, tmp_path):
    assert lock_mode(tmp_path) == "lease"
    monkeypatch.setenv("MODELHUB_LOCK_MODE", "auto")
    assert lock_mode(tmp_path / "not" / "yet") == "flock"  # a local disk
    monkeypatch.setenv("MODELHUB_LOCK_MODE", "nfs")
    with pytest.raises(HubError, match="MODELHUB_LOCK_MODE.*auto, flock or lease"):
        lock_mode(tmp_path)
