"""Pack/extract speed and archive size: the engine against GNU tar/zip and
the Python standard library, measured side by side in the same run.

    python -m benchmarks.bench_engine [--quick] [--repeat N] [--all-formats]
                                      [--workdir DIR] [--json FILE]

Sides (for each data set and format):

ours      the engine's sync internals in-process (``_pack.pack_directory``,
          ``_extract.extract_archive``), default level of each codec
async     the public async API (``pack``/``extract``), same work in a thread
          (shown for .tar.gz only: once per data set)
GNU       ``tar``/``zip``/``unzip`` as a subprocess (fork/exec included)
stdlib    what upstream DFFML does: ``tarfile``/``zipfile`` defaults

All extractors read the SAME archive, the one ours wrote, so they decompress
identical streams.  Every pack side ends with an fsync of its archive (ours
fsyncs as part of its atomic replace; for GNU and stdlib the benchmark
fsyncs the output inside the timed region), and before every timed run
``os.sync()`` writes back what the previous run left dirty (untimed).  The
page cache is NOT dropped: source files and archives are in the page cache
for every side equally.

Ratios are speed ratios: other side's seconds / our seconds (>1: we are
faster).  For the small-file set the GNU side's start-up (the same command
on a one-empty-file tree, best of N) is subtracted, because ours runs
in-process with no interpreter or exec start-up.
"""
import contextlib
import asyncio
import os
import pathlib
import sys
import tarfile
import warnings
import zipfile

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks import _common as B  # noqa: E402

DEFAULT_FORMATS = ("tar.gz", "tar.zst", "zip", "tar")
QUICK_FORMATS = ("tar.gz", "tar.zst", "zip")
SLOW_FORMATS = ("tar.bz2", "tar.xz")

#: Do not repeat a side whose single run took longer than this (xz, bzip2).
LONG_RUN_SECONDS = 30.0


def _tar_pack(flags):
    return lambda src, out: (["tar", *flags, "-cf", str(out), "-C", str(src), "."], None)


def _tar_extract(flags):
    return lambda archive, dest: (["tar", *flags, "-xf", str(archive), "-C", str(dest)], None)


def _stdlib_tar_pack(mode):
    def pack(src, out):
        with tarfile.open(out, mode) as bundle:
            bundle.add(str(src), arcname=".")
        B.fsync_file(out)

    return pack


def _stdlib_tar_extract(archive, dest):
    with tarfile.open(archive) as bundle:
        bundle.extractall(str(dest))


def _stdlib_zip_pack(src, out):
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for name in sorted(filenames) + dirnames:
                path = os.path.join(dirpath, name)
                bundle.write(path, os.path.relpath(path, src))
    B.fsync_file(out)


def _stdlib_zip_extract(archive, dest):
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(str(dest))


#: format -> how each baseline does it.
FORMATS = {
    "tar.gz": dict(
        ext=".tar.gz",
        gnu="tar -czf (gzip -6) / tar -xzf",
        gnu_pack=_tar_pack(["-z"]),
        gnu_extract=_tar_extract(["-z"]),
        stdlib="tarfile w:gz (level 9) / extractall",
        stdlib_pack=_stdlib_tar_pack("w:gz"),
        stdlib_extract=_stdlib_tar_extract,
    ),
    "tar.zst": dict(
        ext=".tar.zst",
        gnu="tar -I 'zstd -3 -T0' / tar -I 'zstd -d' -xf",
        gnu_pack=_tar_pack(["-I", "zstd -3 -T0"]),
        gnu_extract=_tar_extract(["-I", "zstd -d"]),
        stdlib=None,  # no zstd in the 3.8 standard library
    ),
    "zip": dict(
        ext=".zip",
        gnu="zip -r -q (deflate 6) / unzip -q",
        gnu_pack=lambda src, out: (["zip", "-r", "-q", str(out), "."], str(src)),
        gnu_extract=lambda archive, dest: (["unzip", "-q", str(archive), "-d", str(dest)], None),
        stdlib="zipfile ZIP_DEFLATED (level 6) / extractall",
        stdlib_pack=_stdlib_zip_pack,
        stdlib_extract=_stdlib_zip_extract,
    ),
    "tar": dict(
        ext=".tar",
        gnu="tar -cf / tar -xf",
        gnu_pack=_tar_pack([]),
        gnu_extract=_tar_extract([]),
        stdlib="tarfile w / extractall",
        stdlib_pack=_stdlib_tar_pack("w"),
        stdlib_extract=_stdlib_tar_extract,
    ),
    "tar.bz2": dict(
        ext=".tar.bz2",
        gnu="tar -cjf (bzip2 -9) / tar -xjf",
        gnu_pack=_tar_pack(["-j"]),
        gnu_extract=_tar_extract(["-j"]),
        stdlib="tarfile w:bz2 (level 9) / extractall",
        stdlib_pack=_stdlib_tar_pack("w:bz2"),
        stdlib_extract=_stdlib_tar_extract,
    ),
    "tar.xz": dict(
        ext=".tar.xz",
        gnu="tar -cJf (xz -6) / tar -xJf",
        gnu_pack=_tar_pack(["-J"]),
        gnu_extract=_tar_extract(["-J"]),
        stdlib="tarfile w:xz (preset 6) / extractall",
        stdlib_pack=_stdlib_tar_pack("w:xz"),
        stdlib_extract=_stdlib_tar_extract,
    ),
}


