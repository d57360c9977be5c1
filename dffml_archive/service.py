"""``dffml service archive ...``: the same CLI, reached through dffml.

dffml parses service arguments with its own conventions, so the whole
argument list is handed, untouched, to :func:`dffml_archive.cli.main`."""
import argparse
from typing import List

from dffml import config, field
from dffml.util.cli.cmd import CMD, CMDOutputOverride

from .cli import build_parser, main


class _PassThrough(argparse.Action):
    """Collect every remaining argument verbatim (dffml would otherwise take
    options such as ``--replace`` or ``-l`` for its own)."""

    def __init__(self, *args, **kwargs):
        kwargs["nargs"] = argparse.REMAINDER
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)


@config
class ArchiveServiceConfig:
    argv: List[str] = field(
        "pack|extract|verify|inspect and their arguments", action=_PassThrough
    )


class ArchiveService(CMD):
    CONFIG = ArchiveServiceConfig
    CLI_FORMATTER_CLASS = argparse.RawDescriptionHelpFormatter

    async def run(self):
        status = main(list(self.argv), prog=PROG)
        if status:
            raise SystemExit(status)
        return CMDOutputOverride


PROG = "dffml service archive"
ArchiveService.__doc__ = build_parser(PROG).format_help()


@config
class ModelsServiceConfig:
    argv: List[str] = field(
        "list|create|log|show|download|push|tag|untag|find|delete|gc|verify and their "
        "arguments", action=_PassThrough,
    )


class ModelsService(CMD):
    """The versioned model repository: ``dffml service models COMMAND ...``
    (the same as ``python -m dffml_archive models COMMAND ...``)."""

    CONFIG = ModelsServiceConfig
    CLI_FORMATTER_CLASS = argparse.RawDescriptionHelpFormatter

    async def run(self):
        status = main(["models", *self.argv], prog=MODELS_PROG)
        if status:
            raise SystemExit(status)
        return CMDOutputOverride


MODELS_PROG = "dffml service"
