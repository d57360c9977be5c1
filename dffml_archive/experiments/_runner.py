"""The runner: takes versions from the definition in order, asks the allow
and deny lists (read again for each version), skips what an earlier
execution run completed, hands the rest to an executor, records results.

Test mode (``execute=False``): the test lists, archives under
``outputs/test-models/`` (cleared first), nothing recorded, the first
failure stops the run.  Execution mode: the run lists, archives under
``models/EXPERIMENT/VERSION<suffix>/``, every result appended to
``outputs/output-<host>``, failures logged and the run goes on.
"""
import asyncio
import dataclasses
import shutil
from typing import Callable, Dict, List, Optional

from .. import _constants as C
from ..errors import ArchiveError, DefinitionError, VersionFailedError
from ._definition import Definition, Version, load_definition
from ._executors import DaskExecutor, Executor, LocalExecutor
from ._lists import Lists
from ._state import Outputs, find_completed, record_of


@dataclasses.dataclass
class Result:
    """One row of the summary."""

    experiment: str
    version: str
    status: str  # ok, failed, cached (done by an earlier run), skipped (lists)
    score: Optional[float] = None
    seconds: Optional[float] = None
    archive: Optional[str] = None
    host: Optional[str] = None
    worker: Optional[str] = None
    error: Optional[str] = None
    best: bool = False
    saved: Optional[str] = None  # its repository reference

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


async def run_experiments(path, *, execute: bool = False, jobs: Optional[int] = None,
                          scheduler: Optional[str] = None,
                          progress: Optional[Callable[[str], None]] = None) -> List[Result]:
    """Run the definition at ``path``; the summary, in definition order.
    Test mode raises VersionFailedError at the first failure (versions
    already running then are stopped).  ``jobs``: versions at once (local
    default 1; Dask default: the cluster's worker threads)."""
    definition = load_definition(path)
    _check_scorers(definition)
    executor = DaskExecutor(scheduler, jobs or 0) if scheduler else LocalExecutor(jobs or 1)
    run = _Run(definition, execute, executor, progress or (lambda line: None))
    try:
        await executor.start()
        await run.all()
    finally:
        await executor.close()
    await run.tag_best()
    return run.summary()


def _check_scorers(definition: Definition) -> None:
    if not any(experiment.scorer for experiment in definition.experiments):
        return
    import inspect

    import dffml

    if "scorer" not in inspect.signature(dffml.accuracy).parameters:
        raise DefinitionError(definition.path, "scorer: this dffml's accuracy takes no scorer",
                              hint="remove scorer (the model's own accuracy is the score)")


