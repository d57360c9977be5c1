"""Command line: ``python -m dffml_archive pack|extract|verify|inspect|models|hub``.

Arguments go source first, then destination, like ``cp``.  Start-up stays
light: nothing heavy (and never dffml) is imported before a command runs.
Exit status: 0 success, 1 the operation failed (one line on stderr), 2 usage,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 the reader of the
output went away (``| head``).  Interrupted or terminated, a command cleans
up first: no staging directory, no partial archive.
"""
import argparse
import os
import signal
import sys
import threading
import time

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for cat | head
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _human(size) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


class ProgressBar:
    """Draws on stderr, only on a terminal and only once an operation has
    taken longer than a second."""

    DELAY = 1.0
    WIDTH = 30

    def __init__(self, label, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.started = time.monotonic()
        self.drawn = False

    def __call__(self, done, total):
        if not self.enabled or time.monotonic() - self.started < self.DELAY:
            return
        if total:
            filled = int(self.WIDTH * min(done / total, 1.0))
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            text = f"\r{self.label} [{bar}] {100 * done / total:3.0f}% {_human(done)}/{_human(total)}"
        else:
            text = f"\r{self.label} {_human(done)}"
        self.stream.write(text)
        self.stream.flush()
        self.drawn = True

    def close(self):
        """End the bar's line, so that what is printed next starts a line
        of its own (a later call draws the bar again below it)."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return value


def _add_limits(parser):
    parser.add_argument("--max-size", type=_positive_int, metavar="BYTES",
                        help="refuse archives that extract to more bytes than this")
    parser.add_argument("--max-members", type=_positive_int, metavar="N",
                        help="refuse archives with more members than this")
    parser.add_argument("--max-ratio", type=_positive_int, metavar="N",
                        help="refuse compression ratios above N:1 in archives without a "
                        "manifest (decompression bombs; default 100)")


def _program_name() -> str:
    """What the user typed: the ``dffml-archive`` script or ``python -m``."""
    if os.path.basename(sys.argv[0] or "") == "dffml-archive":
        return "dffml-archive"
    return "python -m dffml_archive"


def build_parser(prog="python -m dffml_archive") -> argparse.ArgumentParser:
    from .version import __version__

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Pack, extract, verify and inspect model archives "
        "(.zip, .tar, .tar.gz, .tar.bz2, .tar.xz, .tar.zst).",
    )
    parser.add_argument("--version", action="version", version=f"dffml-archive {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show a traceback when something fails")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    pack = commands.add_parser("pack", help="pack DIRECTORY into ARCHIVE (replaced atomically)")
    pack.add_argument("directory", metavar="DIRECTORY")
    pack.add_argument("archive", metavar="ARCHIVE", help="format from the extension")
    pack.add_argument("--level", type=int, help="compression level (codec default if omitted)")
    pack.add_argument("--model", metavar="JSON_FILE",
                      help="model information to store in the manifest (what a model "
                      "session whose save failed leaves beside its kept directory)")

    extract = commands.add_parser("extract", help="extract ARCHIVE into DEST (created if missing)")
    extract.add_argument("archive", metavar="ARCHIVE")
    extract.add_argument("destination", metavar="DEST")
    extract.add_argument("--replace", action="store_true",
                         help="replace DEST if it exists and is not empty")
    _add_limits(extract)

    verify = commands.add_parser("verify", help="check every member of ARCHIVE, writing nothing")
    verify.add_argument("archive", metavar="ARCHIVE")
    _add_limits(verify)

    inspect = commands.add_parser("inspect", help="show the manifest of ARCHIVE")
    inspect.add_argument("archive", metavar="ARCHIVE")
    inspect.add_argument("--json", action="store_true", help="print JSON")

    from .repository._cli import add_models_parser

    add_models_parser(commands)
    from .hub._cli import add_hub_parser

    add_hub_parser(commands)
    from .experiments._cli import add_experiments_parser

    add_experiments_parser(commands)
    return parser


def _limits(args):
    from ._safety import Limits

    chosen = {
        name: value
        for name, value in (
            ("max_size", args.max_size),
            ("max_members", args.max_members),
            ("max_ratio", args.max_ratio),
        )
        if value is not None
    }
    return Limits(**chosen)


def _is_archive_file(path: str) -> bool:
    from ._formats import is_archive_path

    return is_archive_path(path) and os.path.isfile(path)


def _refuse_swapped(culprit: str, usage: str) -> None:
    """Arguments that fit the other order: say so rather than blame one path."""
    from .errors import ArchiveError

    raise ArchiveError(culprit, "the arguments look swapped", hint=f"the order is: {usage}")


def _read_model_information(path: str) -> dict:
    import json

    from .errors import ArchiveError

    try:
        with open(path, encoding="utf-8") as handle:
            model = json.load(handle)
    except (OSError, ValueError) as error:
        raise ArchiveError(path, f"cannot read model information ({error})",
                           hint="give the JSON file of --model") from None
    if not isinstance(model, dict):
        raise ArchiveError(path, "model information must be a JSON object",
                           hint="give the JSON file of --model")
    return model


def _run_pack(args, job):
    from ._pack import pack_directory

    if _is_archive_file(args.directory) and os.path.isdir(args.archive):
        _refuse_swapped(args.directory, "pack DIRECTORY ARCHIVE")
    model = _read_model_information(args.model) if args.model else None
    manifest = pack_directory(args.directory, args.archive, model=model, level=args.level, job=job)
    files = sum(1 for member in manifest.members if member.type == "file")
    return f"packed {files} file(s) ({_human(manifest.total_size)}) into {args.archive}"


def _run_extract(args, job):
    from ._extract import extract_archive

    if os.path.isdir(args.archive) and _is_archive_file(args.destination):
        _refuse_swapped(args.destination, "extract ARCHIVE DEST")
    manifest = extract_archive(
        args.archive, args.destination, limits=_limits(args), replace=args.replace, job=job
    )
    return f"extracted {len(manifest.members)} members into {args.destination}"


def _run_verify(args, job):
    from ._extract import verify_archive

    manifest = verify_archive(args.archive, limits=_limits(args), job=job)
    if not manifest.verified:
        return f"{args.archive}: safe to extract, but it has no manifest: content not verified"
    return f"{args.archive}: OK ({len(manifest.members)} members match the manifest)"


def _run_inspect(args, job):
    import json

    from ._inspect import inspect_archive

    info = inspect_archive(args.archive)
    if args.json:
        return json.dumps(info.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
    return format_info(info)


def run_async(coroutine):
    """Run ``coroutine`` to its end from this synchronous command line: here,
    or in a thread of its own when an event loop already runs (``dffml
    service ...`` calls :func:`main` inside dffml's loop).  asyncio is
    imported only now: ``pack`` and ``extract`` never need it."""
    import asyncio
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def _run_models(args, job):
    from .repository._cli import run_models

    return run_models(args, job)


def _run_hub(args, job):
    from .hub._cli import run_hub

    return run_hub(args, job)


def _run_experiments(args, job):
    from .experiments._cli import run_experiments_command

    return run_experiments_command(args, job)


def format_info(info) -> str:
    import json

    lines = [f"archive:  {info.path} ({info.format}, {_human(info.size)})"]
    manifest = info.manifest
    if manifest is None:
        lines.append("manifest: none (made by another tool: content cannot be verified)")
    else:
        from .errors import shown  # the manifest's text is the archive maker's

        writer = shown(", ".join(
            f"{name} {version}" for name, version in sorted(manifest.created_by.items()) if version
        ))
        lines.append(f"manifest: version {manifest.version}, written by {writer}")
        model = json.dumps(manifest.model, indent=2, sort_keys=True) if manifest.model else "none"
        lines.append("model:    " + model.replace("\n", "\n          "))
    files = [member for member in info.members if member.type == "file"]
    total = sum(member.size for member in files)
    lines.append(f"members:  {len(info.members)} ({len(files)} file(s), {_human(total)})")
    for member in info.members:
        digest = f"sha256:{member.sha256[:12]}" if member.sha256 else " " * 19
        suffix = "/" if member.type == "directory" else ""
        lines.append(f"  {member.mode:04o} {member.size:>12} {digest} {member.path}{suffix}")
    return "\n".join(lines)


_COMMANDS = {
    "pack": _run_pack,
    "extract": _run_extract,
    "verify": _run_verify,
    "inspect": _run_inspect,
    "models": _run_models,
    "hub": _run_hub,
    "experiments": _run_experiments,
}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread wherever it is, so that the same
    clean-up runs as for Ctrl-C (a BaseException: nothing swallows it)."""


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # clean up once, undisturbed
    raise Terminated()


def _warnings_printer(bar):
    """Print each warning as one line when it happens (waiting for a lock
    must be said while waiting), on a line of its own below the bar."""

    def show(message, category, filename, lineno, file=None, line=None):
        bar.close()
        print(f"warning: {message}", file=sys.stderr, flush=True)

    return show


def main(argv=None, prog=None) -> int:
    parser = build_parser(prog or _program_name())
    args = parser.parse_args(argv)
    # Only the main thread may set a handler (``dffml service archive`` runs
    # this there too); the previous one is restored on the way out.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return _run(args)
    finally:
        if in_main_thread:  # None: a handler not set from Python
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _run(args) -> int:
    import warnings

    from ._job import Job
    from .errors import ArchiveError, ArchiveWarning

    bar = ProgressBar(args.command)
    job = Job(bar)
    try:
        with warnings.catch_warnings():
            # Each of ours is said; others as Python's filters decide.
            warnings.simplefilter("always", ArchiveWarning)
            warnings.showwarning = _warnings_printer(bar)
            message = _COMMANDS[args.command](args, job)
    except (ArchiveError, OSError, ValueError) as error:
        bar.close()
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        bar.close()
        print("error: interrupted; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        bar.close()
        print("error: terminated (SIGTERM); nothing was changed", file=sys.stderr)
        return EXIT_TERMINATED
    bar.close()
    try:
        print(message, flush=True)
    except BrokenPipeError:  # the reader left (``| head``): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as error:  # e.g. > /dev/full
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"error: cannot write the output: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
