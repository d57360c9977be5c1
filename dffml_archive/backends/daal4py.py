"""dffml-model-daal4py: ``daal4pylr``, linear regression on Intel oneDAL
(daal4py < 2024, pandas < 2).

Upstream trains a streaming ``daal4py.linear_regression_training`` one record
at a time and saves the finalized model with joblib as
``<dir>/trained_model.sav``; it loads it when the model object is built.  As
a ``SimpleModel`` it also writes an empty ``<dir>/Model`` JSON file.  Nothing
depends on the directory's path: no quirk to handle.  Predictions carry a
NaN confidence; ``accuracy`` is the fraction of records predicted within 0.1
of the true value (upstream behaviour, kept).
"""
from dffml_model_daal4py.daal4pylr import DAAL4PyLRModel

from dffml_archive.model import BackendAdapter, archive_model
from dffml_archive.backends._table import distribution_and_extra


class Daal4pyAdapter(BackendAdapter):
    distribution, extra = distribution_and_extra(__name__)


daal4pylr_archive = archive_model(
    DAAL4PyLRModel, "daal4pylr", Daal4pyAdapter(), module=__name__
)
