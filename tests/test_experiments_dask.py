"""The experiment runner on a real Dask cluster: a ``dask-scheduler`` and two
``dask-worker`` processes on 127.0.0.1, one declaring ``--resources GPU=1``
(no real GPU: the declaration is what Dask places by), stopped at the end.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from test_experiments import (
    CHAIN, GRID, REPO, by_label, experiments, explain, run_watching, wait_for_line,
    write_definition,
)

BIN = pathlib.Path(sys.executable).parent


def _stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _logs(directory) -> str:
    return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}"
                     for path in sorted(directory.glob("*.log")))


def _workers(scheduler_file) -> dict:
    """name -> address of the workers the scheduler knows."""
    script = ("import json, sys; from distributed import Client\n"
              "c = Client(scheduler_file=sys.argv[1], timeout=20)\n"
              "print(json.dumps({w['name']: a for a, w in c.scheduler_info()['workers'].items()}))\n"
              "c.close()")
    result = subprocess.run([sys.executable, "-c", script, str(scheduler_file)],
                            capture_output=True, text=True, timeout=60)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def start_cluster(directory: pathlib.Path, processes: list, gpu_worker=True):
    """A scheduler and its workers; (address, {worker name: address}).
    Every process started is appended to ``processes`` (to be stopped)."""
    directory.mkdir(parents=True, exist_ok=True)
    scheduler_file = directory / "scheduler.json"
    worker = ["--scheduler-file", str(scheduler_file), "--nthreads", "1", "--no-nanny",
              "--local-directory", str(directory), "--host", "127.0.0.1"]

    def start(name, *args):
        log = open(directory / f"{name}.log", "w")
        processes.append(subprocess.Popen(
            [*args], cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))  # its own group: stopped with all it started

    start("scheduler", str(BIN / "dask-scheduler"), "--host", "127.0.0.1", "--port", "0",
          "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file))
    deadline = time.monotonic() + 60
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if not scheduler_file.exists():
        pytest.fail("dask-scheduler did not start within 60 s\n" + _logs(directory))
    names = ["cpu-worker"]
    start("cpu-worker", str(BIN / "dask-worker"), *worker, "--name", "cpu-worker")
    if gpu_worker:
        names.append("gpu-worker")
        start("gpu-worker", str(BIN / "dask-worker"), *worker, "--name", "gpu-worker",
              "--resources", "GPU=1")
    workers = {}
    while len(workers) < len(names) and time.monotonic() < deadline + 60:
        workers = _workers(scheduler_file)
        time.sleep(0.5)
    if sorted(workers) != names:
        pytest.fail(f"the Dask workers did not join (saw {workers})\n" + _logs(directory))
    return json.loads(scheduler_file.read_text())["address"], workers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, {worker name: address}); fails, never skips."""
    processes = []
    try:
        yield start_cluster(tmp_path_factory.mktemp("dask"), processes)
    finally:
        for process in reversed(processes):
            _stop(process)


DASK_GRID = GRID.replace("- {name: plain}", "- {name: plain}\n      - {name: gpu, context: {gpus: 1}}")


def test_versions_run_as_dask_tasks_and_a_gpu_version_lands_on_the_gpu_worker(
        tmp_path, cluster):
    address, workers = cluster
    path = write_definition(tmp_path, DASK_GRID)
    result = experiments("run", path, "-r", "--scheduler", address, "--json", timeout=300)
    assert result.returncode == 1, explain(result)  # ridge/broken fails; the run went on
    assert result.stdout.startswith("["), explain(result)
    summary = by_label(json.loads(result.stdout))
    assert summary["line/gpu"]["status"] == "ok", summary["line/gpu"]
    assert summary["line/gpu"]["worker"] == workers["gpu-worker"]
    for label in ("line/plain", "ridge/weak", "ridge/strong"):
        assert summary[label]["status"] == "ok", summary[label]
        assert summary[label]["worker"] in workers.values()
    assert summary["ridge/broken"]["status"] == "failed"
    assert "nope" in summary["ridge/broken"]["error"]
    # The runner keeps the state: a second run reruns only the failed one.
    again = experiments("run", path, "-r", "--scheduler", address, "--json", timeout=300)
    statuses = {label: row["status"] for label, row in by_label(json.loads(again.stdout)).items()}
    assert statuses == {"line/plain": "cached", "line/gpu": "cached", "ridge/weak": "cached",
                        "ridge/strong": "cached", "ridge/broken": "failed"}, explain(again)


def test_test_mode_on_dask_stops_at_the_first_failure(tmp_path, cluster):
    address, _ = cluster
    path = write_definition(tmp_path, GRID.replace("order: 3", "order: 0"))
    (tmp_path / "grid.test.deny").write_text("line\n")
    result = experiments("run", path, "--scheduler", address, "--jobs", "1", timeout=300)
    assert result.returncode == 1, explain(result)
    assert result.stderr.strip().splitlines()[-1].startswith("error: ridge/broken: "), \
        explain(result)
    assert "ridge/weak: training" not in result.stderr, explain(result)
    assert not list((tmp_path / "outputs").glob("output-*"))


def test_a_gpu_version_with_no_gpu_worker_fails_with_a_clear_error(tmp_path, cluster):
    address, _ = cluster
    path = write_definition(tmp_path, CHAIN.replace("{name: v1}", "{name: v1, context: {gpus: 2}}"))
    (tmp_path / "grid.test.allow").write_text("chain/v1\n")
    result = experiments("run", path, "--scheduler", address, timeout=300)
    assert result.returncode == 1, explain(result)
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: chain/v1: incompatible compute context: no Dask worker declares GPU=2"), \
        explain(result)


def test_a_run_survives_the_loss_and_restart_of_the_scheduler(tmp_path):
    """The state is the runner's: the scheduler dies while a version
    trains; that version is recorded as failed, the run ends; on a new
    cluster, -r trains only what is left."""
    path = write_definition(tmp_path / "work", """\
experiments:
  - name: chain
    model: slr_archive
    sources: {train: train.csv}
    config: {features: "x:float:1", predict: "y:float:1"}
    versions: [{name: v1}]
  - name: tf
    model: tfdnnr_archive
    sources: {train: train.csv}
    config: {features: "x:float:1", predict: "y:float:1", hidden: [8], epochs: 2}
    context: {env: {TF_CPP_MIN_LOG_LEVEL: "2"}}
    versions: [{name: v2}]
""")
    first, second = [], []
    try:
        address, _ = start_cluster(tmp_path / "first", first, gpu_worker=False)
        process = run_watching(["run", path, "-r", "--scheduler", address, "--json"])
        seen = []
        try:
            wait_for_line(process, "tf/v2: training", seen)
            _stop(first[0])  # the scheduler
            stdout, stderr = process.communicate(timeout=120)
        finally:
            process.kill()
        assert process.returncode == 1, "".join(seen) + stderr
        assert "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines()[-1].startswith(f"error: {path}: 1 of 2 version(s) "
                                                          "failed"), stderr
        statuses = {label: row["status"] for label, row in by_label(json.loads(stdout)).items()}
        assert statuses == {"chain/v1": "ok", "tf/v2": "failed"}, stderr

        address, _ = start_cluster(tmp_path / "second", second, gpu_worker=False)
        again = experiments("run", path, "-r", "--scheduler", address, "--json", timeout=300)
        assert again.returncode == 0, explain(again)
        statuses = {label: row["status"] for label, row in
                    by_label(json.loads(again.stdout)).items()}
        assert statuses == {"chain/v1": "cached", "tf/v2": "ok"}
    finally:
        for process in reversed(first + second):
            _stop(process)
