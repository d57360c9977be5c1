"""Progress reporting and cooperative cancellation for worker-thread jobs."""
import threading
import time
from typing import Callable, Optional

ProgressCallback = Callable[[int, Optional[int]], None]


class Cancelled(Exception):
    """The awaiting task was cancelled; the worker stops at the next chunk."""


class Job:
    """Handed to engine functions: they call :meth:`advance` per chunk."""

    _INTERVAL = 0.05  # seconds between progress calls

    def __init__(self, progress: Optional[ProgressCallback] = None):
        self.progress = progress
        self.cancel_event = threading.Event()
        self.done = 0
        self.total: Optional[int] = None
        self._last_report = 0.0

    def start(self, total: Optional[int]) -> None:
        self.total = total
        self.done = 0
        self._report(force=True)

    def advance(self, nbytes: int) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()
        self.done += nbytes
        self._report()

    def finish(self) -> None:
        if self.total is not None:
            self.done = self.total
        self._report(force=True)

    def _report(self, force=False):
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_report >= self._INTERVAL:
            self._last_report = now
            self.progress(self.done, self.total)


NO_JOB = Job()

