"""The experiment runner (issue 20), run as a user runs it: real definition
files, the real CLI in subprocesses (``python -m dffml_archive experiments``
and ``dffml service experiments``), real dffml training of slr_archive and
scikitridge_archive, a real Dask scheduler and workers (test_experiments_dask.py).
"""
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from _e2e_helpers import DFFML, write_csv

REPO = pathlib.Path(__file__).resolve().parent.parent
HOST = "".join(c if c.isalnum() or c in "._-" else "_" for c in socket.gethostname())
LINE = [{"x": float(x), "y": 2.0 * x + 1 + (0.25 if x % 2 else -0.25)} for x in range(20)]


def write_definition(directory: pathlib.Path, text: str, name="grid.yaml") -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(directory / "train.csv", LINE)
    write_csv(directory / "test.csv", LINE[::3])
    path = directory / name
    path.write_text(text)
    return path


GRID = """\
experiments:
  - name: line
    model: slr_archive
    sources: {train: train.csv, accuracy: test.csv}
    config: {features: "x:float:1", predict: "y:float:1"}
    versions:
      - {name: plain}
  - name: ridge
    model: scikitridge_archive
    sources: {train: train.csv, accuracy: test.csv}
    config: {features: "x:float:1", predict: "y:float:1"}
    context: {threads: 1}
    versions:
      - {name: strong, order: 2, config: {alpha: 1000}, suffix: -a1000}
      - {name: weak, order: 1, config: {alpha: 0.1}}
      - {name: broken, order: 3, config: {features: "nope:float:1"}}
"""


def experiments(*args, cwd=REPO, timeout=240, via_dffml=False):
    command = ([DFFML, "service", "experiments"] if via_dffml
               else [sys.executable, "-m", "dffml_archive", "experiments"])
    return subprocess.run([*command, *map(str, args)], cwd=str(cwd), capture_output=True,
                          text=True, timeout=timeout)


def explain(result) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n" \
           f"--- stderr\n{result.stderr[-6000:]}"


def records(directory: pathlib.Path) -> list:
    """The whole records of output-HOST (a line a crash cut short is skipped)."""
    path = directory / "outputs" / f"output-{HOST}"
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            assert line == '{"experiment": "ridge", "version": "bro', line
    return found


def by_label(summary: list) -> dict:
    return {f"{row['experiment']}/{row['version']}": row for row in summary}


# -- the definition ------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("experiments: []\n", "line 1: experiments: must be a non-empty list"),
    ("experiments:\n  - name: a\n    model: slr\n    sources: {train: t.csv}\n"
     "    versions: [{name: v}]\n", "line 3: experiments[0].model: 'slr' is not a model of"),
    ("experiments:\n  - name: a\n    model: slr_archive\n    sources: {train: t.csv}\n"
     "    versions:\n      - {name: v}\n      - {name: w, epochs: 3}\n",
     "line 7: experiments[0].versions[1].epochs: unknown key"),
    ("experiments:\n  - name: a\n    model: slr_archive\n    sources: {train: t.csv}\n"
     "    versions: [{name: v, context: {gpus: many}}]\n",
     "line 5: experiments[0].versions[0].context.gpus: must be a int"),
    ("experiments:\n  - name: a\n    model: slr_archive\n  sources: x\n",
     "line 4: not valid YAML"),
])
def test_definition_errors_name_the_file_the_line_and_the_key(tmp_path, text, expected):
    path = write_definition(tmp_path, text)
    result = experiments("run", path)
    assert result.returncode == 1, explain(result)
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[0].startswith(f"error: {path}: "), explain(result)
    assert expected in lines[0], explain(result)


# -- test mode ------------------------------------------------------------------------


