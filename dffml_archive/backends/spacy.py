"""spacy: our own ``spacyner`` (:mod:`dffml_archive.models.spacyner`),
stored in archives as ``spacyner_archive``.  No quirks: its state
(``pipeline/`` and ``spacyner.json``) does not depend on the directory's
path."""
from dffml_archive.backends._table import distribution_and_extra
from dffml_archive.model import BackendAdapter, archive_model
from dffml_archive.models.spacyner import SpacyNERModel


class SpacyAdapter(BackendAdapter):
    distribution, extra = distribution_and_extra(__name__)


spacyner_archive = archive_model(SpacyNERModel, "spacyner", SpacyAdapter(), module=__name__)
