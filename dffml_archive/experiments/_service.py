"""``dffml service experiments run FILE ...``: our own CLI, reached through
dffml (the arguments are handed over untouched, as for ``models``)."""
from ..service import PassThroughService, pass_through_config


class ExperimentsService(PassThroughService):
    """Experiment runner: ``dffml service experiments run FILE`` (test mode),
    ``-r`` (execution mode), ``--jobs N``, ``--scheduler ADDRESS``, ``--json``
    (the same as ``python -m dffml_archive experiments run ...``)."""

    CONFIG = pass_through_config(
        "ExperimentsServiceConfig", "run FILE [-r] [--jobs N] [--scheduler ADDRESS] [--json]"
    )
    COMMAND = ["experiments"]
