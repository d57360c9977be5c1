"""dffml-archive: every DFFML model in one verified archive file."""
import json
import pathlib
import re

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
EXTRAS = dict(BACKEND_EXTRAS)
EXTRAS["dev"] = REQUIREMENTS["dev"]
EXTRAS["all"] = sorted(
    {req for reqs in BACKEND_EXTRAS.values() for req in reqs} | set(REQUIREMENTS["dev"])
)

# Our entry point for upstream model NAME is NAME_archive (never an upstream
# name: two distributions registering one name are resolved by install order).
SCIKIT_MODELS = """
scikitac scikitadaboost scikitap scikitard scikitbgc scikitbirch scikitbnb
scikitbyr scikitdtc scikitdtr scikiteln scikitetc scikitgbc scikitgnb scikitgpc
scikitgpr scikitkmeans scikitknn scikitlars scikitlas scikitlda scikitlor
scikitlr scikitmbkmeans scikitmlp scikitmnb scikitms scikitomp scikitoptics
scikitqda scikitrfc scikitrfr scikitridge scikitrsc scikitsc scikitsvc
""".split()
PYTORCH_PRETRAINED_MODELS = """
alexnet densenet121 densenet161 densenet169 densenet201 googlenet inception_v3
mnasnet0_5 mnasnet1_0 mobilenet_v2 resnet101 resnet152 resnet18 resnet34 resnet50
resnext101_32x8d resnext50_32x4d shufflenet_v2_x0_5 shufflenet_v2_x1_0 vgg11
vgg11_bn vgg13 vgg13_bn vgg16 vgg16_bn vgg19 vgg19_bn wide_resnet101_2
wide_resnet50_2
""".split()
MODELS_BY_MODULE = {
    "slr": ["slr"],
    "scratch": ["scratchlgrsag", "anomalydetection"],
    "scikit": SCIKIT_MODELS,
    "xgboost": ["xgbclassifier", "xgbregressor"],
    "vowpalwabbit": ["vwmodel"],
    "daal4py": ["daal4pylr"],
    "autosklearn": ["autoclassifier", "autoregressor"],
    "pytorch": ["pytorchnet"] + PYTORCH_PRETRAINED_MODELS,
    "tensorflow": ["tfdnnc", "tfdnnr"],
    "tensorflow_hub": ["text_classifier"],
    "spacy": ["spacyner"],
}
MODEL_ENTRY_POINTS = [
    f"{name}_archive = model_plugins.{module}:{name}_archive"
    for module, names in MODELS_BY_MODULE.items()
    for name in names
]

setup(
    name="dffml-archive",
    version=VERSION,
    description="Store every DFFML model in one verified archive file",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["dffml_archive", "dffml_archive.*", "model_plugins", "model_plugins.*"]),
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
        ],
        "dffml.model": MODEL_ENTRY_POINTS,
    },
)
