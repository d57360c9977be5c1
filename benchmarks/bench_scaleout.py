"""The scale-out repository (PostgreSQL + an S3-compatible store, here
SeaweedFS), on servers this benchmark starts itself (``scripts/_services.py``,
a private state directory, always stopped at the end):

    python -m benchmarks.bench_scaleout [--quick] [--repeat N] [--workdir DIR] [--json FILE]

1. push: a model of six 50 MB random files (--quick: 6 x 5 MB) saved into a
   fresh repository (a new database and blob prefix per run, no hash cache)
   against the plain S3 upload of the same model's ``.tar`` to the same
   server: one botocore ``put_object``, and boto3's ``upload_file``
   (multipart, default transfer settings) when boto3 is importable.
   Ratio: their seconds / ours (> 1: faster);
2. re-push: the unchanged directory saved again (a new version): it must
   store 0 new bytes; its time against the first push;
3. ``find``, ``log`` and ``list`` over 100,000 versions in PostgreSQL:
   ``one`` (1 repository x 100,000 versions) and ``many`` (100 repositories
   x 1,000 versions), each in a database of its own.  A sample is saved
   through the API (its rate is printed); the rest is inserted with
   SQLAlchemy Core into the repository's own tables (``_schema``).  Measured
   through the API (best of N) and as whole CLI processes
   (``python -m dffml_archive models find EXPR --json`` with
   ``DFFML_ARCHIVE_REPOSITORY_DB``/``_BLOBS``).  Target: find < 1 s.
"""
import asyncio
import json
import os
import pathlib
import random
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a file: make "benchmarks" importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks import _common as B  # noqa: E402
from benchmarks.bench_repository import (  # noqa: E402
    FIND_EXPRESSION, api_sample, core_fill, make_model,
)

MANY = 100_000
#: name -> (weight files, MB per file, API-saved sample versions per store)
SCALES = {"full": (6, 50, 20), "quick": (6, 5, 10)}
#: layout name -> (repositories, versions each)
LAYOUTS = {"one": (1, MANY), "many": (100, MANY // 100)}
FILL_CHUNK = 10_000
SERVICES = B.REPO / "scripts" / "_services.py"


# --------------------------------------------------------------------------
# the servers


class Services:
    """PostgreSQL and SeaweedFS started for this run (stopped by ``stop``)."""

    def __init__(self, state: pathlib.Path):
        self.env = dict(os.environ, DFFML_ARCHIVE_SERVICES_DIR=str(state))
        self.exports = {}
        self._saved_env = {}
        self.seconds = None

    def start(self) -> None:
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, str(SERVICES), "start"], env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"{SERVICES} start failed: {completed.stderr[-2000:]}")
        for line in completed.stdout.splitlines():
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                self.exports[name] = value
        self.seconds = time.perf_counter() - started
        print(f"(servers started in {self.seconds:.1f} s)")
        # The S3 blob store takes its endpoint and credentials from the
        # environment, as in a deployment.
        for name, value in self.exports.items():
            if name.startswith("AWS_"):
                self._saved_env.setdefault(name, os.environ.get(name))
                os.environ[name] = value

    def stop(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        subprocess.run([sys.executable, str(SERVICES), "stop"], env=self.env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    @property
    def bucket(self) -> str:
        return self.exports["DFFML_ARCHIVE_REPOSITORY_BLOBS"][len("s3://"):].split("/", 1)[0]

    def database_url(self, database: str) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.exports["DFFML_ARCHIVE_REPOSITORY_DB"]).set(database=database)
        return url.render_as_string(hide_password=False)

    def create_database(self, loop, database: str) -> str:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        async def create():
            engine = create_async_engine(self.database_url("postgres"),
                                         isolation_level="AUTOCOMMIT")
            try:
                async with engine.connect() as connection:
                    await connection.execute(text(f'CREATE DATABASE "{database}"'))
            finally:
                await engine.dispose()

        loop.run_until_complete(create())
        return self.database_url(database)

    def client(self):
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.exports["AWS_ENDPOINT_URL"],
            region_name=self.exports["AWS_REGION"],
            aws_access_key_id=self.exports["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.exports["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}))


# --------------------------------------------------------------------------
# 1. and 2. push and re-push


