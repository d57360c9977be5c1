"""The versioned model repository (``dffml_archive.repository``), through its
public async API and its CLI, against the issue's requirements:

    python -m benchmarks.bench_repository [--quick] [--repeat N] [--workdir DIR] [--json FILE]

1. deduplication: 10 versions of a model of six 50 MB random files (--quick:
   6 x 5 MB), each version rewriting one file: the store must stay within
   1.1 x (first version + 9 changed files), and a later save must take at
   most a third of the first;
2. save and load of that model (300 MB) against ``cp`` of its ``.tar`` +
   fsync of the copy: save into a fresh repository, ``materialize`` into an
   empty directory, ``download`` as a ``.tar``;
3. ``log``, ``find`` and ``list`` over 10,000 versions / repositories, in
   process and as whole CLI processes: each under one second.  The 10,000
   rows are inserted with SQLAlchemy Core into the repository's own tables
   (``_schema``): saving them through the API takes minutes (its rate is
   measured on a sample and printed); only the measured operations go
   through the public API and CLI.

Ratios: above 1 passes (cp's time / ours, bound / actual, 1 s / seconds).
"""
import asyncio
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks import _common as B  # noqa: E402

VERSIONS = 10
MANY = 10_000
FIND_EXPRESSION = 'entrypoint == "slr_archive" and Accuracy > 0.8 and "experience" in features'
#: name -> (weight files, MB per file, API-saved sample versions, sample repositories)
SCALES = {"full": (6, 50, 200, 100), "quick": (6, 5, 50, 25)}


def _sizes(args):
    return SCALES[B.size_name(args)]


# --------------------------------------------------------------------------
# data


def write_random(path: pathlib.Path, size: int) -> None:
    """``size`` random bytes, written beside ``path`` then renamed over it
    (so a hard-linked copy of the old file is left alone)."""
    temporary = path.with_name(path.name + ".new")
    with open(temporary, "wb") as out:
        left = size
        while left:
            chunk = min(left, 8 * B.MIB)
            out.write(os.urandom(chunk))
            left -= chunk
    os.replace(temporary, path)


def make_model(directory: pathlib.Path, files: int, mb: int) -> pathlib.Path:
    directory.mkdir(parents=True)
    for index in range(files):
        write_random(directory / f"weights{index}.bin", mb * B.MB)
    (directory / "config.json").write_text(json.dumps({"files": files, "mb": mb}))
    return directory


