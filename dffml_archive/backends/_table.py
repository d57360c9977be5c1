"""The backends, one row each: the one place a new backend is declared.

Read by ``setup.py`` (by path, without importing the package: it builds the
``dffml.model`` entry points ``NAME_archive = dffml_archive.backends.MODULE:
NAME_archive`` from it, and ``NAME = dffml_archive.models.OWN`` for our own
plain models), by the adapters (their ``distribution`` and
``extra``), by the docs' backend table (checked by tests) and by the tests.
Pins live in ``requirements.json`` under the same extra (that file is the
environment's cache key).  Plain data only: this file must run on its own.
"""

#: Our entry point for upstream model NAME is NAME + LABEL_SUFFIX (never an
#: upstream name: two distributions registering one name are resolved by
#: install order).
LABEL_SUFFIX = "_archive"

_SCIKIT_MODELS = """
scikitac scikitadaboost scikitap scikitard scikitbgc scikitbirch scikitbnb
scikitbyr scikitdtc scikitdtr scikiteln scikitetc scikitgbc scikitgnb scikitgpc
scikitgpr scikitkmeans scikitknn scikitlars scikitlas scikitlda scikitlor
scikitlr scikitmbkmeans scikitmlp scikitmnb scikitms scikitomp scikitoptics
scikitqda scikitrfc scikitrfr scikitridge scikitrsc scikitsc scikitsvc
""".split()
_PYTORCH_PRETRAINED_MODELS = """
alexnet densenet121 densenet161 densenet169 densenet201 googlenet inception_v3
mnasnet0_5 mnasnet1_0 mobilenet_v2 resnet101 resnet152 resnet18 resnet34 resnet50
resnext101_32x8d resnext50_32x4d shufflenet_v2_x0_5 shufflenet_v2_x1_0 vgg11
vgg11_bn vgg13 vgg13_bn vgg16 vgg16_bn vgg19 vgg19_bn wide_resnet101_2
wide_resnet50_2
""".split()

#: module (in dffml_archive.backends), distribution (whose version the
#: manifest records), extra (None: installed with dffml-archive itself),
#: upstream model names; ``own``, for a model no PyPI release ships working:
#: upstream name -> ``module:Class`` of our own plain DFFML model in
#: dffml_archive.models, registered under the upstream name as well (the one
#: exception to "never an upstream name": nothing else provides it).
BACKENDS = [
    dict(module="slr", distribution="dffml", extra=None, models=["slr"]),
    dict(module="scratch", distribution="dffml-model-scratch", extra="scratch",
         models=["scratchlgrsag", "anomalydetection"]),
    dict(module="scikit", distribution="dffml-model-scikit", extra="scikit",
         models=_SCIKIT_MODELS),
    dict(module="xgboost", distribution="dffml-model-xgboost", extra="xgboost",
         models=["xgbclassifier", "xgbregressor"]),
    dict(module="vowpalwabbit", distribution="vowpalwabbit", extra="vowpalwabbit",
         models=["vwmodel"], own={"vwmodel": "vwmodel:VWModel"}),
    dict(module="daal4py", distribution="dffml-model-daal4py", extra="daal4py",
         models=["daal4pylr"]),
    dict(module="autosklearn", distribution="dffml-model-autosklearn", extra="autosklearn",
         models=["autoclassifier", "autoregressor"]),
    dict(module="pytorch", distribution="dffml-model-pytorch", extra="pytorch",
         models=["pytorchnet"] + _PYTORCH_PRETRAINED_MODELS),
    dict(module="tensorflow", distribution="dffml-model-tensorflow", extra="tensorflow",
         models=["tfdnnc", "tfdnnr"]),
    dict(module="tensorflow_hub", distribution="dffml-model-tensorflow-hub",
         extra="tensorflow_hub", models=["text_classifier"]),
    dict(module="spacy", distribution="spacy", extra="spacy", models=["spacyner"],
         own={"spacyner": "spacyner:SpacyNERModel"}),
]


def backend(module: str) -> dict:
    """The row of backend module ``module`` (its last dotted part)."""
    name = module.rsplit(".", 1)[-1]
    for row in BACKENDS:
        if row["module"] == name:
            return row
    raise KeyError(f"{module!r} is not in the backend table (dffml_archive/backends/_table.py)")


def model_entry_points() -> list:
    """``NAME_archive = dffml_archive.backends.MODULE:NAME_archive`` for every
    model, and ``NAME = dffml_archive.models.OWN`` for each of our own."""
    return [
        f"{name}{LABEL_SUFFIX} = dffml_archive.backends.{row['module']}:{name}{LABEL_SUFFIX}"
        for row in BACKENDS
        for name in row["models"]
    ] + [
        f"{name} = dffml_archive.models.{target}"
        for row in BACKENDS
        for name, target in row.get("own", {}).items()
    ]


def distribution_and_extra(module: str) -> tuple:
    """What an adapter of backend module ``module`` records: (distribution, extra)."""
    row = backend(module)
    return row["distribution"], row["extra"]
