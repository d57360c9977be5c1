"""``dffml service experiments run FILE ...``: our own CLI, reached through
dffml (the arguments are handed over untouched, as for ``models``)."""
import argparse
from typing import List

from dffml import config, field
from dffml.util.cli.cmd import CMD, CMDOutputOverride

from ..cli import main
from ..service import _PassThrough


@config
class ExperimentsServiceConfig:
    argv: List[str] = field("run FILE [-r] [--jobs N] [--scheduler ADDRESS] [--json]",
                            action=_PassThrough)


class ExperimentsService(CMD):
    """Experiment runner: ``dffml service experiments run FILE`` (test mode),
    ``-r`` (execution mode), ``--jobs N``, ``--scheduler ADDRESS``, ``--json``
    (the same as ``python -m dffml_archive experiments run ...``)."""

    CONFIG = ExperimentsServiceConfig
    CLI_FORMATTER_CLASS = argparse.RawDescriptionHelpFormatter

    async def run(self):
        status = main(["experiments", *self.argv], prog=PROG)
        if status:
            raise SystemExit(status)
        return CMDOutputOverride


PROG = "dffml service"
