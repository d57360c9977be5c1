"""vowpalwabbit: our own ``vwmodel`` (:mod:`dffml_archive.models.vwmodel`),
stored in archives as ``vwmodel_archive``.  No quirks: its state (``vw.model``
and ``vw.json``) does not depend on the directory's path."""
from dffml_archive.backends._table import distribution_and_extra
from dffml_archive.model import BackendAdapter, archive_model
from dffml_archive.models.vwmodel import VWModel


class VowpalWabbitAdapter(BackendAdapter):
    distribution, extra = distribution_and_extra(__name__)


vwmodel_archive = archive_model(VWModel, "vwmodel", VowpalWabbitAdapter(), module=__name__)
