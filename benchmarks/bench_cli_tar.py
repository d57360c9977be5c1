"""The command line against GNU tar, whole processes, start-up included:
``python -m dffml_archive pack|extract`` against ``tar -I 'zstd -3 -T0'``,
``tar -czf`` / ``tar -xzf`` and ``zip -r`` / ``unzip``, on the same data, in
the same run.  This is what a user typing the command waits for (imports,
fsyncs, thread hand-offs and all), unlike ``bench_engine``'s in-process
figures.

    python -m benchmarks.bench_cli_tar [--quick] [--repeat N] [--formats tar.zst,tar.gz]

Ratios are GNU's time divided by ours: above 1 means the CLI is faster.
Both sides write durable archives (GNU's archive is fsynced after the
command, as our atomic replace does).
"""
import os
import pathlib
import sys

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks import _common as B  # noqa: E402
from benchmarks.bench_engine import FORMATS  # noqa: E402

DEFAULT_FORMATS = ("tar.zst", "tar.gz", "zip")
#: Goals from issue 15 item 9 (whole-process ratios against GNU).
TARGETS = {
    ("weights", "tar.zst", "pack"): 0.9,
    ("weights", "tar.zst", "extract"): 0.9,
    ("weights", "tar.gz", "extract"): 2.0,
    ("small", "tar.gz", "extract"): 0.5,
}


def _ours(*arguments) -> list:
    return [sys.executable, "-m", "dffml_archive", *map(str, arguments)]


def measure(dataset: str, data: dict, fmt_name: str, out: pathlib.Path, repeat: int) -> dict:
    spec = FORMATS[fmt_name]
    src = data["path"]
    ours_archive = out / f"{dataset}-ours{spec['ext']}"
    gnu_archive = out / f"{dataset}-gnu{spec['ext']}"
    dest = out / f"{dataset}-extracted"

    def clean(path):
        return lambda: B.remove(path)

    def fresh(path):
        def setup():
            B.remove(path)
            path.mkdir()

        return setup

    timings = {}
    timings["pack", "ours"] = B.best_of(
        lambda: B.run_command(_ours("pack", src, ours_archive)), repeat, clean(ours_archive))
    argv, cwd = spec["gnu_pack"](src, gnu_archive)
    timings["pack", "gnu"] = B.best_of(
        lambda: (B.run_command(argv, cwd), B.fsync_file(gnu_archive)), repeat, clean(gnu_archive))
    # Both extract our archive (the one users have).
    timings["extract", "ours"] = B.best_of(
        lambda: B.run_command(_ours("extract", ours_archive, dest)), repeat, clean(dest), clean(dest))
    argv, cwd = spec["gnu_extract"](ours_archive, dest)
    gnu_makes_dest = fmt_name == "zip"  # unzip -d creates it; tar -C needs it
    timings["extract", "gnu"] = B.best_of(
        lambda: B.run_command(argv, cwd), repeat,
        clean(dest) if gnu_makes_dest else fresh(dest), clean(dest))
    B.remove(ours_archive)
    B.remove(gnu_archive)
    result = {"dataset": dataset, "format": fmt_name, "gnu": spec["gnu"]}
    for op in ("pack", "extract"):
        ours, gnu = timings[op, "ours"][0], timings[op, "gnu"][0]
        result[op] = {"ours": ours, "gnu": gnu, "ratio": gnu / ours,
                      "runs": {"ours": timings[op, "ours"][1], "gnu": timings[op, "gnu"][1]}}
    return result


def run(args, datasets=None, root=None) -> dict:
    formats = [f for f in (getattr(args, "formats", None) or ",".join(DEFAULT_FORMATS)).split(",") if f]
    print(f"== bench_cli_tar (best of {args.repeat}; ratio = GNU time / ours, > 1: ours faster)")
    B.byte_compile_our_packages()
    load_start = os.getloadavg()
    results = []
    with B.workdir(args, "cli-tar") as work:
        if datasets is None:
            datasets = B.make_datasets(work / "data", B.SIZES[B.size_name(args)])
        out = work / "out"
        out.mkdir()
        for dataset, data in datasets.items():
            for fmt_name in formats:
                results.append(measure(dataset, data, fmt_name, out, args.repeat))
    targets = B.Targets()
    rows = []
    for r in results:
        for op in ("pack", "extract"):
            m = r[op]
            rows.append([r["dataset"], r["format"], op, B.fmt_s(m["ours"]), B.fmt_s(m["gnu"]),
                         f"{m['ratio']:.2f}x", r["gnu"]])
            goal = TARGETS.get((r["dataset"], r["format"], op))
            if goal is not None:
                targets.check(f"CLI {r['dataset']} {r['format']} {op} vs GNU (whole process)",
                              m["ratio"], ">=", goal, unit="x")
    text = B.print_report([
        f"bench_cli_tar: load average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs",
        *(data["label"] for data in (datasets or {}).values()),
        B.table(["data", "format", "op", "python -m dffml_archive", "GNU", "ratio", "GNU command"],
                rows, "lllrrrl"),
    ], targets)
    return {"benchmark": "cli_tar", "repeat": args.repeat, "results": results,
            "targets": targets.items, "table": text}


def _add_options(parser):
    parser.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                        help="comma-separated subset of: " + ", ".join(FORMATS))


def main(argv=None):
    return B.run_benchmark("python -m benchmarks.bench_cli_tar", __doc__, run, argv, _add_options)


if __name__ == "__main__":
    sys.exit(main())
