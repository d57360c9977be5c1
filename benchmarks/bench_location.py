"""``archive_location``: re-entering an unchanged archive (verified cache hit)
against a full extract, and the cost of leaving without changes.

    python -m benchmarks.bench_location [--quick] [--repeat N] [--workdir DIR] [--json FILE]

For each data set (weights and small files, as .tar.gz) this measures, best of N:

full extract   ``_extract.extract_archive`` of the archive (the baseline)
cold enter     ``archive_location`` enter with an empty cache (extract + state)
cold exit      leaving that unchanged session (tree compared, no repack)
warm enter     enter again, nothing changed: the verified cache is reused
warm exit      leaving that unchanged session (no repack)
changed exit   leaving after rewriting one file (a full repack; for scale)
full pack      ``_pack.pack_directory`` of the data set (the exit baseline)

Enter and exit are timed separately by driving the async context manager's
``__aenter__``/``__aexit__`` on one event loop.  ``dffml_archive.operations``
(which imports dffml, ~0.2 s) is imported before timing; that one-off import
is measured separately in a fresh interpreter.  A warm enter that did not hit
the cache (the tree's inodes changed) is flagged.  Target: warm enter < 5% of
a full extract.
"""
import contextlib
import asyncio
import os
import pathlib
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks import _common as B  # noqa: E402

REENTRY_TARGET = 0.05
FORMATS = ("tar.gz",)


def _first_file_inode(tree: pathlib.Path):
    for dirpath, _dirs, names in os.walk(tree):
        for name in sorted(names):
            return os.stat(os.path.join(dirpath, name)).st_ino
    return None