def measure_baselines(services: Services, archive: pathlib.Path, repeat: int) -> dict:
    """Plain uploads of the .tar: one put_object; boto3's upload_file."""
    client = services.client()
    bucket, key = services.bucket, "baseline/model.tar"

    def put_object():
        with open(archive, "rb") as body:
            client.put_object(Bucket=bucket, Key=key, Body=body)

    def delete():
        client.delete_object(Bucket=bucket, Key=key)

    result = {}
    best, runs, _ = B.best_of(put_object, repeat, teardown=delete)
    result["put_object"] = {"seconds": best, "runs": runs}
    try:
        import boto3
        from boto3.s3.transfer import TransferConfig
    except ImportError:
        return result
    resource = boto3.session.Session().client(
        "s3", endpoint_url=services.exports["AWS_ENDPOINT_URL"],
        region_name=services.exports["AWS_REGION"],
        aws_access_key_id=services.exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=services.exports["AWS_SECRET_ACCESS_KEY"],
        config=client.meta.config)
    config = TransferConfig()
    best, runs, _ = B.best_of(
        lambda: resource.upload_file(str(archive), bucket, key, Config=config), repeat,
        teardown=delete)
    result["upload_file"] = {
        "seconds": best, "runs": runs,
        "multipart_threshold": config.multipart_threshold,
        "multipart_chunksize": config.multipart_chunksize,
        "max_concurrency": config.max_concurrency,
    }
    return result


def measure_push(loop, services: Services, work: pathlib.Path, model: pathlib.Path, repeat):
    """Per run: a fresh database and blob prefix, the hash cache removed
    (untimed); time the first save, then a re-save of the same directory
    (a new version).  Returns every first push and every re-push."""
    from dffml_archive._cache import hash_cache_path
    from dffml_archive.repository import Repository

    first, again = [], []
    for index in range(1, repeat + 1):
        url = services.create_database(loop, f"push_{index}")
        store = Repository(work / f"push-{index}", database=url,
                           blobs=f"s3://{services.bucket}/push-{index}")
        B.remove(hash_cache_path(model))
        loop.run_until_complete(store.open())
        try:
            repository = loop.run_until_complete(store.create("bench/push"))
            B.settle()
            started = time.perf_counter()
            saved = loop.run_until_complete(repository.new_image(model).save(comment="first"))
            first.append({"seconds": time.perf_counter() - started,
                          "new_bytes": saved.new_bytes, "size": saved.size})
            B.settle()
            started = time.perf_counter()
            saved = loop.run_until_complete(repository.new_image(model).save(comment="again"))
            again.append({"seconds": time.perf_counter() - started,
                          "new_bytes": saved.new_bytes, "version": saved.version})
        finally:
            loop.run_until_complete(store.close())
    return first, again


def measure_pushes(loop, services, work: pathlib.Path, files: int, mb: int, repeat: int):
    model = make_model(work / "model", files, mb)
    archive = work / "model.tar"
    B.run_command([sys.executable, "-m", "dffml_archive", "pack", model, archive])
    os.sync()
    baselines = measure_baselines(services, archive, repeat)
    first, again = measure_push(loop, services, work, model, repeat)
    best = min(run["seconds"] for run in first)
    for baseline in baselines.values():
        baseline["ratio"] = baseline["seconds"] / best
    repush = min(run["seconds"] for run in again)
    return {
        "files": files, "mb_per_file": mb, "archive_bytes": archive.stat().st_size,
        "baselines": baselines, "push": {"seconds": best, "runs": first},
        "repush": {"seconds": repush, "runs": again,
                   "new_bytes": max(run["new_bytes"] for run in again),
                   "ratio": best / repush},
    }


# --------------------------------------------------------------------------
# 3. 100,000 versions


def pg_fill(loop, store, layout, template, rng, first_index: int) -> int:
    """``layout`` (name, count) inserted by bench_repository's core_fill in
    chunks of FILL_CHUNK versions (one transaction each), then the planner's
    statistics refreshed.  Returns the selector's matches."""
    matches, index = 0, first_index
    for part in _chunks(layout):
        matches += core_fill(loop, store, part, template, rng, index)
        index += sum(count for _, count in part)
    loop.run_until_complete(_analyze(store))
    return matches


def _chunks(layout):
    """``layout`` cut into pieces of at most FILL_CHUNK versions."""
    part, size = [], 0
    for name, count in layout:
        while count:
            take = min(count, FILL_CHUNK - size)
            part.append((name, take))
            size += take
            count -= take
            if size == FILL_CHUNK:
                yield part
                part, size = [], 0
    if part:
        yield part


async def _analyze(store) -> None:
    """Fresh planner statistics, as autovacuum would have after a while."""
    from sqlalchemy import text

    async with store.engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("ANALYZE"))