def _timed(function, repeat, setup=None, teardown=None):
    """best_of, but a side whose first run is very long is not repeated."""
    first, _all, result = B.best_of(function, 1, setup, teardown)
    times = [first]
    if first < LONG_RUN_SECONDS and repeat > 1:
        _best, more, result = B.best_of(function, repeat - 1, setup, teardown)
        times += more
    return min(times), times, result


class EngineBench:
    def __init__(self, args, root: pathlib.Path, loop):
        self.args = args
        self.root = root
        self.loop = loop
        self.out = root / "out"
        self.out.mkdir()
        self.trivial = root / "trivial"
        self.trivial.mkdir()
        (self.trivial / "empty").write_bytes(b"")

    # -- sides ---------------------------------------------------------

    def measure(self, dataset: str, data: dict, fmt_name: str, with_startup: bool) -> dict:
        from dffml_archive import _api
        from dffml_archive._extract import extract_archive
        from dffml_archive._pack import pack_directory

        spec = FORMATS[fmt_name]
        repeat = self.args.repeat
        src = data["path"]
        ext = spec["ext"]
        base = self.out / f"{dataset}-{fmt_name}"
        archives = {side: pathlib.Path(f"{base}-{side}{ext}") for side in ("ours", "async", "gnu", "stdlib")}
        dest = pathlib.Path(f"{base}-extracted")
        result = {"format": fmt_name, "dataset": dataset, "gnu": spec["gnu"], "stdlib": spec["stdlib"]}

        def clean(path):
            return lambda: B.remove(path)

        def fresh_dir(path):
            def setup():
                B.remove(path)
                path.mkdir()

            return setup

        # pack -----------------------------------------------------------
        pack = {}
        pack["ours"] = _timed(
            lambda: pack_directory(src, archives["ours"]), repeat, clean(archives["ours"])
        )
        # The async API is the same work in a thread: shown once per data
        # set (.tar.gz).  --quick: stdlib only where a target needs it.
        full = not self.args.quick or fmt_name == "tar.gz"
        show_async = fmt_name == "tar.gz"
        if show_async:
            pack["async"] = _timed(
                lambda: self.loop.run_until_complete(_api.pack(src, archives["async"])),
                repeat, clean(archives["async"]),
            )
        argv, cwd = spec["gnu_pack"](src, archives["gnu"])

        def gnu_pack():
            B.run_command(argv, cwd)
            B.fsync_file(archives["gnu"])

        pack["gnu"] = _timed(gnu_pack, repeat, clean(archives["gnu"]))
        if spec["stdlib"] and full:
            pack["stdlib"] = _timed(
                lambda: spec["stdlib_pack"](src, archives["stdlib"]), repeat,
                clean(archives["stdlib"]),
            )
        sizes = {side: archives[side].stat().st_size for side in pack}

        # extract: everybody reads ours' archive ------------------------
        source = archives["ours"]
        extract = {}
        extract["ours"] = _timed(
            lambda: extract_archive(source, dest), repeat, clean(dest), clean(dest)
        )
        if show_async:
            extract["async"] = _timed(
                lambda: self.loop.run_until_complete(_api.extract(source, dest)),
                repeat, clean(dest), clean(dest),
            )
        argv, cwd = spec["gnu_extract"](source, dest)
        gnu_creates_dest = fmt_name == "zip"  # unzip -d makes it; tar -C needs it
        extract["gnu"] = _timed(
            lambda: B.run_command(argv, cwd), repeat,
            clean(dest) if gnu_creates_dest else fresh_dir(dest), clean(dest),
        )
        if spec["stdlib"] and full:
            extract["stdlib"] = _timed(
                lambda: spec["stdlib_extract"](source, dest), repeat,
                fresh_dir(dest), clean(dest),
            )

        # GNU start-up: the same commands on a one-empty-file tree --------
        startup = None
        if with_startup:
            trivial_archive = pathlib.Path(f"{base}-trivial{ext}")
            trivial_dest = pathlib.Path(f"{base}-trivial-extracted")
            argv, cwd = spec["gnu_pack"](self.trivial, trivial_archive)
            startup_repeat = max(repeat, 5)
            pack_startup = _timed(
                lambda: (B.run_command(argv, cwd), B.fsync_file(trivial_archive)),
                startup_repeat, clean(trivial_archive),
            )[0]
            argv, cwd = spec["gnu_extract"](trivial_archive, trivial_dest)
            extract_startup = _timed(
                lambda: B.run_command(argv, cwd), startup_repeat,
                clean(trivial_dest) if gnu_creates_dest else fresh_dir(trivial_dest),
                clean(trivial_dest),
            )[0]
            B.remove(trivial_archive)
            startup = {"pack": pack_startup, "extract": extract_startup}
        result["gnu_startup"] = startup

        for side, path in archives.items():
            B.remove(path)

        def summarize(timings, op):
            out = {}
            for side, (best, times, _) in timings.items():
                out[side] = {"best": best, "runs": times}
            ours = out["ours"]["best"]
            gnu = out["gnu"]["best"]
            gnu_net = gnu - startup[op] if startup else gnu
            out["gnu"]["net_of_startup"] = gnu_net if startup else None
            out["ratio_vs_gnu"] = gnu_net / ours
            out["ratio_vs_gnu_raw"] = gnu / ours
            out["ratio_vs_stdlib"] = out["stdlib"]["best"] / ours if "stdlib" in out else None
            out["async_over_sync"] = out["async"]["best"] / ours if "async" in out else None
            return out

        result["pack"] = summarize(pack, "pack")
        result["extract"] = summarize(extract, "extract")
        result["size"] = sizes
        result["size_ratio_vs_gnu"] = sizes["ours"] / sizes["gnu"]
        result["size_ratio_vs_stdlib"] = sizes["ours"] / sizes["stdlib"] if "stdlib" in sizes else None
        return result


