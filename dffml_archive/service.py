"""``dffml service archive|models|hub|experiments ...``: our command line,
reached through dffml.

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


def pass_through_config(name: str, what: str) -> type:
    """The config of a pass-through service: one ``argv`` list, described
    by ``what`` (the commands it takes)."""
    namespace = {
        "__module__": __name__,
        "__annotations__": {"argv": List[str]},
        "argv": field(f"{what} and their arguments", action=_PassThrough),
    }
    return config(type(name, (), namespace))


class PassThroughService(CMD):
    """A ``dffml service`` whose arguments go, untouched, to
    ``python -m dffml_archive *COMMAND ...``."""

    COMMAND: List[str] = []
    PROG = "dffml service"
    CLI_FORMATTER_CLASS = argparse.RawDescriptionHelpFormatter

    async def run(self):
        status = main([*self.COMMAND, *self.argv], prog=self.PROG)
        if status:
            raise SystemExit(status)
        return CMDOutputOverride


class ArchiveService(PassThroughService):
    CONFIG = pass_through_config("ArchiveServiceConfig", "pack|extract|verify|inspect")
    PROG = "dffml service archive"


ArchiveService.__doc__ = build_parser(ArchiveService.PROG).format_help()


class ModelsService(PassThroughService):
    """The versioned model repository: ``dffml service models COMMAND ...``
    (the same as ``python -m dffml_archive models COMMAND ...``)."""

    CONFIG = pass_through_config(
        "ModelsServiceConfig", "list|create|log|show|download|push|tag|untag|find|delete|gc|verify"
    )
    COMMAND = ["models"]