def link_copy(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """A copy made of hard links (files are only ever replaced, never rewritten)."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        os.link(path, target / path.name)
    return target


def store_bytes(root: pathlib.Path) -> int:
    from dffml_archive.repository._database import DATABASE_FILE

    blobs, _ = B.tree_bytes(root / "blobs")
    database = [root / f"{DATABASE_FILE}{suffix}" for suffix in ("", "-wal", "-shm")]
    return blobs + sum(os.path.getsize(path) for path in database if path.exists())


# --------------------------------------------------------------------------
# 1. deduplication


def dedup_sequence(loop, work: pathlib.Path, pristine: pathlib.Path, files: int, mb: int):
    """Save VERSIONS versions, each after rewriting one file: (save seconds, store bytes)."""
    from dffml_archive.repository import Repository

    model = link_copy(pristine, work / "model")
    store = Repository(work / "repository")
    loop.run_until_complete(store.open())
    try:
        repository = loop.run_until_complete(store.create("bench/dedup"))
        seconds = []
        for version in range(VERSIONS):
            if version:
                write_random(model / f"weights{(version - 1) % files}.bin", mb * B.MB)
            B.settle()
            started = time.perf_counter()
            saved = loop.run_until_complete(
                repository.new_image(model).save(comment=f"version {version + 1}")
            )
            seconds.append(time.perf_counter() - started)
            assert saved.version == version + 1, saved
        size = store_bytes(store.root)
    finally:
        loop.run_until_complete(store.close())
    B.remove(work)
    return seconds, size


def measure_dedup(loop, work, pristine, files, mb, repeat):
    runs = []
    for index in range(repeat):
        runs.append(dedup_sequence(loop, work / f"dedup{index}", pristine, files, mb))
    first = min(seconds[0] for seconds, _ in runs)
    later = min(statistics.median(seconds[1:]) for seconds, _ in runs)
    bound = 1.1 * (files * mb + (VERSIONS - 1) * mb) * B.MB
    size = max(size for _, size in runs)
    return {
        "files": files, "mb_per_file": mb, "versions": VERSIONS,
        "store_bytes": size, "bound_bytes": bound, "size_ratio": bound / size,
        "first_save": first, "later_save_median": later, "time_ratio": first / later,
        "runs": [{"seconds": seconds, "store_bytes": size} for seconds, size in runs],
    }


# --------------------------------------------------------------------------
# 2. save and load against cp


def measure_save_load(loop, work, pristine, repeat):
    from dffml_archive.repository import Repository

    archive = work / "model.tar"
    B.run_command([sys.executable, "-m", "dffml_archive", "pack", pristine, archive])
    copy = work / "copy.tar"
    cp = B.best_of(lambda: (B.run_command(["cp", archive, copy]), B.fsync_file(copy)),
                   repeat, lambda: B.remove(copy), lambda: B.remove(copy))
    state = {}

    def fresh_repository():
        if state.get("store") is not None:
            loop.run_until_complete(state["store"].close())
        B.remove(work / "repository")
        state["store"] = Repository(work / "repository")
        loop.run_until_complete(state["store"].open())
        state["repository"] = loop.run_until_complete(state["store"].create("bench/model"))

    def save():
        state["image"] = loop.run_until_complete(
            state["repository"].new_image(pristine).save(comment="benchmark")
        )

    try:
        saved = B.best_of(save, repeat, fresh_repository)
        materialized = work / "materialized"
        materialize = B.best_of(
            lambda: loop.run_until_complete(state["image"].materialize(materialized)),
            repeat, lambda: B.remove(materialized), lambda: B.remove(materialized))
        downloaded = work / "downloaded.tar"
        download = B.best_of(
            lambda: loop.run_until_complete(state["image"].download(downloaded)),
            repeat, lambda: B.remove(downloaded), lambda: B.remove(downloaded))
    finally:
        if state.get("store") is not None:
            loop.run_until_complete(state["store"].close())
    result = {"archive_bytes": archive.stat().st_size, "cp": cp[0], "cp_runs": cp[1]}
    for name, timing in (("save", saved), ("materialize", materialize), ("download", download)):
        result[name] = {"seconds": timing[0], "runs": timing[1], "ratio": cp[0] / timing[0]}
    B.remove(work)
    return result


# --------------------------------------------------------------------------
# 3. 10,000 versions: the fill


def sample_model(index: int, rng: random.Random) -> dict:
    """A model section like an slr/scikit archive's, varied so that the
    selector matches some versions and not others."""
    features = [{"name": "experience", "dtype": "int", "length": 1}] if index % 2 == 0 else []
    features.append({"name": f"feature{index % 7}", "dtype": "float", "length": 1})
    return {
        "entrypoint": "slr_archive" if index % 4 != 3 else "scikitlr_archive",
        "upstream": "slr" if index % 4 != 3 else "scikitlr",
        "config": {
            "features": features,
            "predict": {"name": "salary", "dtype": "float", "length": 1},
            "seed": index,
            "learning_rate": round(rng.uniform(0.001, 0.1), 6),
        },
        "versions": {"dffml": "0.4.0"},
    }


def api_sample(loop, store, names, tiny: pathlib.Path, rng, first_index: int):
    """Save one image to each repository of ``names`` (created first)
    through the API; returns (seconds per save, matches of the selector)."""
    matches = 0
    started = time.perf_counter()
    for offset, name in enumerate(names):
        index = first_index + offset
        repository = loop.run_until_complete(store.create(name, exist_ok=True))
        image = repository.new_image(tiny, model=sample_model(index, rng))
        accuracy = round(rng.random(), 4)
        image["Accuracy"] = accuracy
        loop.run_until_complete(image.save(comment=f"sample {index}"))
        matches += _matches(index, accuracy)
    return (time.perf_counter() - started) / len(names), matches


def _matches(index: int, accuracy: float) -> bool:
    return index % 4 != 3 and index % 2 == 0 and accuracy > 0.8


def core_fill(loop, store, layout, template, rng, first_index: int) -> int:
    """Insert ``count`` versions per (name, count) of ``layout`` into the
    store's tables with SQLAlchemy Core, as saves would (repository, image,
    image_blobs, version, event; every 50th new version row tagged), in one
    transaction of a few bulk inserts; returns the selector's matches.
    (bench_scaleout calls it once per chunk of a larger layout.)"""
    from sqlalchemy import func, insert, select, update

    from dffml_archive.repository import _schema as S

    names = [name for name, _ in layout]

    async def fill():
        async with store.transaction() as db:
            # (The store holds nothing else: no IN list of 10,000 names.)
            known = {row.name for row in await db.execute(select(S.repositories.c.name))}
            now = time.time()
            new = [dict(name=name, namespace=name.split("/", 1)[0] if "/" in name else "",
                        created=now, next_version=1) for name in names if name not in known]
            if new:
                await db.execute(insert(S.repositories), new)
            rows = {row.name: row for row in await db.execute(select(S.repositories))}
            before = (await db.execute(select(func.coalesce(func.max(S.versions.c.id), 0))
                                       )).scalar()
            tables, matches = _fill_rows(layout, rows, template, rng, first_index)
            for table in (S.images, S.image_blobs, S.versions, S.events):
                await db.execute(insert(table), tables[table.name])
            for name, count in layout:
                await db.execute(update(S.repositories)
                                 .where(S.repositories.c.id == rows[name].id)
                                 .values(next_version=rows[name].next_version + count))
            tagged = (await db.execute(
                select(S.versions.c.id, S.versions.c.repository_id, S.versions.c.version)
                .where((S.versions.c.id > before) & (S.versions.c.id % 50 == 0)))).all()
            if tagged:
                await db.execute(insert(S.tags), [
                    dict(repository_id=repository_id, tag=f"release-{version}", version_id=vid)
                    for vid, repository_id, version in tagged])
        return matches

    return loop.run_until_complete(fill())


def _fill_rows(layout, rows, template, rng, index):
    """The rows of every table for ``layout``, and the selector's matches."""
    import hashlib

    from dffml_archive._manifest import Manifest
    from dffml_archive.repository._store import current_host, current_user

    blobs = sorted({m.sha256 for m in template.members if m.type == "file"})
    user, host, now = current_user(), current_host(), time.time()
    tables = {"images": [], "image_blobs": [], "versions": [], "events": []}
    matches = 0
    for name, count in layout:
        row = rows[name]
        for number in range(row.next_version, row.next_version + count):
            model = sample_model(index, rng)
            manifest = Manifest(template.members, model=model,
                                created_by=template.created_by).to_bytes()
            digest = hashlib.sha256(manifest).hexdigest()
            accuracy = round(rng.random(), 4)
            matches += _matches(index, accuracy)
            tables["images"].append(dict(digest=digest, manifest=manifest, created=now,
                                         size=template.total_size, model=model))
            tables["image_blobs"] += [dict(image=digest, blob=blob) for blob in blobs]
            tables["versions"].append(dict(
                repository_id=row.id, version=number, image=digest, comment=f"fill {index}",
                created=now + index * 1e-3, user=user, host=host,
                entrypoint=model["entrypoint"], metadata={"Accuracy": accuracy},
                size=template.total_size, new_bytes=0))
            tables["events"].append(dict(repository_id=row.id, time=now, user=user,
                                         action="save", version=number))
            index += 1
    return tables, matches


