"""Where does the engine spend its time?  cProfile of our pack and extract.

    python -m benchmarks.profile_engine [--quick] [--formats tar.gz,zip]
                                        [--datasets weights,small] [--top 15]
                                        [--save DIR] [--workdir DIR]

For each data set and format: one untimed warm-up, then one profiled run of
``_pack.pack_directory`` and of ``_extract.extract_archive``.  Printed: wall
time with and without the profiler, the cumulative time of the engine's
phases (scan, hash, write, fsync ... from the profile), and the top functions
by own time.  C functions (sha256 update, compressors, os.write) appear as
``{method ...}`` / ``{built-in ...}`` rows.  cProfile sees the calling thread
only: time spent in codec threads shows up as waiting in the caller.
Profiler overhead inflates per-call Python costs (visible on small files);
compare the "profiled" and "plain" wall times.  ``--save DIR`` writes .prof
files (open with ``python -m pstats`` or snakeviz).
"""
import argparse
import cProfile
import io
import pathlib
import pstats
import sys
import time

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks import _common as B  # noqa: E402

#: (label, module file suffix, function name) whose cumulative time is a phase.
PHASES = {
    "pack": [
        ("scan (stat, name checks)", "_pack.py", "_scan"),
        ("hash pass (read+sha256)", "_pack.py", "_hash_file"),
        ("manifest to_bytes", "_manifest.py", "to_bytes"),
        ("write pass (tar)", "_pack.py", "_write_tar"),
        ("write pass (zip)", "_pack.py", "_write_zip"),
        ("  copy file data", "_pack.py", "_copy_file"),
        ("  tar headers", "_pack.py", "header"),
        ("codec close/flush", "_formats.py", "close"),
        ("atomic replace (fsync)", "_atomic.py", "atomic_write"),
        ("  fsync", "~", "<built-in method posix.fsync>"),
        ("lock", "_lock.py", "archive_lock"),
    ],
    "extract": [
        ("manifest read", "_extract.py", "_read_manifest"),
        ("member iteration (headers)", "_readers.py", "iter_tar"),
        ("member iteration (zip)", "_readers.py", "iter_zip"),
        ("name checks", "_safety.py", "clean_member_name"),
        ("tracker.add (dups, case folding)", "_safety.py", "add"),
        ("copy members", "_extract.py", "_copy_member"),
        ("  sink.file (mkdir/open/close)", "_extract.py", "file"),
        ("  sha256 update", "~", "<method 'update' of '_hashlib.HASH' objects>"),
        ("  os write", "~", "<method 'write' of '_io.FileIO' objects>"),
        ("compare with manifest", "_extract.py", "_compare"),
        ("finish (chmod dirs)", "_extract.py", "finish"),
        ("move into place", "_extract.py", "_move_into_place"),
    ],
}


def _phase_table(stats: pstats.Stats, op: str, wall: float) -> str:
    rows = []
    for label, filename, function in PHASES[op]:
        total = 0.0
        calls = 0
        for (file, _line, name), (cc, nc, tt, ct, _callers) in stats.stats.items():
            if name == function and (file == filename or file.endswith("/" + filename)):
                total += ct
                calls += nc
        if calls:
            rows.append([label, f"{total:.3f}", f"{100 * total / wall:.0f}%", calls])
    return B.table(["phase (cumulative, profiled)", "s", "% wall", "calls"], rows, "lrrr")


def _top(stats: pstats.Stats, top: int) -> str:
    stream = io.StringIO()
    stats.stream = stream
    stats.sort_stats("tottime").print_stats(top)
    lines = stream.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return "\n".join(lines[start:])


def profile_one(function, setup, save=None):
    setup()
    B.settle()
    started = time.perf_counter()
    function()
    plain = time.perf_counter() - started
    setup()
    B.settle()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    function()
    profiler.disable()
    profiled = time.perf_counter() - started
    if save:
        profiler.dump_stats(save)
    return plain, profiled, pstats.Stats(profiler)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_engine", description=__doc__.split("\n\n")[0]
    )
    B.add_common_options(parser)
    parser.add_argument("--formats", default="tar.gz,tar.zst,zip,tar")
    parser.add_argument("--datasets", default="weights,small")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--save", default=None, metavar="DIR", help="write .prof files here")
    args = parser.parse_args(argv)
    from dffml_archive._extract import extract_archive
    from dffml_archive._pack import pack_directory

    env = B.environment()
    B.print_environment(env)
    datasets_wanted = tuple(args.datasets.split(","))
    save_dir = pathlib.Path(args.save) if args.save else None
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
    with B.workdir(args, "profile") as root:
        datasets = B.make_datasets(root / "data", B.SIZES[B.size_name(args)], datasets_wanted)
        for dataset in datasets_wanted:
            for fmt in args.formats.split(","):
                src = datasets[dataset]["path"]
                archive = root / f"{dataset}.{fmt}"
                dest = root / f"{dataset}-{fmt}-extracted"
                for op in ("pack", "extract"):
                    if op == "pack":
                        function = lambda: pack_directory(src, archive)  # noqa: E731
                        setup = lambda: B.remove(archive)  # noqa: E731
                    else:
                        function = lambda: extract_archive(archive, dest)  # noqa: E731
                        setup = lambda: B.remove(dest)  # noqa: E731
                    save = save_dir / f"{dataset}-{fmt}-{op}.prof" if save_dir else None
                    plain, profiled, stats = profile_one(function, setup, save)
                    print()
                    print("=" * 100)
                    print(
                        f"{datasets[dataset]['label']}\n{op} .{fmt}: plain {plain:.3f} s, "
                        f"profiled {profiled:.3f} s"
                    )
                    print(_phase_table(stats, op, profiled))
                    print()
                    print(_top(stats, args.top))
                B.remove(dest)
                B.remove(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
