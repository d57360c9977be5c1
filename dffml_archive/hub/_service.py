"""``dffml service hub ...``: the hub's command line reached through dffml
(the arguments are handed untouched to our own parser, as for ``models``)."""
import argparse
from typing import List

from dffml import config, field
from dffml.util.cli.cmd import CMD, CMDOutputOverride

from ..cli import main
from ..service import _PassThrough
from ._cli import COMMANDS_HELP


@config
class HubServiceConfig:
    argv: List[str] = field(f"{COMMANDS_HELP} and their arguments", action=_PassThrough)


class HubService(CMD):
    """The model hub: ``dffml service hub COMMAND ...`` (the same as
    ``python -m dffml_archive hub COMMAND ...``)."""

    CONFIG = HubServiceConfig
    CLI_FORMATTER_CLASS = argparse.RawDescriptionHelpFormatter

    async def run(self):
        status = main(["hub", *self.argv], prog="dffml service")
        if status:
            raise SystemExit(status)
        return CMDOutputOverride
