"""CLI start-up: ``python -m dffml_archive --help`` against the bare
interpreter (``python -c pass``), both measured in the same run, and what
``--help`` imports (it must import no dffml and no backend).

    python -m benchmarks.bench_cli [--repeat N] [--json FILE]

Our packages are byte-compiled first, as ``pip install`` leaves them.
"""
import os
import pathlib
import subprocess
import sys

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks import _common as B  # noqa: E402

HELP_TARGET_SECONDS = 0.3
#: Top-level packages that ``--help`` must leave unimported.
HEAVY_PACKAGES = ("dffml", "dffml_model_scikit", "sklearn", "numpy", "tensorflow", "torch")


def _python(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *arguments], check=True, capture_output=True, text=True
    )


def _imported_by_help() -> list:
    """Top-level modules ``--help`` imports, from ``-X importtime``."""
    stderr = _python("-X", "importtime", "-m", "dffml_archive", "--help").stderr
    names = (line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if "|" in line)
    return sorted({name.split(".")[0] for name in names})


def run(args, datasets=None, root=None) -> dict:
    repeat = max(args.repeat, 10)
    print(f"== bench_cli (best of {repeat})")
    B.byte_compile_our_packages()
    load_start = os.getloadavg()
    bare, bare_all, _ = B.best_of(lambda: _python("-c", "pass"), repeat)
    help_, help_all, _ = B.best_of(lambda: _python("-m", "dffml_archive", "--help"), repeat)
    heavy = [name for name in _imported_by_help() if name in HEAVY_PACKAGES]
    targets = B.Targets()
    targets.check("python -m dffml_archive --help", help_, "<", HELP_TARGET_SECONDS, unit=" s")
    targets.check("--help imports dffml or a backend", len(heavy), "<=", 0, unit="",
                  note=", ".join(heavy))
    text = B.print_report([
        f"bench_cli: load average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs",
        B.table(
            ["command", "best", "ratio to bare python"],
            [["python -c pass", B.fmt_s(bare), "1.00x"],
             ["python -m dffml_archive --help", B.fmt_s(help_), f"{help_ / bare:.2f}x"]],
            "lrr",
        ),
    ], targets)
    return {
        "benchmark": "cli",
        "repeat": repeat,
        "bare_python_seconds": bare_all,
        "help_seconds": help_all,
        "heavy_imports": heavy,
        "targets": targets.items,
        "table": text,
    }


def main(argv=None):
    return B.run_benchmark("python -m benchmarks.bench_cli", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
