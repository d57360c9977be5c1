"""Where versions run, behind one seam: ``await executor.run(spec, resources)``
returns the version's result.  Every executor runs each version with
:func:`._child.run_version_process`, i.e. in a process of its own.

* ``LocalExecutor``: subprocesses of the runner, ``jobs`` at once.
* ``DaskExecutor``: each version is a task on a Dask cluster; its compute
  context becomes Dask worker resources (``GPU=1``), so that a GPU version
  is placed only on a worker that declares a GPU.  The worker's declaration
  is trusted (the version's own GPU check is not repeated there); start one
  worker per GPU with ``CUDA_VISIBLE_DEVICES`` naming it.  Data and outputs
  paths must be the same on every worker (a shared file system).
"""
import asyncio
import concurrent.futures
import logging
import uuid
from typing import Dict

from ..errors import ExperimentError
from ._child import allow_starting, run_version_process, stop_all


class Executor:
    """What the runner needs of an executor."""

    name = "executor"
    slots = 1  # versions at once

    async def start(self) -> None:
        pass

    async def run(self, spec: dict, resources: Dict[str, float]) -> dict:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, jobs: int = 1):
        allow_starting()
        self.slots = jobs
        self.threads = concurrent.futures.ThreadPoolExecutor(jobs, "dffml-archive-version")

    async def run(self, spec, resources):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, run_version_process, spec)

    async def close(self):
        stop_all()  # versions still running when the run stops (Ctrl-C, fail-fast)
        self.threads.shutdown(wait=True)


def _dask_task(spec: dict) -> dict:
    """Runs on a Dask worker."""
    from distributed import get_worker

    spec = dict(spec, worker=get_worker().address)
    return run_version_process(spec, trust_gpu_resource=True)


def _quiet_dask():
    """Dask logs a lost scheduler with tracebacks on stderr (some through
    Python's last-resort handler); the runner says it once, in the
    version's error and the log.  Returns what undoes it."""
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("distributed", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    last_resort, logging.lastResort = logging.lastResort, logging.NullHandler()

    def undo():
        logging.lastResort = last_resort

    return undo


class DaskExecutor(Executor):
    name = "dask"

    def __init__(self, address: str, jobs: int = 0, timeout: float = 30):
        self.address = address
        self.requested_slots = jobs
        self.timeout = timeout
        self.client = None
        self.workers = {}
        self.undo_quiet = lambda: None

    async def start(self):
        try:
            from distributed import Client
        except ImportError as error:
            raise ExperimentError("--scheduler", f"Dask is not installed ({error})",
                                  hint="pip install distributed") from None
        self.undo_quiet = _quiet_dask()
        try:
            self.client = await Client(self.address, asynchronous=True, timeout=self.timeout)
            info = await self.client.scheduler.identity()  # fresh: who is there now
        except (OSError, asyncio.TimeoutError) as error:
            raise ExperimentError(f"--scheduler {self.address}",
                                  f"cannot reach the Dask scheduler ({error})",
                                  hint="start dask-scheduler, or check the address") from None
        self.workers = info.get("workers", {})
        if not self.workers:
            raise ExperimentError(f"--scheduler {self.address}", "the cluster has no workers",
                                  hint="start dask-worker ADDRESS")
        threads = sum(worker.get("nthreads", 1) for worker in self.workers.values())
        self.slots = self.requested_slots or max(1, threads)

    def can_place(self, resources: Dict[str, float]) -> bool:
        return any(
            all(worker.get("resources", {}).get(name, 0) >= amount
                for name, amount in resources.items())
            for worker in self.workers.values()
        )

    async def run(self, spec, resources):
        if resources and not self.can_place(resources):
            wanted = ", ".join(f"{name}={amount:g}" for name, amount in resources.items())
            return {"status": "failed", "incompatible": True, "seconds": 0.0, "error": (
                f"incompatible compute context: no Dask worker declares "
                f"{wanted} (start one with dask-worker --resources {wanted.replace(', ', ',')})")}
        future = self.client.submit(_dask_task, spec, resources=resources or None, pure=False,
                                    key=f"{spec['label']}-{uuid.uuid4().hex[:8]}")
        try:
            return await future
        except asyncio.CancelledError:
            await future.cancel()
            raise
        except Exception as error:  # the scheduler or the worker went away
            return {"status": "failed", "seconds": 0.0, "error": (
                f"the Dask task failed ({type(error).__name__}: {error}); was the scheduler "
                f"{self.address} or its worker lost? run -r again to resume")}

    async def close(self):
        if self.client is not None:
            try:
                await asyncio.wait_for(self.client.close(), 10)
            except Exception:  # a lost scheduler: nothing left to close cleanly
                pass
        self.undo_quiet()