def render(dataset_label, results, net) -> str:
    rows = []
    for r in results:
        for op in ("pack", "extract"):
            m = r[op]
            gnu = m["gnu"]["best"]
            gnu_cell = B.fmt_s(gnu)
            if net:
                gnu_cell += f" ({B.fmt_s(m['gnu']['net_of_startup'])})"
            rows.append([
                r["format"], op,
                B.fmt_s(m["ours"]["best"]), B.fmt_s(m["async"]["best"]) if "async" in m else "-",
                gnu_cell,
                B.fmt_s(m["stdlib"]["best"]) if "stdlib" in m else ("n/a" if not r["stdlib"] else "-"),
                B.fmt_ratio(m["ratio_vs_gnu"]), B.fmt_ratio(m["ratio_vs_stdlib"]),
                f"{r['size']['ours'] / B.MB:.2f}" if op == "pack" else "",
                f"{r['size']['gnu'] / B.MB:.2f}" if op == "pack" else "",
                f"{r['size_ratio_vs_gnu']:.3f}" if op == "pack" else "",
            ])
    headers = [
        "format", "op", "ours s", "async s", "GNU s (net)" if net else "GNU s", "stdlib s",
        "ours/GNU", "ours/stdlib", "MB ours", "MB GNU", "size o/G",
    ]
    return dataset_label + "\n" + B.table(headers, rows, "llrrrrrrrrr")


def evaluate(results_by_dataset) -> B.Targets:
    targets = B.Targets()
    weights = {r["format"]: r for r in results_by_dataset.get("weights", [])}
    small = {r["format"]: r for r in results_by_dataset.get("small", [])}
    if "tar.gz" in weights:
        r = weights["tar.gz"]
        targets.check("weights .tar.gz pack vs GNU tar -czf", r["pack"]["ratio_vs_gnu"], ">=", 5)
        targets.check("weights .tar.gz pack vs stdlib tarfile w:gz", r["pack"]["ratio_vs_stdlib"], ">=", 5)
        targets.check("weights .tar.gz extract vs GNU tar -xzf", r["extract"]["ratio_vs_gnu"], ">=", 2)
        targets.check("weights .tar.gz size vs GNU", r["size_ratio_vs_gnu"], "<=", 1.02)
    if "tar.zst" in weights:
        r = weights["tar.zst"]
        targets.check("weights .tar.zst pack vs GNU zstd -3 -T0", r["pack"]["ratio_vs_gnu"], ">=", 0.8)
        targets.check("weights .tar.zst extract vs GNU zstd -d", r["extract"]["ratio_vs_gnu"], ">=", 0.8)
        targets.check("weights .tar.zst size vs GNU", r["size_ratio_vs_gnu"], "<=", 1.02)
    if "zip" in weights:
        r = weights["zip"]
        targets.check("weights .zip pack vs zip -r", r["pack"]["ratio_vs_gnu"], ">=", 3)
        targets.check("weights .zip extract vs unzip", r["extract"]["ratio_vs_gnu"], ">=", 1)
        targets.check("weights .zip size vs zip -r", r["size_ratio_vs_gnu"], "<=", 1.10)
    if "tar.gz" in small:
        r = small["tar.gz"]
        note = "GNU net of start-up"
        targets.check("small .tar.gz pack vs GNU tar -czf", r["pack"]["ratio_vs_gnu"], ">=", 0.5, note=note)
        targets.check("small .tar.gz extract vs GNU tar -xzf", r["extract"]["ratio_vs_gnu"], ">=", 0.5, note=note)
    for dataset, by_format in (("weights", weights), ("small", small)):
        for name, r in by_format.items():
            for op in ("pack", "extract"):
                targets.check(
                    f"foundation: {dataset} .{name} {op} vs GNU",
                    r[op]["ratio_vs_gnu"], ">=", 0.8,
                    note="GNU net of start-up" if dataset == "small" else "",
                )
    return targets