def build_stores(loop, services, work: pathlib.Path, sample: int) -> dict:
    from dffml_archive.repository import Repository

    tiny = work / "tiny"
    tiny.mkdir(parents=True)
    (tiny / "model.bin").write_bytes(os.urandom(100))
    stores = {}
    for kind, (repositories, versions) in LAYOUTS.items():
        rng = random.Random(20261125)
        url = services.create_database(loop, f"find_{kind}")
        blobs = f"s3://{services.bucket}/find-{kind}"
        names = [f"bench/{kind}-{i:03d}" for i in range(repositories)]
        store = Repository(work / kind, database=url, blobs=blobs)
        loop.run_until_complete(store.open())
        try:
            sampled = [names[i % repositories] for i in range(sample)]
            per_save, matches = api_sample(loop, store, sampled, tiny, rng, 0)
            template = loop.run_until_complete(store.get_model_image(f"{names[0]}:1")).manifest
            done = {name: sampled.count(name) for name in names}
            layout = [(name, versions - done[name]) for name in names if versions > done[name]]
            started = time.perf_counter()
            matches += pg_fill(loop, store, layout, template, rng, sample)
            stores[kind] = {
                "root": store.root, "database": url, "blobs": blobs, "names": names,
                "api_saves": sample, "api_seconds_per_save": per_save,
                "core_rows": MANY - sample, "core_seconds": time.perf_counter() - started,
                "find_matches": matches,
            }
        finally:
            loop.run_until_complete(store.close())
    return stores


