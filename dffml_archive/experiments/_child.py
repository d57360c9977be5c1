"""One version's training, in a process of its own.

``run_version_process(spec)`` (called by an executor: in the runner for
the local executor, on a Dask worker for the Dask one) checks the compute
context, builds the process environment and starts
``python -m dffml_archive.experiments._child SPEC RESULT``, which runs the
real ``dffml train`` then ``dffml accuracy`` for the version's
``*_archive`` model into a partial archive, renamed to the version's
archive only once both succeeded (a failure never replaces an earlier one).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, Optional

from .. import _constants as C

#: Running children by id, so that a stopping run can end them.
_RUNNING: Dict[int, subprocess.Popen] = {}
_RUNNING_LOCK = threading.Lock()
#: Set by stop_all: a child started after it (its thread was past the last
#: check) is stopped as soon as it exists.
_STOPPING = threading.Event()


def run_version_process(spec: dict, trust_gpu_resource: bool = False) -> dict:
    """Train and score one version; returns its result (never raises for a
    failure of the version itself: ``status`` says it)."""
    from ..errors import ComputeContextError
    from ._context import ComputeContext, visible_gpus

    started = time.monotonic()
    context = ComputeContext(**spec["context"])
    gpu_ids = visible_gpus()
    where = {"host": socket.gethostname(), "worker": spec.get("worker")}
    try:
        if trust_gpu_resource:
            # Dask placed it on a worker that declares the GPUs: trust it.
            context.check(spec["label"], ["declared"] * context.gpus_needed(), os.cpu_count() or 1)
            gpu_ids = None
        else:
            context.check(spec["label"], gpu_ids, os.cpu_count() or 1)
    except ComputeContextError as error:
        reason = error.reason + (f" ({error.hint})" if error.hint else "")
        return {"status": "failed", "error": reason, "incompatible": True, "seconds": 0.0,
                **where}
    env = context.environment(dict(os.environ), gpu_ids)
    return {**_run_child(spec, env, started), **where}


def _run_child(spec: dict, env: dict, started: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="dffml-archive-version-") as scratch:
        spec_path, result_path = os.path.join(scratch, "spec"), os.path.join(scratch, "result")
        with open(spec_path, "w", encoding="utf-8") as handle:
            json.dump(spec, handle)
        timeout = C.experiment_timeout_seconds() or None
        child = subprocess.Popen(
            [sys.executable, "-m", "dffml_archive.experiments._child", spec_path, result_path],
            cwd=spec["cwd"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops what it started
            preexec_fn=_die_with_the_runner,
        )
        with _RUNNING_LOCK:
            _RUNNING[child.pid] = child
            if _STOPPING.is_set():
                stop(child)
        try:
            output, _ = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(child)
            output, _ = child.communicate()
            output += f"\nstopped after {timeout:g} s (DFFML_ARCHIVE_EXPERIMENT_TIMEOUT)".encode()
        finally:
            with _RUNNING_LOCK:
                _RUNNING.pop(child.pid, None)
        text = output.decode("utf-8", errors="replace")
        result = _read_result(result_path)
    seconds = round(time.monotonic() - started, 3)
    if child.returncode == 0 and result is not None:
        return {**result, "status": "ok", "seconds": seconds, "output": text[-20000:]}
    tail = text.strip()[-C.EXPERIMENT_ERROR_TAIL_CHARS:]
    reason = (result or {}).get("error") or _last_line(tail) or f"exited {child.returncode}"
    reason = " ".join(reason.split())  # one line: the error line, the log, the table
    return {"status": "failed", "error": reason, "seconds": seconds, "output": text[-20000:]}


def _read_result(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _die_with_the_runner() -> None:
    """In the new child, before it runs: Linux kills it if the runner's
    thread that started it ends (the runner interrupted, killed, crashed),
    so no version trains on unwatched."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stop_all() still ends children on a clean stop


def stop(child: subprocess.Popen) -> None:
    """End a child and everything it started."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:
        pass


def stop_all() -> None:
    with _RUNNING_LOCK:
        _STOPPING.set()
        children = list(_RUNNING.values())
    for child in children:
        stop(child)


def allow_starting() -> None:
    """A new run may start children again (after an earlier stop_all)."""
    _STOPPING.clear()


# -- in the child process ----------------------------------------------------------


async def _train_and_score(spec: dict) -> dict:
    from dffml.cli.cli import CLI

    archive = spec["archive"]
    directory, name = os.path.split(archive)
    os.makedirs(directory, exist_ok=True)
    partial = os.path.join(directory, f".partial-{os.getpid()}-{name}")
    location = ["-model-location", partial]
    try:
        trained = time.monotonic()
        await CLI.cli("train", *spec["model_arguments"], *location, *spec["train"])
        trained = time.monotonic() - trained
        scorer = ["-scorer", spec["scorer"]] if spec.get("scorer") else []
        score = await CLI.cli("accuracy", *spec["model_arguments"], *location, *scorer,
                              *spec["accuracy"])
        if not isinstance(score, (int, float)):
            raise RuntimeError(f"accuracy returned {score!r}, not a number")
        os.replace(partial, archive)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
        try:
            os.rmdir(directory)  # only if empty: a failed first training leaves nothing
        except OSError:
            pass
    return {"score": float(score), "archive": archive, "train_seconds": round(trained, 3)}


def _child_main(spec_path: str, result_path: str) -> int:
    import asyncio
    import traceback

    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    try:
        result = asyncio.run(_train_and_score(spec))
    except BaseException as error:  # said in the result; the traceback goes to the log
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"}
        status = 1
    else:
        status = 0
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return status


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1], sys.argv[2]))