def run(args, datasets=None, root=None) -> dict:
    """Run the benchmark; ``datasets``/``root`` let ``python -m benchmarks``
    share one generated data set between the benchmarks."""
    formats = QUICK_FORMATS if args.quick else DEFAULT_FORMATS
    if getattr(args, "formats", None):
        formats = tuple(args.formats.split(","))
    if getattr(args, "all_formats", False):
        formats = tuple(dict.fromkeys(formats + SLOW_FORMATS))
    print(f"== bench_engine ({B.size_name(args)}, best of {args.repeat}; formats: {', '.join(formats)})")
    load_start = os.getloadavg()
    wanted = tuple((getattr(args, "datasets", None) or "weights,small").split(","))
    own = datasets is None
    with B.workdir(args, "engine") if own else contextlib.nullcontext(root) as workroot:
        if own:
            datasets = B.make_datasets(workroot / "data", B.SIZES[B.size_name(args)], wanted)
        bench_root = pathlib.Path(workroot) / "engine"
        bench_root.mkdir()
        loop = asyncio.new_event_loop()
        try:
            bench = EngineBench(args, bench_root, loop)
            results = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                for dataset in wanted:
                    results[dataset] = []
                    for fmt_name in formats:
                        print(f"  {dataset} {fmt_name} ...", flush=True)
                        results[dataset].append(
                            bench.measure(dataset, datasets[dataset], fmt_name, dataset == "small")
                        )
        finally:
            loop.close()
            B.remove(bench_root)
    load_end = os.getloadavg()
    out = []
    out.append(
        f"bench_engine: {B.size_name(args)} data, best of {args.repeat}, load average "
        f"{load_start[0]:.2f} -> {load_end[0]:.2f} on {os.cpu_count()} CPUs"
    )
    if "weights" in results:
        out.append(render(datasets["weights"]["label"], results["weights"], net=False))
        out.append("")
    if "small" in results:
        startup_cells = ", ".join(
            f"{r['format']} {B.fmt_s(r['gnu_startup']['pack'])}/{B.fmt_s(r['gnu_startup']['extract'])}"
            for r in results["small"]
        )
        out.append(render(
            datasets["small"]["label"] + "  (GNU net = minus its start-up, pack/extract: "
            + startup_cells + ")",
            results["small"], net=True,
        ))
    targets = evaluate(results)
    text = B.print_report(
        out, targets, "Targets (speed ratio = their seconds / our seconds; >1 = we are faster)"
    )
    return {
        "benchmark": "engine",
        "size": B.size_name(args),
        "repeat": args.repeat,
        "formats": list(formats),
        "datasets": {
            k: {kk: vv for kk, vv in v.items() if kk != "path"}
            for k, v in datasets.items() if k in wanted
        },
        "results": results,
        "targets": targets.items,
        "loadavg": [load_start, load_end],
        "table": text,
    }


def _add_options(parser):
    parser.add_argument(
        "--all-formats", action="store_true",
        help="also .tar.bz2 and .tar.xz (GNU xz alone takes minutes on 300 MB)",
    )
    parser.add_argument("--formats", default=None, help="comma-separated subset, e.g. tar.gz,zip")
    parser.add_argument(
        "--datasets", default="weights,small", help="comma-separated subset of weights,small"
    )


def main(argv=None):
    return B.run_benchmark("python -m benchmarks.bench_engine", __doc__, run, argv, _add_options)


if __name__ == "__main__":
    sys.exit(main())
