"""``python -m dffml_archive experiments run FILE`` and ``dffml service
experiments run FILE``: test mode; ``-r`` execution mode.

Progress goes to stderr while it runs; the summary (a table, or JSON with
``--json``) to stdout at the end.  A failure is one ``error:`` line (see
:mod:`dffml_archive.cli`): in test mode the first failed version, in
execution mode how many failed (after the summary).
"""
import json
import sys


def _positive(text: str) -> int:
    from ..cli import _positive_int

    return _positive_int(text)


def add_experiments_parser(commands) -> None:
    experiments = commands.add_parser(
        "experiments", help="run sets of model versions (hyperparameter grids), keep the best",
        description="Train every version of an experiment definition (YAML) into its own "
        "archive, score it with accuracy and summarize. See docs/experiments.rst.",
    )
    sub = experiments.add_subparsers(dest="experiments_command", metavar="COMMAND")
    sub.required = True
    run = sub.add_parser(
        "run", help="run a definition: test mode, or execution mode with -r",
        description="Test mode (default): the lists NAME.test.allow and NAME.test.deny "
        "beside NAME.yaml, archives under outputs/test-models (cleared), nothing recorded, "
        "stops at the first failure. Execution mode (-r): NAME.run.allow/.deny lists, archives under models/, results "
        "appended to outputs/output-HOST and outputs/log-HOST, failures logged and the run "
        "goes on; versions done by an earlier run with the same config and data are skipped.",
    )
    run.add_argument("file", metavar="FILE", help="the experiment definition (YAML)")
    run.add_argument("-r", "--run", dest="execute", action="store_true",
                     help="execution mode (record results, resume, go on after failures)")
    run.add_argument("--jobs", type=_positive, metavar="N",
                     help="versions at once (local: subprocesses, default 1; Dask: tasks in "
                     "flight, default the cluster's worker threads)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run each version as a task on this Dask scheduler "
                     "(tcp://HOST:PORT) instead of local subprocesses")
    run.add_argument("--json", action="store_true",
                     help="print the summary as JSON (a list of objects)")


def run_experiments_command(args, job) -> str:
    from ..cli import run_async

    return run_async(_run(args))


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _run(args) -> str:
    from ..errors import ExperimentError
    from ._runner import format_summary, run_experiments

    results = await run_experiments(args.file, execute=args.execute, jobs=args.jobs,
                                    scheduler=args.scheduler, progress=_progress)
    if args.json:
        shown = json.dumps([result.to_json() for result in results], indent=2, sort_keys=True)
    else:
        shown = format_summary(results)
    failed = [result for result in results if result.status == "failed"]
    if failed:
        print(shown, flush=True)  # the summary stands; the error line follows
        from ._state import host_name

        label = f"{failed[0].experiment}/{failed[0].version}"
        error = failed[0].error or "failed"
        first = error if error.startswith(label + ":") else f"{label}: {error}"
        raise ExperimentError(args.file, f"{len(failed)} of {len(results)} version(s) failed, "
                              f"first {first}",
                              hint=f"see outputs/log-{host_name()}")
    return shown
