"""``python -m dffml_archive hub ...`` and ``dffml service hub ...``:
download | stage | list | verify | prune | remove.

``download`` prints the cached file's absolute path as its last line on
stdout.  Failures are one ``error:`` line (see :mod:`dffml_archive.cli`)."""
import argparse
import json

COMMANDS_HELP = "download|stage|list|verify|prune|remove"


def add_hub_parser(commands) -> None:
    hub = commands.add_parser(
        "hub", help="download models from hubs into one verified cache; stage them as archives",
        description="The model hub cache: --cache, else $MODELHUB_PATH, else ~/.modelhub. "
        "SOURCE: an http(s):// URL (with --sha256), hf:ORG/NAME/PATH[@REVISION] "
        "($HF_ENDPOINT), torch:URL, torchvision:MODEL, tfhub:URL, spacy:URL. "
        "MODELHUB_OFFLINE=1 (or --offline) makes no network call at all.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", metavar="DIR", help="cache root (default: $MODELHUB_PATH)")
    common.add_argument("--json", action="store_true", help="print JSON")
    fetching = argparse.ArgumentParser(add_help=False)
    fetching.add_argument("source", metavar="SOURCE")
    fetching.add_argument("--sha256", metavar="HEX", help="the file's expected sha256")
    fetching.add_argument("--offline", action="store_true", help="use the caches only")
    fetching.add_argument("--timeout", type=float, metavar="SECONDS",
                          help="connect/read timeout of each request (default 30)")
    sub = hub.add_subparsers(dest="hub_command", metavar="COMMAND")
    sub.required = True
    download = sub.add_parser("download", parents=[common, fetching],
                              help="download SOURCE into the cache; print its path")
    download.add_argument("--uncompressed", action="store_true",
                          help="unpack an archive file (safely) and print its directory")
    stage = sub.add_parser("stage", parents=[common, fetching],
                           help="download SOURCE and write it as a DFFML model archive")
    stage.add_argument("archive", metavar="ARCHIVE")
    stage.add_argument("--model", metavar="NAME",
                       help="for torch sources: the pretrained network (resnet18, ...)")
    stage.add_argument("--option", action="extend", nargs="+", default=[],
                       metavar="KEY=JSON", help="model options, e.g. imageSize=32 "
                       "'classifications=[\"a\",\"b\"]' (features and predict as "
                       "NAME:TYPE:LENGTH)")
    stage.add_argument("--push", metavar="NAME",
                       help="also push the archive into the model repository as NAME's "
                       "next version")
    sub.add_parser("list", parents=[common], help="what the cache holds (its lock file)")
    sub.add_parser("verify", parents=[common],
                   help="re-hash the cache against its lock file (no network)")
    prune = sub.add_parser("prune", parents=[common],
                           help="remove partial files and what the lock file does not name")
    prune.add_argument("--stale", type=float, default=0, metavar="SECONDS",
                       help="spare partial files younger than this (default: none spared, "
                       "except those being written)")
    remove = sub.add_parser("remove", parents=[common], help="delete a model from the cache")
    remove.add_argument("what", metavar="SOURCE|PATH")


def run_hub(args, job) -> str:
    from ..cli import run_async

    return run_async(_run(args, job.progress))


async def _run(args, progress) -> str:
    from ._cache import HubCache

    cache = HubCache(args.cache)
    return await _HANDLERS[args.hub_command](cache, args, progress)


def _hub(cache, args, progress):
    from ._hubs import hub_for

    options = dict(progress=progress)
    if args.offline:
        options["offline"] = True
    if args.timeout:
        options["timeout"] = args.timeout
    return hub_for(args.source, cache, **options)


def _dumps(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


async def _download(cache, args, progress):
    from ._hubs import StorageType

    storage = StorageType.UNCOMPRESSED if args.uncompressed else StorageType.COMPRESSED
    path = await _hub(cache, args, progress).download_model(
        args.source, sha256=args.sha256, storage=storage)
    path = str(path.resolve())
    return _dumps({"path": path}) + "\n" + path if args.json else path


async def _stage(cache, args, progress):
    options = dict(_option(text) for text in args.option)
    if args.model:
        options["model"] = args.model
    path = await _hub(cache, args, progress).stage_model(
        args.source, args.archive, sha256=args.sha256, repository=args.push, **options)
    return f"staged {args.source} as {path}" + (f" (pushed to {args.push})" if args.push else "")


def _option(text: str):
    from ..errors import HubError

    key, equals, value = text.partition("=")
    if not equals or not key:
        raise HubError(text, "an option is KEY=VALUE", hint="e.g. --option imageSize=32")
    if key in ("features", "predict"):
        return key, _features(key, value)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _features(key, value):
    from dffml import Feature, Features

    def one(text):
        name, dtype, length = (text.split(":") + ["str", "1"])[:3]
        return Feature(name, {"int": int, "float": float, "str": str}.get(dtype, str), int(length))

    if key == "predict":
        return one(value)
    return Features(*[one(part) for part in value.split(",")])


async def _list(cache, args, progress):
    entries = [entry.to_json() for entry in cache.list()]
    if args.json:
        return _dumps(entries)
    if not entries:
        return f"the hub cache {cache.root} is empty"
    from ..cli import _human

    return "\n".join(f"{e['path']}  {_human(e['size'])}  sha256:{e['sha256'][:12]}  {e['source']}"
                     + (f"@{e['commit'][:12]}" if e.get("commit") else "")
                     + (f"  (copied from {e['origin']})" if e.get("origin") else "")
                     for e in entries)


async def _verify(cache, args, progress):
    from .._api import in_thread
    from ..errors import HubIntegrityError

    problems = await in_thread(cache.verify)
    if problems:
        listed = "; ".join(f"{p['path']}: {p['problem']}" for p in problems)
        raise HubIntegrityError(cache.root, f"{len(problems)} problem(s): {listed}",
                                hint="remove them (hub remove) and download again")
    count = len(cache.list())
    return _dumps({"ok": True, "entries": count}) if args.json else \
        f"{cache.root}: OK ({count} file(s) match the lock file)"


async def _prune(cache, args, progress):
    removed = await cache.prune(args.stale)
    if args.json:
        return _dumps(removed)
    return "\n".join(f"removed {path}" for path in removed) or "nothing to prune"


async def _remove(cache, args, progress):
    gone = await cache.remove(args.what)
    return _dumps(gone) if args.json else "\n".join(f"removed {path}" for path in gone)


_HANDLERS = {"download": _download, "stage": _stage, "list": _list, "verify": _verify,
             "prune": _prune, "remove": _remove}