def build_many(loop, work: pathlib.Path, sample_versions: int, sample_repositories: int):
    """Two stores: ``one`` (1 repository x 10,000 versions) for log and
    find, ``many`` (10,000 repositories x 1 version) for list and find."""
    from dffml_archive.repository import Repository

    tiny = work / "tiny"
    tiny.mkdir(parents=True)
    (tiny / "model.bin").write_bytes(os.urandom(100))
    info = {}
    for kind in ("one", "many"):
        rng = random.Random(20261125)
        store = Repository(work / kind)
        loop.run_until_complete(store.open())
        try:
            if kind == "one":
                sample = [("bench/many-versions", sample_versions)]
                names = ["bench/many-versions"] * sample_versions
                layout = [("bench/many-versions", MANY - sample_versions)]
            else:
                names = [f"bench/r{i:05d}" for i in range(MANY)]
                sample = [(name, 1) for name in names[:sample_repositories]]
                names = names[:sample_repositories]
                layout = [(f"bench/r{i:05d}", 1) for i in range(sample_repositories, MANY)]
            per_save, matches = api_sample(loop, store, names, tiny, rng, 0)
            template = loop.run_until_complete(
                store.get_model_image(f"{sample[0][0]}:1")).manifest
            started = time.perf_counter()
            matches += core_fill(loop, store, layout, template, rng, len(names))
            info[kind] = {
                "root": store.root, "api_saves": len(names), "api_seconds_per_save": per_save,
                "api_estimate_10000": per_save * MANY,
                "core_rows": MANY - len(names),
                "core_seconds": time.perf_counter() - started, "find_matches": matches,
            }
        finally:
            loop.run_until_complete(store.close())
    return info


