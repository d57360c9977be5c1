"""``dffml service hub ...``: the hub's command line reached through dffml
(the arguments are handed untouched to our own parser, as for ``models``)."""
from ..service import PassThroughService, pass_through_config
from ._cli import COMMANDS_HELP


class HubService(PassThroughService):
    """The model hub: ``dffml service hub COMMAND ...`` (the same as
    ``python -m dffml_archive hub COMMAND ...``)."""

    CONFIG = pass_through_config("HubServiceConfig", COMMANDS_HELP)
    COMMAND = ["hub"]
