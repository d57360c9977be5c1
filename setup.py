"""dffml-archive: every DFFML model in one verified archive file."""
import json
import pathlib
import re
import runpy

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (HERE / "dffml_archive" / "version.py").read_text(),
    re.M,
).group(1)

# Dependencies live in requirements.json so that scripts/bootstrap can key
# its cached environment on them alone (editing entry points here must not
# rebuild a multi-GB environment).
REQUIREMENTS = json.loads((HERE / "requirements.json").read_text())
BACKEND_EXTRAS = REQUIREMENTS["extras"]
EXTRAS = {**BACKEND_EXTRAS, **REQUIREMENTS["features"]}
EXTRAS["dev"] = REQUIREMENTS["dev"]
EXTRAS["all"] = sorted(
    {req for reqs in EXTRAS.values() for req in reqs} | set(REQUIREMENTS["dev"])
)

# The backend table (dffml_archive/backends/_table.py) declares every
# backend and its models; it is plain data, run here without importing the
# package (whose dependencies may not be installed yet).
BACKEND_TABLE = runpy.run_path(str(HERE / "dffml_archive" / "backends" / "_table.py"))
MODEL_ENTRY_POINTS = BACKEND_TABLE["model_entry_points"]()

setup(
    name="dffml-archive",
    version=VERSION,
    description="Store every DFFML model in one verified archive file",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["dffml_archive", "dffml_archive.*"]),
    python_requires=">=3.8,<3.9",
    install_requires=REQUIREMENTS["install"],
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": ["dffml-archive = dffml_archive.cli:main"],
        "dffml.operation": [
            "archive_pack = dffml_archive.operations:archive_pack",
            "archive_extract = dffml_archive.operations:archive_extract",
            "archive_verify = dffml_archive.operations:archive_verify",
        ],
        "dffml.service.cli": [
            "archive = dffml_archive.service:ArchiveService",
            "models = dffml_archive.service:ModelsService",
            "hub = dffml_archive.hub._service:HubService",
            "experiments = dffml_archive.experiments._service:ExperimentsService",
        ],
        "dffml.model": MODEL_ENTRY_POINTS,
    },
)
