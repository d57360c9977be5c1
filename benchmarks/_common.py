"""Shared helpers for the benchmarks: options, data sets, timing, tables, JSON.

Nothing here is part of the engine.  Every benchmark measures its baselines in
the same run as the engine (the machines are noisy), keeps the best of N runs
and prints ratios.
"""
import argparse
import compileall
import contextlib
import datetime
import gc
import importlib.util
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as "python benchmarks/bench_x.py"
    sys.path.insert(0, str(REPO))
#: The git checkout the code came from (REPO itself, or, when running from a
#: snapshot made by ``python -m benchmarks``, the checkout it was copied from).
SOURCE_REPO = pathlib.Path(os.environ.get("BENCH_SOURCE_REPO") or REPO)

MIB = 1 << 20
MB = 1_000_000

#: name -> (weights file count, MiB per weights file, small file count, small dir count)
SIZES = {
    "full": dict(weight_files=6, weight_mib=50, small_files=5000, small_dirs=50),
    "quick": dict(weight_files=6, weight_mib=10, small_files=1000, small_dirs=10),
}


# --------------------------------------------------------------------------
# our code, as subprocesses import it


def our_package_directories():
    """The directories the dffml subprocesses import our packages from."""
    for package in ("dffml_archive",):
        spec = importlib.util.find_spec(package)
        for directory in (spec.submodule_search_locations or []) if spec else []:
            yield pathlib.Path(directory)


def byte_compile_our_packages(from_source: bool = False) -> str:
    """Write (or, ``from_source``, remove) our packages' .pyc files, as ``pip
    install`` does for every package: under PYTHONDONTWRITEBYTECODE our modules
    would otherwise be recompiled from source in every process."""
    for directory in our_package_directories():
        if from_source:
            shutil.rmtree(directory / "__pycache__", ignore_errors=True)
        elif not compileall.compile_dir(str(directory), maxlevels=0, quiet=1):
            raise SystemExit(f"could not byte-compile {directory}")
    return "no: compiled from source in every process" if from_source else "yes"


# --------------------------------------------------------------------------
# options


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true",
        help="smaller data (60 MiB weights, 1,000 small files) and fewer formats",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, metavar="N",
        help="runs per measurement; the best (fastest) is kept (default 3)",
    )
    parser.add_argument(
        "--workdir", default=None, metavar="DIR",
        help="parent of the temporary working directory (default: the system "
        "temp dir, /tmp); it is removed afterwards",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the working directory (for debugging)"
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="also write results as JSON")


def size_name(args) -> str:
    return "quick" if args.quick else "full"


@contextlib.contextmanager
def workdir(args, label):
    """A fresh temporary directory; the engine's lock files and extraction
    cache are pointed into it so nothing outside it is touched."""
    parent = args.workdir
    if parent:
        os.makedirs(parent, exist_ok=True)
    root = pathlib.Path(tempfile.mkdtemp(prefix=f"dffml-archive-bench-{label}-", dir=parent))
    old_cache = os.environ.get("DFFML_ARCHIVE_CACHE")
    os.environ["DFFML_ARCHIVE_CACHE"] = str(root / "cache")
    try:
        yield root
    finally:
        if old_cache is None:
            os.environ.pop("DFFML_ARCHIVE_CACHE", None)
        else:
            os.environ["DFFML_ARCHIVE_CACHE"] = old_cache
        if args.keep:
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------
# data sets


def make_weights(root: pathlib.Path, files: int, mib: int) -> pathlib.Path:
    """``files`` x ``mib`` MiB of float32 standard-normal values (about as
    compressible as real trained weights: ~8% with deflate) plus a small JSON."""
    import numpy

    root.mkdir(parents=True)
    rng = numpy.random.default_rng(20261125)
    count = mib * MIB // 4
    for index in range(files):
        values = rng.standard_normal(count, dtype=numpy.float32)
        values.tofile(str(root / f"layer{index}.bin"))
    config = {
        "model": "benchmark",
        "layers": [{"name": f"layer{i}", "dtype": "float32", "count": count} for i in range(files)],
    }
    (root / "config.json").write_text(json.dumps(config, indent=1))
    return root


