"""dffml-model-scratch: SimpleModels keeping their state in ``<dir>/Model``."""
from dffml_model_scratch.anomalydetection import AnomalyModel
from dffml_model_scratch.logisticregression import LogisticRegression

from dffml_archive.backends._table import distribution_and_extra
from dffml_archive.model import BackendAdapter


class ScratchAdapter(BackendAdapter):
    distribution, extra = distribution_and_extra(__name__)


from dffml_archive.model import archive_model  # noqa: E402

scratchlgrsag_archive = archive_model(
    LogisticRegression, "scratchlgrsag", ScratchAdapter(), module=__name__
)
anomalydetection_archive = archive_model(
    AnomalyModel, "anomalydetection", ScratchAdapter(), module=__name__
)