class _Run:
    def __init__(self, definition: Definition, execute: bool, executor: Executor, progress):
        self.definition = definition
        self.execute = execute
        self.executor = executor
        self.progress = progress
        self.lists = Lists(definition.path, "run" if execute else "test")
        self.outputs = Outputs(definition.directory, record=execute)
        if execute:
            self.outputs.hold(definition.path)
        self.done = self.outputs.completed() if execute else {}
        self.results: Dict[str, Result] = {}
        self.models = definition.directory / C.EXPERIMENT_MODELS_DIRECTORY
        if not execute:
            self.models = self.outputs.directory / "test-models"
            shutil.rmtree(self.models, ignore_errors=True)  # a test run starts clean

    async def all(self) -> None:
        queue = self.definition.versions()
        total = len(queue)
        running: Dict[asyncio.Task, Version] = {}
        mode = "execution" if self.execute else "test"
        self.outputs.log(f"{mode} run of {self.definition.path}: {total} version(s), "
                         f"{self.executor.name} executor")
        try:
            while queue or running:
                while queue and len(running) < self.executor.slots:
                    version = queue.pop(0)
                    started = self._start(version, total)
                    if started is not None:
                        running[started] = version
                if not running:
                    break
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    await self._finished(running.pop(task), task.result(), total)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    def _counted(self, total: int) -> str:
        return f"[{len(self.results)}/{total} done]"

    def _start(self, version: Version, total: int) -> Optional[asyncio.Task]:
        why_not = self.lists.why_not(version.label)  # read now: it may have changed
        if why_not is not None:
            self._result(version, "skipped", error=why_not)
            self.progress(f"{self._counted(total)} {version.label}: skipped ({why_not})")
            return None
        key = version.key()
        earlier = find_completed(self.done, version, key) if self.execute else None
        if earlier is not None:
            self._result(version, "cached", **{name: earlier.get(name) for name in (
                "score", "seconds", "archive", "host", "worker", "saved")})
            self.progress(f"{self._counted(total)} {version.label}: done by an earlier run "
                          f"({earlier.get('archive')})")
            return None
        self.progress(f"{self._counted(total)} {version.label}: training "
                      f"({self.executor.name} executor)")
        spec = {
            "label": version.label, "key": key, "cwd": str(self.definition.directory),
            "model_arguments": version.model_arguments(),
            "train": version.experiment.sources["train"].cli_arguments(),
            "accuracy": version.experiment.sources["accuracy"].cli_arguments(),
            "scorer": version.experiment.scorer, "context": version.context.describe(),
            "archive": str(self.models / version.experiment.name
                           / f"{version.name}{version.suffix}" / C.EXPERIMENT_ARCHIVE_NAME),
        }
        return asyncio.ensure_future(
            self.executor.run(spec, version.context.dask_resources()))

    async def _finished(self, version: Version, outcome: dict, total: int) -> None:
        key = version.key()
        status = outcome["status"]
        result = self._result(version, status, **{name: outcome.get(name) for name in (
            "score", "seconds", "archive", "host", "worker", "error")})
        if status == "ok" and self.execute and self.definition.repository is not None:
            try:
                result.saved = await self._save(version, result)
            except (ArchiveError, OSError) as error:
                result.error = f"trained, but not saved to the repository: {error}"
        # Recorded before it is said: whoever watches the progress may stop the run.
        self.outputs.log(f"{version.label} [{key[:12]}] {status}"
                         + (f" score={result.score}" if result.score is not None else "")
                         + (f" error={result.error}" if result.error else "")
                         + (f"\n--- output of {version.label}\n{outcome['output']}"
                            if outcome.get("output") and status != "ok" else ""))
        self.outputs.add({**record_of(version, outcome, key), "saved": result.saved})
        if status == "ok":
            self.progress(f"{self._counted(total)} {version.label}: score {result.score:.6g} "
                          f"in {result.seconds:.1f} s")
        else:
            self.progress(f"{self._counted(total)} {version.label}: FAILED: {result.error}")
        if status != "ok" and not self.execute:
            raise VersionFailedError(version.label, result.error or "failed",
                                     hint="test mode stops at the first failure; fix it and "
                                     "run again (-r logs failures and goes on)")

    def _result(self, version: Version, status: str, **fields) -> Result:
        result = Result(version.experiment.name, version.name, status, **fields)
        self.results[version.label] = result
        return result

    async def _save(self, version: Version, result: Result) -> Optional[str]:
        """The archive as a new repository version (its metadata: the
        experiment, version, config and score)."""
        from ..repository import Repository

        chosen = self.definition.repository
        async with Repository(chosen.root) as store:
            models = await store.create(chosen.name or version.experiment.name, exist_ok=True)
            image = models.new_image(result.archive)
            image["experiment"] = version.experiment.name
            image["experiment_version"] = version.name
            image["hyperparameters"] = version.config
            image["score"] = result.score
            image["seconds"] = result.seconds
            saved = await image.save(comment=f"experiment {version.label}")
        return saved.reference

    async def tag_best(self) -> None:
        """Mark the best of each experiment (and tag it in the repository
        when the definition asks to)."""
        for experiment in self.definition.experiments:
            scored = [self.results[version.label] for version in experiment.versions
                      if version.label in self.results
                      and self.results[version.label].score is not None]
            if not scored:
                continue
            pick = max if experiment.goal == "max" else min
            best = pick(scored, key=lambda result: result.score)
            best.best = True
            chosen = self.definition.repository
            if self.execute and chosen is not None and chosen.tag_best and best.saved:
                # One repository for every experiment: a best tag for each.
                tag = chosen.tag_best if chosen.name is None \
                    else f"{chosen.tag_best}-{experiment.name}"
                await _tag(chosen, best.saved, tag)

    def summary(self) -> List[Result]:
        return [self.results[version.label] for version in self.definition.versions()
                if version.label in self.results]


async def _tag(chosen, reference: str, tag: str) -> None:
    from ..repository import Repository, parse_reference

    parsed = parse_reference(reference)
    async with Repository(chosen.root) as store:
        models = await store.get(parsed.name)
        await models.add_tag(tag, parsed.version)


def format_summary(results: List[Result]) -> str:
    """The table printed at the end (the best of each experiment marked *)."""
    saved = any(result.saved for result in results)
    header = ("", "experiment", "version", "status", "score", "seconds", "host",
              *(("saved",) if saved else ()), "archive")
    rows = [header] + [(
        "*" if result.best else "", result.experiment, result.version, result.status,
        "" if result.score is None else f"{result.score:.6g}",
        "" if result.seconds is None else f"{result.seconds:.1f}",
        result.worker or result.host or "", *((result.saved or "",) if saved else ()),
        result.archive or result.error or "",
    ) for result in results]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
        .rstrip() for row in rows
    )
