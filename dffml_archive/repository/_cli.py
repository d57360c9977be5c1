"""``python -m dffml_archive models ...`` and ``dffml service models ...``.

Building the parser imports nothing heavy; a command imports the repository
(SQLAlchemy) when it runs.  Every command prints text, or JSON with
``--json``; failures are one ``error:`` line (see :mod:`dffml_archive.cli`).
"""
import argparse
import json
import os

COMMANDS_HELP = "list|create|log|show|download|push|tag|untag|find|delete|gc|verify"


def add_models_parser(commands) -> None:
    models = commands.add_parser(
        "models", help="the versioned model repository (push, log, tag, find, download, ...)",
        description="The versioned model repository. Its root is --repository, else "
        "$DFFML_ARCHIVE_REPOSITORY, else ~/.local/share/dffml-archive/repository. "
        "References: NAME (the newest version), NAME:VERSION, NAME:TAG.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repository", metavar="DIR",
                        help="repository root (default: $DFFML_ARCHIVE_REPOSITORY)")
    common.add_argument("--database", metavar="URL",
                        help="metadata database, a SQLAlchemy URL (default: "
                        "$DFFML_ARCHIVE_REPOSITORY_DB, else SQLite in the root)")
    common.add_argument("--blobs", metavar="DIR|s3://BUCKET/PREFIX",
                        help="blob store (default: $DFFML_ARCHIVE_REPOSITORY_BLOBS, else "
                        "the root)")
    common.add_argument("--json", action="store_true", help="print JSON")
    sub = models.add_subparsers(dest="models_command", metavar="COMMAND")
    sub.required = True

    listing = sub.add_parser("list", parents=[common], help="the model repositories")
    listing.add_argument("--namespace", help="only those in this namespace")
    create = sub.add_parser("create", parents=[common], help="create an empty repository")
    create.add_argument("name", metavar="NAME")
    log = sub.add_parser("log", parents=[common], help="the versions of NAME, newest first")
    log.add_argument("name", metavar="NAME")
    log.add_argument("--events", action="store_true",
                     help="the history instead: saves, tag moves, deletions")
    show = sub.add_parser("show", parents=[common],
                          help="metadata, attachments, config and members of a version")
    show.add_argument("reference", metavar="NAME:VERSION|TAG")
    download = sub.add_parser("download", parents=[common],
                              help="write a version as one archive file (format by extension)")
    download.add_argument("reference", metavar="NAME:VERSION|TAG")
    download.add_argument("file", metavar="FILE")
    download.add_argument("--level", type=int, help="compression level")
    push = sub.add_parser("push", parents=[common],
                          help="save an archive or a directory as NAME's next version")
    push.add_argument("source", metavar="SOURCE", help="an archive file or a directory")
    push.add_argument("name", metavar="NAME")
    push.add_argument("--comment", default="", metavar="TEXT")
    push.add_argument("-m", "--meta", action="extend", nargs="+", default=[],
                      metavar="KEY=VALUE",
                      help="metadata (VALUE read as JSON when it is JSON: 0.89, true, "
                      "[1,2]; else as text): --meta a=1 b=2, or repeated")
    push.add_argument("--attach", action="extend", nargs="+", default=[], metavar="FILE",
                      help="files to save beside the version (under their names)")
    push.add_argument("--model", metavar="JSON_FILE",
                      help="model information for a directory (what a failed save kept)")
    tag = sub.add_parser("tag", parents=[common], help="point TAG at a version (moves it)")
    tag.add_argument("reference", metavar="NAME:VERSION|TAG")
    tag.add_argument("tag", metavar="TAG")
    untag = sub.add_parser("untag", parents=[common], help="remove a tag")
    untag.add_argument("reference", metavar="NAME:TAG")
    find = sub.add_parser("find", parents=[common], help="versions matching a selector",
                          description="Selector examples: 'entrypoint == \"slr_archive\" "
                          "and Accuracy > 0.8 and \"experience\" in features', "
                          "'tags contains \"production\"', 'config.predict.name == \"y\"'.")
    find.add_argument("expression", metavar="EXPR")
    delete = sub.add_parser("delete", parents=[common],
                            help="delete a version (its tags go with it)")
    delete.add_argument("reference", metavar="NAME:VERSION")
    gc = sub.add_parser("gc", parents=[common],
                        help="remove blobs nothing references (after a grace period)")
    gc.add_argument("--grace", type=float, metavar="SECONDS",
                    help="spare what is younger than this (default 3600: saves in flight)")
    sub.add_parser("verify", parents=[common], help="hash every stored blob")


