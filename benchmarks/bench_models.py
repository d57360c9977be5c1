"""slr through the real dffml CLI: train + predict with an archive location
vs a directory location, measured in the same run, alternating sides.

    scripts/run python -m benchmarks.bench_models [--repeat 5]

Prints each side's best time and the overhead ratio (target <= 1.10).

Our packages are byte-compiled first, as ``pip install`` does for every
package (dffml's own modules come precompiled from its wheel): otherwise,
under PYTHONDONTWRITEBYTECODE, only the archive side would recompile its
modules from source in every process.  ``--from-source`` measures that case
(it removes our packages' .pyc files instead).
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks import _common as B  # noqa: E402

TARGET = 1.10


def _dffml() -> str:
    return str(pathlib.Path(sys.executable).with_name("dffml"))


def _write_data(work: pathlib.Path) -> None:
    rows = "\n".join(f"{x},{2 * x + 1}" for x in range(200))
    (work / "train.csv").write_text("x,y\n" + rows + "\n")
    (work / "new.csv").write_text("x\n" + "\n".join(str(x / 2) for x in range(50)) + "\n")


def _one_round(work: pathlib.Path, model: str, location_flag: str, location: str) -> float:
    common = ["-sources", "f=csv", "-source-filename"]
    features = ["-model-features", "x:float:1", "-model-predict", "y:float:1"]
    start = time.perf_counter()
    subprocess.run(
        [_dffml(), "train", "-model", model, *features, location_flag, location,
         *common, "train.csv"], cwd=work, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        [_dffml(), "predict", "all", "-model", model, *features, location_flag, location,
         *common, "new.csv"], cwd=work, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--from-source", action="store_true",
                        help="remove our packages' .pyc files instead of writing them")
    args = parser.parse_args(argv)
    compiled = B.byte_compile_our_packages(args.from_source)
    work = pathlib.Path(tempfile.mkdtemp(prefix="dffml-archive-bench-models-"))
    try:
        _write_data(work)
        sides = {
            "directory (slr, -model-directory)": ("slr", "-model-directory", "model-dir"),
            "archive (slr_archive, .tar.gz)": ("slr_archive", "-model-location", "model.tar.gz"),
        }
        best = {name: float("inf") for name in sides}
        paired = []
        for _ in range(args.repeat):
            this_round = []
            for name, (model, flag, location) in sides.items():
                target = work / location
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
                this_round.append(_one_round(work, model, flag, location))
                best[name] = min(best[name], this_round[-1])
            paired.append(this_round[1] / this_round[0])
        for name, seconds in best.items():
            print(f"{name:40} best of {args.repeat}: {seconds:.3f} s")
        directory, archive = best.values()
        ratio = archive / directory
        verdict = "PASS" if ratio <= TARGET else "FAIL"
        print(f"{verdict}  archive/directory overhead {ratio:.3f}  (target <= {TARGET})")
        # Informational: a second view of the noise (the verdict is best-of).
        print(f"(median of the {args.repeat} back-to-back round ratios: "
              f"{statistics.median(paired):.3f})")
        print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
              f"our packages byte-compiled: {compiled})")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