# --------------------------------------------------------------------------
# 3. 10,000 versions: the measurements


def measure_queries(loop, stores: dict, repeat: int) -> dict:
    from dffml_archive.repository import Repository, find

    repeat = max(repeat, 5)
    results = {}
    opened = {kind: Repository(info["root"]) for kind, info in stores.items()}
    try:
        for store in opened.values():
            loop.run_until_complete(store.open())
        one = loop.run_until_complete(opened["one"].get("bench/many-versions"))
        checks = {
            "log": (lambda: one.log(), MANY),
            "find (1 x 10,000)": (lambda: find(opened["one"], FIND_EXPRESSION),
                                  stores["one"]["find_matches"]),
            "find (10,000 x 1)": (lambda: find(opened["many"], FIND_EXPRESSION),
                                  stores["many"]["find_matches"]),
            "list": (lambda: opened["many"].list(), MANY),
        }
        for name, (call, expected) in checks.items():
            best, runs, found = B.best_of(lambda: loop.run_until_complete(call()), repeat)
            if len(found) != expected:
                raise RuntimeError(f"{name}: {len(found)} results, expected {expected}")
            results[name] = {"seconds": best, "runs": runs, "results": len(found)}
    finally:
        for store in opened.values():
            loop.run_until_complete(store.close())
    return results


def measure_cli(stores: dict, repeat: int) -> dict:
    repeat = max(repeat, 5)

    def models(*arguments, root):
        return [sys.executable, "-m", "dffml_archive", "models", *arguments,
                "--json", "--repository", str(root)]

    commands = {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "log": (models("log", "bench/many-versions", root=stores["one"]["root"]), MANY),
        "find (1 x 10,000)": (models("find", FIND_EXPRESSION, root=stores["one"]["root"]),
                              stores["one"]["find_matches"]),
        "find (10,000 x 1)": (models("find", FIND_EXPRESSION, root=stores["many"]["root"]),
                              stores["many"]["find_matches"]),
        "list": (models("list", root=stores["many"]["root"]), MANY),
    }
    results = {}
    for name, (argv, expected) in commands.items():
        def command():
            completed = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL)
            if completed.returncode != 0:
                raise RuntimeError(f"{name}: {completed.stderr.decode(errors='replace')[-2000:]}")
            return completed.stdout

        best, runs, output = B.best_of(command, repeat)
        if expected is not None and len(json.loads(output)) != expected:
            raise RuntimeError(f"CLI {name}: {len(json.loads(output))} results, expected {expected}")
        results[name] = {"seconds": best, "runs": runs, "output_bytes": len(output)}
    return results


# --------------------------------------------------------------------------
# the report


def run(args, datasets=None, root=None) -> dict:
    files, mb, sample_versions, sample_repositories = _sizes(args)
    print(f"== bench_repository ({files} x {mb} MB model, {MANY:,} versions; best of "
          f"{args.repeat})")
    B.byte_compile_our_packages()
    load_start = os.getloadavg()
    loop = asyncio.new_event_loop()
    try:
        with B.workdir(args, "repository") as work:
            started = time.perf_counter()
            pristine = make_model(work / "model", files, mb)
            os.sync()
            print(f"(model generated in {time.perf_counter() - started:.1f} s)")
            dedup = measure_dedup(loop, work / "dedup", pristine, files, mb, args.repeat)
            print("(1. deduplication done)")
            save_load = measure_save_load(loop, work / "save-load", pristine, args.repeat)
            print("(2. save and load done)")
            stores = build_many(loop, work / "many", sample_versions, sample_repositories)
            print("(3. 10,000 versions filled)")
            queries = measure_queries(loop, stores, args.repeat)
            cli = measure_cli(stores, args.repeat)
    finally:
        loop.close()
    return report(args, files, mb, load_start, dedup, save_load, stores, queries, cli)