def run_models(args, job) -> str:
    """Run a ``models`` command; returns what to print."""
    from ..cli import run_async

    return run_async(_run(args, job.progress))


async def _run(args, progress) -> str:
    from ._store import Repository

    store = Repository(args.repository, database=args.database, blobs=args.blobs)
    async with store.opened(blobs=args.models_command in _NEEDS_BLOBS):
        return await _HANDLERS[args.models_command](store, args, progress)


#: The commands that read or write blobs; the others need only the database
#: (and skip connecting to an object store).
_NEEDS_BLOBS = {"push", "download", "gc", "verify"}


def _dumps(value) -> str:
    # No indent: json's C encoder (indenting falls back to the Python one,
    # seconds for find over 100,000 versions).
    return json.dumps(value, sort_keys=True, default=str)


def _human(size) -> str:
    from ..cli import _human as human

    return human(size)


async def _list(store, args, progress):
    rows = await store.list(args.namespace)
    if args.json:
        return _dumps(rows)
    if not rows:
        return "no model repositories yet (push one: models push SOURCE NAME)"
    return "\n".join(
        f"{row['name']}  {row['versions']} version(s)"
        + (f", latest {row['latest']}" if row["latest"] else "")
        for row in rows
    )


async def _create(store, args, progress):
    repository = await store.create(args.name)
    return _dumps({"name": repository.name}) if args.json else f"created {repository.name}"


async def _log(store, args, progress):
    repository = await store.get(args.name)
    if args.events:
        events = await repository.events()
        if args.json:
            return _dumps(events)
        from ._store import iso_time

        return "\n".join(
            f"{iso_time(e['time'])}  {e['user']}  {e['action']}"
            + (f" {e['tag']}" if e["tag"] else "")
            + (f" -> {e['version']}" if e["version"] is not None and e["tag"] else
               f" {e['version']}" if e["version"] is not None else "")
            + (f" (was {e['previous_version']})" if e["previous_version"] is not None else "")
            for e in events
        )
    versions = await repository.log()
    if args.json:
        return _dumps(versions)
    if not versions:
        return f"{repository.name}: no versions yet"
    return "\n".join(
        f"{v['version']:>4}  {v['created']}  {v['user']}  {_human(v['size'])} "
        f"({_human(v['new_bytes'])} new)"
        + (f"  [{', '.join(v['tags'])}]" if v["tags"] else "")
        + (f"  {v['comment']}" if v["comment"] else "")
        for v in versions
    )


async def _show(store, args, progress):
    image = await store.get_model_image(args.reference)
    attachments = await image.get_attachments()
    shown = {
        "name": image.name,
        **image.summary(),
        "metadata": image.get_metadata(),
        "attachments": attachments,
        "members": [member.to_json() for member in image.manifest.members],
    }
    if args.json:
        return _dumps(shown)
    lines = [f"{image.reference}  image {image.digest}"]
    for key in ("tags", "comment", "created", "user", "host", "size", "new_bytes"):
        lines.append(f"  {key}: {shown[key]}")
    lines.append("  metadata:")
    lines += [f"    {key}: {json.dumps(value, sort_keys=True)}"
              for key, value in shown["metadata"].items()]
    lines.append(f"  attachments: {', '.join(attachments) or '(none)'}")
    lines.append(f"  members ({len(shown['members'])}):")
    lines += [f"    {m['mode']} {m.get('size', ''):>10} {m['path']}" for m in shown["members"]]
    return "\n".join(lines)


async def _download(store, args, progress):
    image = await store.get_model_image(args.reference)
    await image.download(args.file, level=args.level, progress=progress)
    if args.json:
        return _dumps({"reference": image.reference, "file": args.file, "image": image.digest})
    return f"wrote {image.reference} to {args.file}"


def _meta(text: str):
    from ..errors import BadReferenceError

    key, equals, value = text.partition("=")
    if not equals or not key:
        raise BadReferenceError(text, "is not KEY=VALUE", hint="e.g. --meta Accuracy=0.89")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