def measure_queries(loop, stores: dict, repeat: int) -> dict:
    from dffml_archive.repository import Repository, find

    repeat = max(repeat, 5)
    opened = {kind: Repository(info["root"], database=info["database"], blobs=info["blobs"])
              for kind, info in stores.items()}
    results = {}
    try:
        for store in opened.values():
            loop.run_until_complete(store.open())
        one = loop.run_until_complete(opened["one"].get(stores["one"]["names"][0]))
        checks = {
            "find (1 x 100,000)": (lambda: find(opened["one"], FIND_EXPRESSION),
                                   stores["one"]["find_matches"]),
            "find (100 x 1,000)": (lambda: find(opened["many"], FIND_EXPRESSION),
                                   stores["many"]["find_matches"]),
            "log (1 x 100,000)": (lambda: one.log(), MANY),
            "list (100 x 1,000)": (lambda: opened["many"].list(), LAYOUTS["many"][0]),
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


def measure_cli(services, stores: dict, repeat: int) -> dict:
    repeat = max(repeat, 5)

    def models(kind, *arguments):
        info = stores[kind]
        env = {**os.environ, **services.exports, "DFFML_ARCHIVE_REPOSITORY": str(info["root"]),
               "DFFML_ARCHIVE_REPOSITORY_DB": info["database"],
               "DFFML_ARCHIVE_REPOSITORY_BLOBS": info["blobs"]}
        return [sys.executable, "-m", "dffml_archive", "models", *arguments, "--json"], env

    commands = {
        "python -c pass": (([sys.executable, "-c", "pass"], None), None),
        "find (1 x 100,000)": (models("one", "find", FIND_EXPRESSION),
                               stores["one"]["find_matches"]),
        "find (100 x 1,000)": (models("many", "find", FIND_EXPRESSION),
                               stores["many"]["find_matches"]),
        "log (1 x 100,000)": (models("one", "log", stores["one"]["names"][0]), MANY),
        "list (100 x 1,000)": (models("many", "list"), LAYOUTS["many"][0]),
    }
    results = {}
    for name, ((argv, env), expected) in commands.items():
        def command():
            completed = subprocess.run(argv, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            if completed.returncode != 0:
                raise RuntimeError(f"{name}: {completed.stderr.decode(errors='replace')[-2000:]}")
            return completed.stdout

        best, runs, output = B.best_of(command, repeat)
        if expected is not None and len(json.loads(output)) != expected:
            raise RuntimeError(f"CLI {name}: {len(json.loads(output))} results, "
                               f"expected {expected}")
        results[name] = {"seconds": best, "runs": runs, "output_bytes": len(output)}
    return results


# --------------------------------------------------------------------------
# the report


def run(args, datasets=None, root=None) -> dict:
    files, mb, sample = SCALES[B.size_name(args)]
    print(f"== bench_scaleout ({files} x {mb} MB model, {MANY:,} versions in PostgreSQL; "
          f"best of {args.repeat})")
    B.byte_compile_our_packages()
    load_start = os.getloadavg()
    loop = asyncio.new_event_loop()
    try:
        with B.workdir(args, "scaleout") as work:
            services = Services(work / "services")
            try:
                services.start()
                pushes = measure_pushes(loop, services, work / "push", files, mb, args.repeat)
                print("(1. and 2. push and re-push done)")
                stores = build_stores(loop, services, work / "many", sample)
                print(f"(3. {MANY:,} versions filled, twice)")
                queries = measure_queries(loop, stores, args.repeat)
                cli = measure_cli(services, stores, args.repeat)
            finally:
                services.stop()
    finally:
        loop.close()
    return report(args, load_start, services, pushes, stores, queries, cli)


def report(args, load_start, services, pushes, stores, queries, cli) -> dict:
    targets = B.Targets()
    push, repush, baselines = pushes["push"], pushes["repush"], pushes["baselines"]
    targets.check("push vs one put_object of the .tar", baselines["put_object"]["ratio"],
                  ">=", 1, note="put_object s / push s")
    targets.check("re-push of the unchanged image stores 0 bytes", repush["new_bytes"],
                  "<=", 0, unit=" B", note="new_bytes")
    finds = [name for name in queries if name.startswith("find")]
    for name in finds:
        for side, results in (("API", queries), ("CLI", cli)):
            seconds = results[name]["seconds"]
            targets.check(f"{side} {name} in PostgreSQL < 1 s", 1.0 / seconds, ">=", 1,
                          note=f"{seconds:.3f} s" + (" (whole process)" if side == "CLI" else ""))
    model_mb = pushes["files"] * pushes["mb_per_file"]
    push_rows = [[f"put_object of the .tar ({pushes['archive_bytes'] / B.MB:.1f} MB)",
                  B.fmt_s(baselines["put_object"]["seconds"]), "1.00x",
                  B.fmt_ratio(baselines["put_object"]["ratio"])]]
    if "upload_file" in baselines:
        push_rows.append(["boto3 upload_file (multipart, defaults)",
                          B.fmt_s(baselines["upload_file"]["seconds"]), "",
                          B.fmt_ratio(baselines["upload_file"]["ratio"])])
    push_rows += [
        ["push (fresh repository, no hash cache)", B.fmt_s(push["seconds"]),
         B.fmt_ratio(baselines["put_object"]["seconds"] / push["seconds"]), "1.00x"],
        [f"re-push unchanged (new_bytes {repush['new_bytes']})", B.fmt_s(repush["seconds"]),
         B.fmt_ratio(baselines["put_object"]["seconds"] / repush["seconds"]),
         f"{repush['ratio']:.1f}x faster"],
    ]
    fill_rows = [
        [f"{kind}: {LAYOUTS[kind][0]} x {LAYOUTS[kind][1]:,}",
         f"{info['api_saves']} in {info['api_seconds_per_save'] * 1000:.0f} ms each",
         f"~{info['api_seconds_per_save'] * MANY / 60:.0f} min",
         f"{info['core_rows']:,} rows in {info['core_seconds']:.1f} s", info["find_matches"]]
        for kind, info in stores.items()
    ]
    query_rows = [["python -c pass", "", B.fmt_s(cli["python -c pass"]["seconds"]), ""]] + [
        [name, B.fmt_s(queries[name]["seconds"]), B.fmt_s(cli[name]["seconds"]),
         B.fmt_ratio(1.0 / max(queries[name]["seconds"], cli[name]["seconds"]))]
        for name in queries
    ]
    text = B.print_report([
        f"bench_scaleout: load average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs; PostgreSQL + SeaweedFS on loopback "
        f"(started in {services.seconds:.1f} s)",
        f"1./2. push of the {model_mb} MB model ({pushes['files']} x {pushes['mb_per_file']} MB "
        "random files); ratio = their seconds / ours (> 1: faster)",
        B.table(["", "seconds", "put_object / it", "it / push"], push_rows, "lrrr"),
        "",
        f"3. fill: a sample saved through the API (its rate, and {MANY:,} at that rate), "
        "the rest inserted with SQLAlchemy Core",
        B.table(["database", "API saves", f"{MANY:,} via API", "Core insert", "find matches"],
                fill_rows, "llrrr"),
        f"   find: {FIND_EXPRESSION}",
        B.table([f"over {MANY:,}", "API s", "CLI s (process)", "1 s / worst"], query_rows,
                "lrrr"),
    ], targets)
    return {"benchmark": "scaleout", "size": B.size_name(args), "repeat": args.repeat,
            "push": pushes,
            "fill": {kind: {k: v for k, v in info.items() if k not in ("root", "names")}
                     for kind, info in stores.items()},
            "api": queries, "cli": cli, "targets": targets.items, "table": text}


def main(argv=None):
    return B.run_benchmark("python -m benchmarks.bench_scaleout", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