def test_test_mode_stops_at_the_first_failure_and_records_nothing(tmp_path):
    path = write_definition(tmp_path, GRID)
    # Its own allow list: the test run leaves out the slow-to-fail parts.
    (tmp_path / "grid.run.allow").write_text("nothing/*\n")  # execution mode's: ignored here
    (tmp_path / "grid.test.deny").write_text("# only ridge\nline\n")
    result = experiments("run", path)
    assert result.returncode == 1, explain(result)
    assert result.stderr.strip().splitlines()[-1].startswith("error: ridge/broken: "), \
        explain(result)
    assert "ridge/broken" in result.stderr and "nope" in result.stderr, explain(result)
    assert "line/plain: skipped (denied by grid.test.deny)" in result.stderr
    models = tmp_path / "outputs" / "test-models" / "ridge"
    assert sorted(p.name for p in models.iterdir()) == ["strong-a1000", "weak"]
    assert not (tmp_path / "outputs" / f"output-{HOST}").exists()
    assert not (tmp_path / "outputs" / f"log-{HOST}").exists()
    assert not (tmp_path / "models").exists()

    # The failing version first: nothing after it runs; test models cleared.
    path.write_text(GRID.replace("order: 3", "order: 0"))
    result = experiments("run", path)
    assert result.returncode == 1, explain(result)
    assert "ridge/weak" not in result.stderr and "ridge/strong" not in result.stderr, \
        explain(result)
    assert not (models / "weak").exists()


def test_a_gpu_version_without_a_gpu_fails_before_training(tmp_path):
    path = write_definition(tmp_path, GRID.replace(
        "- {name: plain}", "- {name: gpu, context: {gpus: 1}}"))
    (tmp_path / "grid.test.allow").write_text("line/gpu\n")
    started = time.monotonic()
    result = experiments("run", path, via_dffml=True)
    assert result.returncode == 1, explain(result)
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: line/gpu: incompatible compute context: asks for 1 GPU(s); "
                            "this machine has none visible"), explain(result)
    assert not (tmp_path / "outputs" / "test-models" / "line").exists(), "it trained"
    assert time.monotonic() - started < 30


# -- execution mode ---------------------------------------------------------------------