def make_small(root: pathlib.Path, files: int, dirs: int) -> pathlib.Path:
    """``files`` JSON files of ~480 bytes spread over ``dirs`` directories."""
    import random

    rng = random.Random(20261125)
    root.mkdir(parents=True)
    per_dir = -(-files // dirs)
    made = 0
    for d in range(dirs):
        directory = root / f"dir{d:03d}"
        directory.mkdir()
        for f in range(per_dir):
            if made == files:
                break
            record = {
                "id": made,
                "name": f"record-{made:06d}",
                "features": {f"f{k}": round(rng.uniform(-1000, 1000), 6) for k in range(17)},
                "label": rng.choice(["cat", "dog", "bird", "fish"]),
                "note": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(40)),
            }
            (directory / f"record{f:04d}.json").write_text(json.dumps(record, indent=1))
            made += 1
    return root


def tree_bytes(root: pathlib.Path):
    total = count = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            total += os.path.getsize(os.path.join(dirpath, name))
            count += 1
    return total, count


def make_datasets(root: pathlib.Path, sizes: dict, which=("weights", "small")) -> dict:
    """Generate the data sets below ``root``; returns name -> info dict."""
    result = {}
    started = time.perf_counter()
    if "weights" in which:
        path = make_weights(root / "weights", sizes["weight_files"], sizes["weight_mib"])
        total, count = tree_bytes(path)
        result["weights"] = dict(
            path=path, bytes=total, files=count,
            label=f"weights: {sizes['weight_files']} x {sizes['weight_mib']} MiB float32 "
            f"+ JSON = {total / MB:.1f} MB",
        )
    if "small" in which:
        path = make_small(root / "small", sizes["small_files"], sizes["small_dirs"])
        total, count = tree_bytes(path)
        result["small"] = dict(
            path=path, bytes=total, files=count,
            label=f"small: {count:,} JSON files of ~{total // max(count, 1)} B in "
            f"{sizes['small_dirs']} dirs = {total / MB:.1f} MB",
        )
    os.sync()
    print(f"(data generated in {time.perf_counter() - started:.1f} s)")
    return result


# --------------------------------------------------------------------------
# timing


def settle() -> None:
    """Untimed, before every timed run: write back dirty pages left by the
    previous run (so no side pays for another's writeback) and collect garbage."""
    os.sync()
    gc.collect()


def best_of(function, repeat, setup=None, teardown=None):
    """Run ``function`` ``repeat`` times; ``setup``/``teardown`` are untimed.
    Returns (best seconds, all seconds, last result)."""
    times = []
    result = None
    for _ in range(repeat):
        if setup is not None:
            setup()
        settle()
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
        if teardown is not None:
            teardown()
    return min(times), times, result


def run_command(argv, cwd=None):
    completed = subprocess.run(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} failed ({completed.returncode}): "
            f"{completed.stderr.decode(errors='replace')[-2000:]}"
        )


def fsync_file(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path) -> None:
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# --------------------------------------------------------------------------
# reporting


