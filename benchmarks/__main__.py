"""Run every benchmark on one generated data set:

    python -m benchmarks [--quick] [--repeat N] [--all-formats] [--workdir DIR] [--json FILE]

engine (pack/extract vs GNU and stdlib), loop (event-loop stall and RSS),
location (archive_location re-entry), cli (``--help`` start-up), cli_tar
(``python -m dffml_archive pack|extract`` against GNU tar, whole processes),
repository (the model repository: deduplication, save/load against ``cp``,
log/find/list over 10,000 versions), scaleout (the repository on PostgreSQL +
SeaweedFS, servers it starts itself: push against ``put_object``, re-push,
find/log/list over 100,000 versions); then a summary of every target.

The engine and the benchmarks are first copied to a temporary directory and
run from there (``--no-snapshot``: run the checkout directly), so edits made
to the checkout during the run cannot mix versions.
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks import _common as B  # noqa: E402
from benchmarks import (  # noqa: E402
    bench_cli, bench_cli_tar, bench_engine, bench_location, bench_loop, bench_repository,
    bench_scaleout,
)

ALL = ("engine", "loop", "location", "cli", "cli_tar", "repository", "scaleout")


def _run_from_snapshot(args, argv) -> int:
    """Copy the engine and the benchmarks to a temporary directory and run
    from there: the checkout may be edited while a run takes minutes, and
    in-process code, subprocesses and the digest must all be one version."""
    parent = args.workdir
    if parent:
        os.makedirs(parent, exist_ok=True)
    snapshot = pathlib.Path(tempfile.mkdtemp(prefix="dffml-archive-bench-code-", dir=parent))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "results")
        for package in ("dffml_archive", "benchmarks", "scripts"):
            shutil.copytree(B.REPO / package, snapshot / package, ignore=ignore)
        env = dict(os.environ)
        env["BENCH_SOURCE_REPO"] = str(B.REPO)
        env["PYTHONPATH"] = str(snapshot) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if args.json:  # the child runs elsewhere: pass an absolute path
            rest, skip = [], False
            for arg in argv:
                if skip:
                    skip = False
                elif arg == "--json":
                    skip = True
                elif not arg.startswith("--json="):
                    rest.append(arg)
            argv = rest + ["--json", os.path.abspath(args.json)]
        command = [sys.executable, "-u", "-m", "benchmarks", "--no-snapshot", *argv]
        return subprocess.call(command, cwd=str(snapshot), env=env)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    B.add_common_options(parser)
    parser.add_argument(
        "--all-formats", action="store_true",
        help="bench_engine also runs .tar.bz2 and .tar.xz (GNU xz alone takes minutes)",
    )
    parser.add_argument(
        "--only", default=",".join(ALL), help="comma-separated subset of: " + ", ".join(ALL)
    )
    parser.add_argument(
        "--no-snapshot", action="store_true",
        help="run the checkout's code directly instead of a copy taken at the start",
    )
    args = parser.parse_args(argv)
    if not args.no_snapshot:
        return _run_from_snapshot(args, argv)
    args.formats = None
    wanted = [name for name in args.only.split(",") if name]
    unknown = set(wanted) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    env = B.environment()
    B.print_environment(env)
    started = time.perf_counter()
    # Import everything now: one version of the engine for the whole run.
    import dffml_archive._location  # noqa: F401
    import dffml_archive.operations  # noqa: F401
    if {"repository", "scaleout"} & set(wanted):  # SQLAlchemy: only when it is measured
        import dffml_archive.repository._maintenance  # noqa: F401

    payload = {"environment": env, "size": B.size_name(args), "repeat": args.repeat}
    with B.workdir(args, "all") as root:
        datasets = B.make_datasets(root / "data", B.SIZES[B.size_name(args)])
        modules = {"engine": bench_engine, "loop": bench_loop, "location": bench_location,
                   "cli": bench_cli, "cli_tar": bench_cli_tar, "repository": bench_repository,
                   "scaleout": bench_scaleout}
        for name in wanted:
            payload[name] = modules[name].run(args, datasets=datasets, root=root)
    elapsed = time.perf_counter() - started
    payload["seconds"] = elapsed
    print("=" * 100)
    print(f"Summary ({B.size_name(args)} data, best of {args.repeat}, {elapsed:.0f} s in all)")
    summary = B.Targets()
    for name in wanted:
        summary.items.extend(payload[name]["targets"])
    print(summary.render())
    failures = summary.failures()
    print(f"{len(failures)} of {len(summary.items)} targets FAIL")
    payload["failures"] = [item["target"] for item in failures]
    if B.engine_digest() != env["engine_sources_sha256"]:
        print("WARNING: the engine's sources changed during the run; results mix versions")
        payload["engine_changed_during_run"] = True
    B.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
