"""dffml-archive: every DFFML model in one verified archive file."""
import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"',
    (HERE / "dffml_archive" / "version.py").read_text(),
    re.M,
).group(1)

# One extra per backend.  Pins are the ones measured to install and import
# together on Python 3.8 (see docs/install.rst).
BACKEND_EXTRAS = {
    "slr": [],
    "scratch": ["dffml-model-scratch==0.1.0.post0"],
    "scikit": [
        "dffml-model-scikit==0.1.0.post0",
        "numpy<1.24",
        "pandas<2",
    ],
}
DEV_EXTRAS = [
    "pytest==8.3.5",
    "pytest-asyncio==0.24.0",
    "sphinx==7.1.2",
]

# Our entry point for upstream model NAME is NAME_archive (never an upstream
# name: two distributions registering one name are resolved by install order).
SCIKIT_MODELS = """
scikitac scikitadaboost scikitap scikitard scikitbgc scikitbirch scikitbnb
scikitbyr scikitdtc scikitdtr scikiteln scikitetc scikitgbc scikitgnb scikitgpc
scikitgpr scikitkmeans scikitknn scikitlars scikitlas scikitlda scikitlor
scikitlr scikitmbkmeans scikitmlp scikitmnb scikitms scikitomp scikitoptics
scikitqda scikitrfc scikitrfr scikitridge scikitrsc scikitsc scikitsvc
""".split()
MODELS_BY_MODULE = {
    "slr": ["slr"],
    "scratch": ["scratchlgrsag", "anomalydetection"],
    "scikit": SCIKIT_MODELS,
}
MODEL_ENTRY_POINTS = [
    f"{name}_archive = model_plugins.{module}:{name}_archive"
    for module, names in MODELS_BY_MODULE.items()
    for name in names
]

EXTRAS = dict(BACKEND_EXTRAS)
EXTRAS["dev"] = DEV_EXTRAS
EXTRAS["all"] = sorted(
    {req for reqs in BACKEND_EXTRAS.values() for req in reqs} | set(DEV_EXTRAS)
)

setup(
    name="dffml-archive",
    version=VERSION,
    description="Store every DFFML model in one verified archive file",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["dffml_archive", "dffml_archive.*", "model_plugins", "model_plugins.*"]),
    python_requires=">=3.8,<3.9",
    install_requires=[
        "dffml==0.4.0.post2",
        "aiofiles==24.1.0",
        "setuptools",
        "isal==1.7.2",
        "zstandard==0.23.0",
    ],
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
        ],
        "dffml.model": MODEL_ENTRY_POINTS,
    },
)