def _zip_version():
    try:
        out = subprocess.run(["zip", "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError:
        return None
    for line in out.stdout.decode(errors="replace").splitlines():
        if line.startswith("This is Zip"):
            return line.replace("This is ", "").split(",")[0]
    return None


def environment() -> dict:
    def version(argv):
        try:
            out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            return out.stdout.decode(errors="replace").strip().splitlines()[0]
        except (OSError, IndexError):
            return None

    info = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "tar": version(["tar", "--version"]),
        "gzip": version(["gzip", "--version"]),
        "zstd": version(["zstd", "--version"]),
        "zip": _zip_version(),
    }
    for module in ("isal", "zstandard", "numpy"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    try:
        info["git_head"] = subprocess.run(
            ["git", "-C", str(SOURCE_REPO), "rev-parse", "--short", "HEAD"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        ).stdout.decode().strip()
        dirty = subprocess.run(
            ["git", "-C", str(SOURCE_REPO), "status", "--porcelain", "--", "dffml_archive"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        ).stdout.decode().strip()
        info["engine_modified"] = bool(dirty)
    except OSError:
        pass
    # What exactly was measured: a digest of the engine's sources.
    info["engine_sources_sha256"] = engine_digest()
    info["snapshot"] = str(REPO) if REPO != SOURCE_REPO else None
    return info


def engine_digest() -> str:
    """Digest of the engine sources as they are on disk now (REPO)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "dffml_archive").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def print_environment(info: dict) -> None:
    print(
        f"Python {info['python']}  cpus={info['cpus']}  load={info['loadavg_at_start'][0]:.2f}  "
        f"isal {info['isal']}  zstandard {info['zstandard']}  git {info.get('git_head')}  "
        f"engine sources {info['engine_sources_sha256']}"
        + ("  (engine has uncommitted changes)" if info.get("engine_modified") else "")
    )
    if info.get("snapshot"):
        print(f"(running from a snapshot of {SOURCE_REPO}: {info['snapshot']})")
    print(f"{info['tar']}; {info['gzip']}; {info['zstd']}; {info['zip']}")


def table(headers, rows, aligns=None) -> str:
    """A plain-text table; ``aligns`` is a string of 'l'/'r' per column."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    aligns = aligns or "l" + "r" * (len(headers) - 1)
    lines = []
    for index, row in enumerate(cells):
        parts = [
            cell.ljust(width) if align == "l" else cell.rjust(width)
            for cell, width, align in zip(row, widths, aligns)
        ]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def fmt_s(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.1:
        return f"{seconds * 1000:.1f}ms"
    return f"{seconds:.3f}"


def fmt_ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


class Targets:
    """Collects PASS/FAIL lines against the issue targets."""

    def __init__(self):
        self.items = []

    def check(self, name, value, op, limit, unit="x", note=""):
        if value is None:
            ok = None
        elif op == ">=":
            ok = value >= limit
        elif op == "<=":
            ok = value <= limit
        elif op == "<":
            ok = value < limit
        else:
            raise ValueError(op)
        self.items.append(
            dict(target=name, value=value, op=op, limit=limit, unit=unit, ok=ok, note=note)
        )

    def render(self) -> str:
        rows = []
        for item in self.items:
            status = "n/a" if item["ok"] is None else ("PASS" if item["ok"] else "FAIL")
            unit = item["unit"]
            value = "-" if item["value"] is None else f"{item['value']:.2f}{unit}"
            rows.append([status, item["target"], value, f"{item['op']} {item['limit']}{unit}", item["note"]])
        return table(["", "target", "measured", "wanted", "note"], rows, "llrll")

    def failures(self):
        return [item for item in self.items if item["ok"] is False]


def print_report(lines, targets: Targets, title: str = "Targets") -> str:
    """Print a benchmark's tables, then its targets; return the text (it also
    goes into the JSON)."""
    text = "\n".join([*lines, "", title, targets.render()])
    print()
    print(text)
    print()
    return text


def write_json(path, payload) -> None:
    if not path:
        return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def default(value):
        if isinstance(value, pathlib.PurePath):
            return str(value)
        return repr(value)

    path.write_text(json.dumps(payload, indent=1, default=default) + "\n")
    print(f"(JSON written to {path})")


def run_benchmark(prog: str, doc: str, run, argv=None, add_options=None) -> int:
    """The ``main`` of every benchmark: the common options (plus its own from
    ``add_options(parser)``), the environment header, ``run(args)``, the JSON."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    add_common_options(parser)
    if add_options is not None:
        add_options(parser)
    args = parser.parse_args(argv)
    env = environment()
    print_environment(env)
    payload = run(args)
    payload["environment"] = env
    write_json(args.json, payload)
    return 0