async def _push(store, args, progress):
    from ..cli import _read_model_information

    model = _read_model_information(args.model) if args.model else None
    metadata = [_meta(item) for item in args.meta]
    repository = await store.create(args.name, exist_ok=True)
    image = repository.new_image(args.source, model=model)
    for key, value in metadata:
        image[key] = value
    for path in args.attach:
        image.attach(os.path.basename(path), path)
    saved = await image.save(comment=args.comment, progress=progress)
    if args.json:
        return _dumps({**saved.summary(), "name": saved.name})
    return (f"saved {saved.reference} ({_human(saved.size)}, {_human(saved.new_bytes)} newly "
            f"stored)")


async def _tag(store, args, progress):
    image = await store.get_model_image(args.reference)
    previous = await image.repository.add_tag(args.tag, image.version)
    if args.json:
        return _dumps({"name": image.name, "tag": args.tag, "version": image.version,
                       "previous_version": previous})
    moved = f" (moved from {previous})" if previous not in (None, image.version) else ""
    return f"{image.name}:{args.tag} -> {image.version}{moved}"


async def _untag(store, args, progress):
    from ._names import parse_reference
    from ..errors import BadReferenceError

    reference = parse_reference(args.reference)
    if reference.tag is None:
        raise BadReferenceError(args.reference, "names no tag", hint="untag NAME:TAG")
    repository = await store.get(reference.name)
    previous = await repository.remove_tag(reference.tag)
    if args.json:
        return _dumps({"name": reference.name, "tag": reference.tag, "version": previous})
    return f"removed {reference.name}:{reference.tag} (was {previous})"


async def _find(store, args, progress):
    from ._store import find

    found = await find(store, args.expression)
    if args.json:
        return _dumps(found)
    if not found:
        return "no version matches"
    return "\n".join(
        f"{item['name']}:{item['version']}"
        + (f"  [{', '.join(item['tags'])}]" if item["tags"] else "")
        + (f"  {item['entrypoint']}" if item["entrypoint"] else "")
        for item in found
    )


async def _delete(store, args, progress):
    from ._names import parse_reference
    from ..errors import BadReferenceError

    reference = parse_reference(args.reference)
    if reference.version is None:
        raise BadReferenceError(
            args.reference, "names no version number",
            hint="delete NAME:VERSION (deleting by tag is refused: tags move)",
        )
    repository = await store.get(reference.name)
    tags = await repository.delete_version(reference.version)
    if args.json:
        return _dumps({"name": reference.name, "version": reference.version, "tags": tags})
    went = f" and its tags {', '.join(tags)}" if tags else ""
    return f"deleted {reference}{went} (run gc to free its storage)"


async def _gc(store, args, progress):
    from ._maintenance import gc

    report = await gc(store, args.grace)
    freed = report.freed_bytes + report.uploads_freed_bytes
    if args.json:
        return _dumps({**report.__dict__, "total_freed_bytes": freed})
    return (f"freed {_human(freed)} ({report.blobs} blob(s), {report.images} image(s) "
            f"no version used, {_human(report.uploads_freed_bytes)} of abandoned uploads)")


async def _verify(store, args, progress):
    from ._maintenance import verify
    from ..errors import CorruptBlobError

    checked, damaged = await verify(store, progress)
    if damaged:
        first = damaged[0]
        where = "; ".join(f"{ref} {member}" for ref, member in first.used_by[:5])
        found = "missing" if first.found == "missing" else f"hashes to {first.found[:16]}..."
        raise CorruptBlobError(
            store.root,
            f"{len(damaged)} of {checked} blob(s) damaged; blob {first.blob[:16]}... {found}, "
            f"used by {where}",
            hint="push the affected versions again from good copies, or delete them",
        )
    if args.json:
        return _dumps({"checked": checked, "damaged": []})
    return f"ok: {checked} blob(s) match their sha256"


_HANDLERS = {
    "list": _list, "create": _create, "log": _log, "show": _show, "download": _download,
    "push": _push, "tag": _tag, "untag": _untag, "find": _find, "delete": _delete, "gc": _gc,
    "verify": _verify,
}
