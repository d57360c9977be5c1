"""What an execution run keeps: ``outputs/output-<host>`` (one JSON record a
line per finished version) and ``outputs/log-<host>`` (text).

Both are only ever appended to, each record in one ``write`` of a file
opened with O_APPEND and then fsynced: a crash can cut the last line
short, never damage an earlier one, and a cut line is ignored on reading.
The runner, not the Dask scheduler, owns this state: a run that stops for
any reason (Ctrl-C, a lost scheduler, a power cut) resumes from it.
"""
import json
import os
import pathlib
import socket
import time
from typing import Dict, List, Optional

from .. import _constants as C
from ..errors import ExperimentError, explain_os_error


def host_name() -> str:
    # The file names carry it: keep it to safe characters.
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in socket.gethostname()) \
        or "localhost"


def _append(path: pathlib.Path, text: str) -> None:
    try:
        descriptor = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, text.encode("utf-8"))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        reason, hint = explain_os_error(error, f"cannot append to {str(path)!r}")
        raise ExperimentError(path, reason, hint=hint) from error


def _end_a_cut_line(path: pathlib.Path) -> None:
    """A crash may have cut the last line short: end it, so that the next
    record starts a line of its own (the cut one is then skipped)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            last = handle.read(1)
    except OSError:  # missing or empty
        return
    if last != b"\n":
        _append(path, "\n")


class Outputs:
    """The ``outputs/`` directory beside a definition."""

    def __init__(self, directory: pathlib.Path, record: bool):
        self.directory = directory / C.EXPERIMENT_OUTPUTS_DIRECTORY
        self.record = record  # test mode records nothing
        self.host = host_name()
        self.log_path = self.directory / f"log-{self.host}"
        self.output_path = self.directory / f"output-{self.host}"
        if record:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                reason, hint = explain_os_error(error, "cannot create the outputs directory")
                raise ExperimentError(self.directory, reason, hint=hint) from error
            for path in (self.log_path, self.output_path):
                _end_a_cut_line(path)

    def hold(self, definition_path: pathlib.Path) -> None:
        """Refuse a second execution run of the same definition while this
        one goes (both would train the same versions into the same
        directories); the lock goes with the process, however it ends."""
        import fcntl

        path = self.directory / f".lock-{definition_path.name}"
        self._lock = open(path, "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise ExperimentError(definition_path, "another execution run of this definition "
                                  "is going on", hint="wait for it to end, or stop it") from None

    def log(self, text: str) -> None:
        if self.record:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            lines = "".join(f"{stamp} {line}\n" for line in text.rstrip("\n").splitlines())
            _append(self.log_path, lines)

    def add(self, record: dict) -> None:
        if self.record:
            _append(self.output_path, json.dumps(record, sort_keys=True) + "\n")

    def completed(self) -> Dict[tuple, dict]:
        """(experiment, version, key) -> the newest successful record, from
        every host's output file (a run may resume on another machine that
        shares the directory)."""
        done = {}
        for record in self.records():
            if record.get("status") == "ok":
                done[(record.get("experiment"), record.get("version"), record.get("key"))] = record
        return done

    def records(self) -> List[dict]:
        records = []
        for path in sorted(self.directory.glob("output-*")) if self.directory.is_dir() else ():
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line a crash cut short
                if isinstance(record, dict):
                    records.append(record)
        return records


def record_of(version, result: dict, key: str) -> dict:
    """A version's output record."""
    return {
        "experiment": version.experiment.name, "version": version.name, "key": key,
        "status": result["status"], "score": result.get("score"),
        "seconds": result.get("seconds"), "archive": result.get("archive"),
        "host": result.get("host"), "worker": result.get("worker"),
        "error": result.get("error"), "config": version.config,
        "finished": time.time(),
    }


def find_completed(done: Dict[tuple, dict], version, key: str) -> Optional[dict]:
    record = done.get((version.experiment.name, version.name, key))
    if record is None or not record.get("archive") or not os.path.isfile(record["archive"]):
        return None  # an archive deleted since must be trained again
    return record