def report(args, files, mb, load_start, dedup, save_load, stores, queries, cli) -> dict:
    targets = B.Targets()
    targets.check(f"store of {VERSIONS} versions within 1.1 x (first + 9 changed files)",
                  dedup["size_ratio"], ">=", 1, note="bound / actual")
    targets.check("later save <= 1/3 of the first save", dedup["time_ratio"], ">=", 3,
                  note="first / median later")
    for name in ("log", "find (1 x 10,000)", "find (10,000 x 1)", "list"):
        targets.check(f"API {name} over {MANY:,} < 1 s", 1.0 / queries[name]["seconds"],
                      ">=", 1, note=f"{queries[name]['seconds']:.3f} s")
        targets.check(f"CLI {name} over {MANY:,} < 1 s", 1.0 / cli[name]["seconds"],
                      ">=", 1, note=f"{cli[name]['seconds']:.3f} s (whole process)")
    model_mb = files * mb
    dedup_rows = [
        ["store size (blobs + database)", f"{dedup['store_bytes'] / B.MB:.1f} MB",
         f"{dedup['bound_bytes'] / B.MB:.1f} MB", B.fmt_ratio(dedup["size_ratio"])],
        ["first save", B.fmt_s(dedup["first_save"]), "", ""],
        ["later save (median of 9)", B.fmt_s(dedup["later_save_median"]),
         f"<= {B.fmt_s(dedup['first_save'] / 3)}", B.fmt_ratio(dedup["time_ratio"])],
    ]
    save_rows = [["cp model.tar + fsync", B.fmt_s(save_load["cp"]), "1.00x"]] + [
        [label, B.fmt_s(save_load[key]["seconds"]), B.fmt_ratio(save_load[key]["ratio"])]
        for key, label in (("save", "save (directory, fresh repository)"),
                           ("materialize", "materialize (empty directory)"),
                           ("download", "download (.tar)"))
    ]
    fill_rows = [
        [f"{kind}: " + ("1 repository x 10,000 versions" if kind == "one"
                        else "10,000 repositories x 1 version"),
         f"{info['api_saves']} in {info['api_seconds_per_save'] * 1000:.1f} ms each",
         f"~{info['api_estimate_10000']:.0f} s", f"{info['core_rows']:,} rows in "
         f"{info['core_seconds']:.1f} s"]
        for kind, info in stores.items()
    ]
    query_rows = [["python -c pass", "", B.fmt_s(cli["python -c pass"]["seconds"]), ""]] + [
        [name, B.fmt_s(queries[name]["seconds"]), B.fmt_s(cli[name]["seconds"]),
         B.fmt_ratio(1.0 / max(queries[name]["seconds"], cli[name]["seconds"]))]
        for name in ("log", "find (1 x 10,000)", "find (10,000 x 1)", "list")
    ]
    text = B.print_report([
        f"bench_repository: load average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs",
        f"1. deduplication: {VERSIONS} versions of {files} x {mb} MB random files "
        f"({model_mb} MB), each changing one file",
        B.table(["", "measured", "bound", "ratio"], dedup_rows, "lrrr"),
        "",
        f"2. save and load of the {model_mb} MB model ({save_load['archive_bytes'] / B.MB:.1f} MB "
        f".tar); ratio = cp time / ours (> 1: faster than cp)",
        B.table(["", "seconds", "ratio"], save_rows, "lrr"),
        "",
        "3. fill: a sample saved through the API (its rate, and 10,000 at that rate), "
        "the rest inserted with SQLAlchemy Core",
        B.table(["store", "API saves", "10,000 via API", "Core insert"], fill_rows, "llrr"),
        f"   find: {FIND_EXPRESSION}",
        B.table(["over 10,000", "API s", "CLI s (process)", "1 s / worst"], query_rows, "lrrr"),
    ], targets)
    return {"benchmark": "repository", "size": B.size_name(args), "repeat": args.repeat,
            "dedup": dedup, "save_load": save_load,
            "fill": {kind: {k: v for k, v in info.items() if k != "root"}
                     for kind, info in stores.items()},
            "api": queries, "cli": cli, "targets": targets.items, "table": text}


def main(argv=None):
    return B.run_benchmark("python -m benchmarks.bench_repository", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