def test_execution_mode_logs_failures_goes_on_saves_and_resumes(tmp_path):
    repository = tmp_path / "repo"
    path = write_definition(tmp_path, GRID + f"repository: {{root: {repository}, "
                                             f"name: grid, tag_best: best}}\n")
    result = experiments("run", path, "-r", "--jobs", "2", "--json")
    assert result.returncode == 1, explain(result)
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {path}: 1 of 4 version(s) failed, first ridge/broken: "), explain(result)
    summary = by_label(json.loads(result.stdout))
    assert list(summary) == ["line/plain", "ridge/weak", "ridge/strong", "ridge/broken"]
    for label in ("line/plain", "ridge/weak", "ridge/strong"):
        row = summary[label]
        assert row["status"] == "ok" and row["score"] is not None and row["seconds"] > 0, row
        assert pathlib.Path(row["archive"]).is_file(), row
    assert summary["ridge/strong"]["archive"] == str(
        tmp_path / "models" / "ridge" / "strong-a1000" / "model.tar.gz")
    assert summary["ridge/weak"]["score"] > summary["ridge/strong"]["score"] + 0.1
    assert summary["ridge/weak"]["best"] and not summary["ridge/strong"]["best"]
    assert summary["ridge/broken"]["status"] == "failed"
    assert "[2/4 done]" in result.stderr  # progress while it runs
    log = (tmp_path / "outputs" / f"log-{HOST}").read_text()
    assert "ridge/broken" in log and "Traceback" in log and "nope" in log
    first = records(tmp_path)
    assert sorted((r["experiment"], r["version"], r["status"]) for r in first) == [
        ("line", "plain", "ok"), ("ridge", "broken", "failed"), ("ridge", "strong", "ok"),
        ("ridge", "weak", "ok")]

    # Saved in the repository with their metadata; the best tagged.
    shown = subprocess.run([sys.executable, "-m", "dffml_archive", "models", "show", "grid:best-ridge",
                            "--repository", repository, "--json"], cwd=str(REPO),
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, explain(shown)
    metadata = json.loads(shown.stdout)["metadata"]
    assert metadata["experiment"] == "ridge" and metadata["experiment_version"] == "weak"
    assert metadata["hyperparameters"]["alpha"] == 0.1
    assert metadata["score"] == summary["ridge/weak"]["score"]

    # A crash cut the last record short: earlier lines still count.
    with open(tmp_path / "outputs" / f"output-{HOST}", "a") as handle:
        handle.write('{"experiment": "ridge", "version": "bro')
    # Run again after changing one version: only it and the failed one run.
    path.write_text(path.read_text().replace("alpha: 1000", "alpha: 500"))
    again = experiments("run", path, "-r", "--json")
    assert again.returncode == 1, explain(again)
    statuses = {label: row["status"] for label, row in by_label(json.loads(again.stdout)).items()}
    assert statuses == {"line/plain": "cached", "ridge/weak": "cached", "ridge/strong": "ok",
                        "ridge/broken": "failed"}, explain(again)
    assert len(records(tmp_path)) == len(first) + 2


def run_watching(args, cwd=REPO):
    """Start the CLI; yield its progress lines as they come."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dffml_archive", "experiments", *map(str, args)], cwd=str(cwd),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return process


def wait_for_line(process, text: str, seen: list, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return
    process.kill()
    pytest.fail(f"never printed {text!r}; printed:\n{''.join(seen)}")


CHAIN = """\
experiments:
  - name: chain
    model: slr_archive
    sources: {train: train.csv}
    config: {features: "x:float:1", predict: "y:float:1"}
    versions: [{name: v1}, {name: v2}, {name: v3}, {name: v4}]
"""


def test_a_deny_list_edited_while_the_run_goes_is_honoured(tmp_path):
    path = write_definition(tmp_path, CHAIN)
    process = run_watching(["run", path, "-r", "--json"])
    seen = []
    try:
        wait_for_line(process, "chain/v1: training", seen)
        (tmp_path / "grid.run.deny").write_text("chain/v3\n")
        # A second execution run of the same definition would break this one.
        second = experiments("run", path, "-r")
        assert second.returncode == 1, explain(second)
        assert second.stderr.strip() == (f"error: {path}: another execution run of this "
                                         "definition is going on (wait for it to end, or stop "
                                         "it)"), explain(second)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    statuses = {label: row["status"] for label, row in by_label(json.loads(stdout)).items()}
    assert statuses == {"chain/v1": "ok", "chain/v2": "ok", "chain/v3": "skipped",
                        "chain/v4": "ok"}, "".join(seen) + stderr
    assert process.returncode == 0, stderr


def _version_process(runner: subprocess.Popen, timeout=60) -> int:
    """The pid of the runner's version process (``experiments._child``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in pathlib.Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == runner.pid and b"experiments._child" in (proc / "cmdline").read_bytes():
                    return int(proc.name)
        time.sleep(0.01)
    pytest.fail("the runner started no version process")


def test_an_interrupted_run_resumes_without_rerunning_completed_versions(tmp_path):
    path = write_definition(tmp_path, CHAIN)
    process = run_watching(["run", path, "-r"])
    seen = []
    try:
        wait_for_line(process, "chain/v2: training", seen)
        # v2 trains in ~0.4 s: frozen, it cannot finish before the Ctrl-C
        # lands however slowly this test runs (it did once, in CI); the
        # runner must still end it.
        v2_process = _version_process(process)
        os.kill(v2_process, signal.SIGSTOP)
        process.send_signal(signal.SIGINT)  # Ctrl-C while v2 trains
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    with contextlib.suppress(ProcessLookupError):
        os.kill(v2_process, signal.SIGCONT)  # had it outlived the runner, it goes on now
    assert process.returncode == 130, "".join(seen) + stderr
    assert [(r["version"], r["status"]) for r in records(tmp_path)] == [("v1", "ok")]
    time.sleep(3)  # had v2's process outlived the runner, it would finish by now
    assert not list((tmp_path / "models").rglob(".partial-*")), "a partial archive is left"
    assert not (tmp_path / "models" / "chain" / "v2" / "model.tar.gz").exists(), \
        "v2 went on training"

    resumed = experiments("run", path, "-r", "--json")
    assert resumed.returncode == 0, explain(resumed)
    statuses = {label: row["status"] for label, row in by_label(json.loads(resumed.stdout)).items()}
    assert statuses == {"chain/v1": "cached", "chain/v2": "ok", "chain/v3": "ok",
                        "chain/v4": "ok"}
    assert [r["version"] for r in records(tmp_path)] == ["v1", "v2", "v3", "v4"]


def test_a_tensorflow_and_a_scikit_version_in_their_compute_contexts(tmp_path):
    """The grid of docs/experiments.rst in small: TensorFlow (CPU only,
    memory growth, one thread) beside scikit; the context's environment
    reaches the version's process (its own DFFML_ARCHIVE_CACHE is used)."""
    cache = tmp_path / "tf-cache"
    path = write_definition(tmp_path, f"""\
experiments:
  - name: tf
    model: tfdnnr_archive
    sources: {{train: train.csv, accuracy: test.csv}}
    config: {{features: "x:float:1", predict: "y:float:1", batchsize: 4, hidden: [8]}}
    context:
      threads: 1
      gpus: 0
      tensorflow: {{memory_growth: true}}
      env: {{TF_CPP_MIN_LOG_LEVEL: "2", DFFML_ARCHIVE_CACHE: {cache}}}
    versions:
      - {{name: e5, config: {{epochs: 5}}}}
  - name: ridge
    model: scikitridge_archive
    sources: {{train: train.csv, accuracy: test.csv}}
    config: {{features: "x:float:1", predict: "y:float:1"}}
    versions:
      - {{name: a01, config: {{alpha: 0.1}}}}
""")
    result = experiments("run", path, "-r", "--jobs", "2", "--json", via_dffml=True)
    assert result.returncode == 0, explain(result)
    summary = by_label(json.loads(result.stdout))
    assert [row["status"] for row in summary.values()] == ["ok", "ok"], explain(result)
    info = subprocess.run([sys.executable, "-m", "dffml_archive", "inspect", "--json",
                           summary["tf/e5"]["archive"]], cwd=str(REPO), capture_output=True,
                          text=True, timeout=60)
    model = json.loads(info.stdout)["manifest"]["model"]
    assert model["entrypoint"] == "tfdnnr_archive" and model["config"]["epochs"] == 5
    assert cache.is_dir(), "the version's process did not get the context's environment"


def test_the_documented_grid_runs_as_documented(tmp_path):
    """docs/experiments.rst's example (its files: docs/experiments/), in test
    mode and its execution-mode allow list checked."""
    import shutil

    example = tmp_path / "example"
    shutil.copytree(str(REPO / "docs" / "experiments"), str(example))
    result = experiments("run", example / "grid.yaml", "--json")
    assert result.returncode == 0, explain(result)
    statuses = {label: row["status"] for label, row in by_label(json.loads(result.stdout)).items()}
    assert statuses == {"ridge/alpha-0.1": "ok", "ridge/alpha-10": "ok", "dnn/h8-e10": "ok",
                        "dnn/h16x8-e20": "ok", "dnn/h64-gpu": "skipped"}, explain(result)
    from dffml_archive.experiments import Lists

    lists = Lists(example / "grid.yaml", "run")
    assert [label for label in statuses if lists.why_not(label) is None] == [
        "ridge/alpha-0.1", "ridge/alpha-10", "dnn/h8-e10", "dnn/h16x8-e20"]


def test_more_cpu_threads_than_the_machine_has_are_refused_before_training(tmp_path):
    path = write_definition(tmp_path, CHAIN.replace("{name: v1}",
                                                    "{name: v1, context: {threads: 100000}}"))
    result = experiments("run", path, "-r", "--json")
    assert result.returncode == 1, explain(result)
    row = by_label(json.loads(result.stdout))["chain/v1"]
    assert row["status"] == "failed" and row["archive"] is None, row
    assert row["error"].startswith(f"asks for 100000 CPU threads; this machine has "
                                   f"{os.cpu_count()}"), row
    assert not (tmp_path / "models" / "chain" / "v1").exists()
    # Execution mode went on with the others.
    assert [r["status"] for r in records(tmp_path)] == ["failed", "ok", "ok", "ok"]