def _import_cost() -> float:
    code = (
        "import time; t=time.perf_counter(); import dffml_archive.operations; "
        "print(time.perf_counter()-t)"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(B.REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    best = None
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, check=True)
        value = float(out.stdout.decode().strip())
        best = value if best is None else min(best, value)
    return best


class LocationBench:
    def __init__(self, args, root: pathlib.Path, loop):
        self.args = args
        self.root = root
        self.loop = loop

    def _cache_extract_dir(self):
        from dffml_archive import _constants as C

        return C.cache_root() / "extract"

    def session_enter(self, archive):
        from dffml_archive import archive_location

        context = archive_location(archive)
        started = time.perf_counter()
        copy = self.loop.run_until_complete(context.__aenter__())
        return context, copy, time.perf_counter() - started

    def session_exit(self, context):
        started = time.perf_counter()
        self.loop.run_until_complete(context.__aexit__(None, None, None))
        return time.perf_counter() - started

    def measure(self, dataset: str, data: dict, fmt: str) -> dict:
        from dffml_archive._extract import extract_archive
        from dffml_archive._pack import pack_directory

        repeat = self.args.repeat
        src = data["path"]
        archive = self.root / f"{dataset}.{fmt}"
        dest = self.root / f"{dataset}-extracted"
        pack_directory(src, archive)

        full_pack = B.best_of(
            lambda: pack_directory(src, self.root / f"{dataset}-repack.{fmt}"), repeat,
            setup=lambda: B.remove(self.root / f"{dataset}-repack.{fmt}"),
        )[0]
        B.remove(self.root / f"{dataset}-repack.{fmt}")
        full_extract = B.best_of(
            lambda: extract_archive(archive, dest), repeat,
            setup=lambda: B.remove(dest), teardown=lambda: B.remove(dest),
        )[0]

        cold_enter, cold_exit, warm_enter, warm_exit, changed_exit = [], [], [], [], []
        misses = 0
        for _ in range(repeat):
            # cold: empty cache
            B.remove(self._cache_extract_dir())
            B.settle()
            context, copy, seconds = self.session_enter(archive)
            cold_enter.append(seconds)
            inode = _first_file_inode(copy.directory)
            B.settle()
            cold_exit.append(self.session_exit(context))
            # warm: cache from the cold session
            B.settle()
            context, copy, seconds = self.session_enter(archive)
            warm_enter.append(seconds)
            if _first_file_inode(copy.directory) != inode:
                misses += 1
            B.settle()
            warm_exit.append(self.session_exit(context))
        identity = archive.stat()
        # changed exit: rewrite one file, the exit repacks (once per run)
        for _ in range(repeat):
            context, copy, _seconds = self.session_enter(archive)
            victim = sorted(p for p in pathlib.Path(copy.directory).rglob("*") if p.is_file())[-1]
            victim.write_bytes(victim.read_bytes()[::-1] + b"changed")
            B.settle()
            changed_exit.append(self.session_exit(context))
        result = {
            "dataset": dataset,
            "format": fmt,
            "archive_bytes": identity.st_size,
            "full_extract": full_extract,
            "full_pack": full_pack,
            "cold_enter": min(cold_enter),
            "cold_exit": min(cold_exit),
            "warm_enter": min(warm_enter),
            "warm_exit": min(warm_exit),
            "changed_exit": min(changed_exit),
            "runs": {
                "cold_enter": cold_enter, "cold_exit": cold_exit, "warm_enter": warm_enter,
                "warm_exit": warm_exit, "changed_exit": changed_exit,
            },
            "warm_cache_misses": misses,
        }
        result["warm_enter_over_extract"] = result["warm_enter"] / full_extract
        result["warm_exit_over_pack"] = result["warm_exit"] / full_pack
        result["cold_exit_over_pack"] = result["cold_exit"] / full_pack
        result["cold_enter_over_extract"] = result["cold_enter"] / full_extract
        B.remove(archive)
        B.remove(self._cache_extract_dir())
        return result


def run(args, datasets=None, root=None) -> dict:
    import dffml_archive.operations  # noqa: F401  (imports dffml; not timed)

    print(f"== bench_location ({B.size_name(args)}, best of {args.repeat})")
    load_start = os.getloadavg()
    own = datasets is None
    context = B.workdir(args, "location") if own else contextlib.nullcontext(root)
    with context as workroot:
        workroot = pathlib.Path(workroot)
        if own:
            datasets = B.make_datasets(workroot / "data", B.SIZES[B.size_name(args)])
        here = workroot / "location"
        here.mkdir()
        loop = asyncio.new_event_loop()
        results = []
        try:
            bench = LocationBench(args, here, loop)
            for dataset in ("weights", "small"):
                for fmt in FORMATS:
                    print(f"  {dataset} {fmt} ...", flush=True)
                    results.append(bench.measure(dataset, datasets[dataset], fmt))
        finally:
            loop.close()
            B.remove(here)
    import_seconds = _import_cost()
    rows = []
    for r in results:
        pct = lambda value: f"{100 * value:.1f}%"  # noqa: E731
        rows.append([
            r["dataset"], r["format"], B.fmt_s(r["full_extract"]), B.fmt_s(r["cold_enter"]),
            B.fmt_s(r["warm_enter"]), pct(r["warm_enter_over_extract"]),
            B.fmt_s(r["full_pack"]), B.fmt_s(r["cold_exit"]), B.fmt_s(r["warm_exit"]),
            pct(r["warm_exit_over_pack"]), B.fmt_s(r["changed_exit"]),
            r["warm_cache_misses"],
        ])
    targets = B.Targets()
    for r in results:
        targets.check(
            f"{r['dataset']} .{r['format']} warm re-entry / full extract",
            100 * r["warm_enter_over_extract"], "<", 100 * REENTRY_TARGET, unit="%",
        )
    load_end = os.getloadavg()
    text = B.print_report([
        f"bench_location: {B.size_name(args)} data, load average "
        f"{load_start[0]:.2f} -> {load_end[0]:.2f} on {os.cpu_count()} CPUs",
        "archive_location: enter/exit of an unchanged archive (seconds, best of runs)",
        B.table(
            ["data", "format", "extract", "cold enter", "warm enter", "warm/extract",
             "pack", "cold exit", "warm exit", "warm exit/pack", "changed exit", "misses"],
            rows, "llrrrrrrrrrr",
        ),
        f"(one-off `import dffml_archive.operations` (imports dffml) in a fresh "
        f"interpreter: {import_seconds:.3f} s, not included above)",
    ], targets)
    return {
        "benchmark": "location",
        "size": B.size_name(args),
        "repeat": args.repeat,
        "results": results,
        "import_operations_seconds": import_seconds,
        "targets": targets.items,
        "loadavg": [load_start, load_end],
        "table": text,
    }


def main(argv=None):
    return B.run_benchmark("python -m benchmarks.bench_location", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
