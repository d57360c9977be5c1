"""slr (built into dffml): state is one JSON file; no quirks."""
from dffml.model.slr import SLRModel

from dffml_archive.model import archive_model

slr_archive = archive_model(SLRModel, "slr", module=__name__)
