"""End to end for the deep-learning backends: pytorch (``pytorchnet`` and the
29 pretrained torchvision networks), tensorflow (``tfdnnc``, ``tfdnnr``),
tensorflow_hub (``text_classifier``) and our own spaCy NER (``spacyner``).

The same proof as ``test_models_e2e.py``, for ``.tar.gz`` and ``.zip``: the
real ``dffml`` CLI trains, assesses and predicts into an archive; the
archive is moved and a *new process* predicts from it giving only
``-model-location`` (no features, no options): predictions and confidences
must be identical.  Then the async high-level API, ``load_model`` and a
dataflow with DFFML's own ``dffml.model.predict`` operation.  Plus each
backend's save/load quirk, and the documentation examples, run for real.

Nothing may touch the network: every test runs with a socket guard (in this
process and, through a ``sitecustomize`` on ``PYTHONPATH``, in every process
it starts) that records and refuses internet connections and name lookups,
and with ``TORCH_HOME``, ``TFHUB_CACHE_DIR``, ``XDG_CACHE_HOME`` and
``HF_HOME`` pointing at private directories.  Pretrained torchvision
weights are made by the test (random weights, ``weights=None``) and put
where torch's hub cache looks for them; the real loading code reads them.
The tensorflow_hub embedding is a tiny SavedModel the test builds.

Adding a backend: one line in :data:`BACKENDS` (with a :class:`Kind` of
data it learns from).
"""
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
from typing import Callable, Dict, List

import pkg_resources
import pytest

import dffml
from dffml import Feature, Features, Model

import dffml_archive
from dffml_archive.errors import ArchiveError
from dffml_archive.model import archive_label, load_model
from dffml_archive.backends import _table

from _e2e_helpers import CLI_TIMEOUT, EXAMPLES, REPO, dffml_cli, parse_records, same, tree
from _e2e_helpers import check_stored_model, keyed_predictions, write_csv
from _e2e_helpers import TEXT_NEGATIVE, TEXT_POSITIVE, TEXT_TEST, write_embedding
from _e2e_helpers import predict_through_the_dataflow_operation
from _e2e_helpers import create_predict_dataflow_with_the_cli
from _e2e_helpers import run_dataflow_on_one_record_with_the_cli
from _e2e_helpers import model_entry_points, move_the_archive, our_models_in
from _e2e_helpers import check_example_prints_its_output_and_leaves_its_archives
from _e2e_helpers import NER_TRAIN, examples_included_by_page, without_timestamps

FORMATS = (".tar.gz", ".zip")

#: Our modules and the upstream distribution each wraps (spacy: our own).
OUR_MODULES = {
    "dffml_archive.backends.pytorch": "dffml-model-pytorch",
    "dffml_archive.backends.tensorflow": "dffml-model-tensorflow",
    "dffml_archive.backends.tensorflow_hub": "dffml-model-tensorflow-hub",
    "dffml_archive.backends.spacy": None,
}


# -- no network, private caches ------------------------------------------------

SITECUSTOMIZE = '''
"""Installed by tests/test_backends_deep.py: refuse and record network use."""
import os, socket
_LOG = os.environ.get("DFFML_ARCHIVE_TEST_NET_LOG")
if _LOG:
    _LOCAL = {None, "localhost", "127.0.0.1", "::1", ""}

    def _record(what):
        with open(_LOG, "a") as handle:
            handle.write(f"{os.getpid()}: {what}\\n")

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
            _record(f"connect {address!r}")
            raise OSError("network access refused by the test suite")
        return _connect(self, address, *args)

    def connect_ex(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
            _record(f"connect_ex {address!r}")
            raise OSError("network access refused by the test suite")
        return _connect_ex(self, address, *args)

    _getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL:
            _record(f"getaddrinfo {host!r}")
            raise socket.gaierror("name lookups refused by the test suite")
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo = getaddrinfo
'''


@pytest.fixture(scope="session")
def guard_dir(tmp_path_factory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("netguard")
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return directory


@pytest.fixture(scope="session")
def caches(tmp_path_factory) -> Dict[str, pathlib.Path]:
    """Private caches, checked at the end: nothing downloaded into them."""
    root = tmp_path_factory.mktemp("caches")
    paths = {
        "TORCH_HOME": root / "torch",
        "TFHUB_CACHE_DIR": root / "tfhub",
        "XDG_CACHE_HOME": root / "xdg",
        "HF_HOME": root / "hf",
    }
    for path in paths.values():
        path.mkdir()
    made = make_pretrained_weights(paths["TORCH_HOME"])
    yield paths
    # Only the weights the tests made, unchanged; nothing else anywhere.
    found = sorted(p for path in paths.values() for p in path.rglob("*") if p.is_file())
    assert found == sorted(made), f"something was downloaded or cached: {found}"
    for path, digest in made.items():
        assert _digest(path) == digest, f"{path} was rewritten"


def _digest(path: pathlib.Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_pretrained_weights(torch_home: pathlib.Path) -> Dict[pathlib.Path, str]:
    """Random resnet18 weights where torch's hub cache looks for the real
    ones (``$TORCH_HOME/hub/checkpoints/<name from the download URL>``)."""
    import torch
    import torchvision

    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    path = checkpoints / url.rsplit("/", 1)[1]
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), str(path))
    return {path: _digest(path)}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path, caches, guard_dir):
    """No network in this process nor in the processes it starts."""
    log = tmp_path / "network-attempts.log"
    for name, path in caches.items():
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("DFFML_ARCHIVE_TEST_NET_LOG", str(log))
    monkeypatch.setenv(
        "PYTHONPATH",
        os.pathsep.join([str(guard_dir), str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
    )
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    attempts: List[str] = []
    local = {None, "localhost", "127.0.0.1", "::1", ""}
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse(real):
        def connect(self, address, *args):
            if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in local:
                attempts.append(f"connect {address!r}")
                raise OSError("network access refused by the test suite")
            return real(self, address, *args)

        return connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in local:
            attempts.append(f"getaddrinfo {host!r}")
            raise socket.gaierror("name lookups refused by the test suite")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", refuse(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse(real_connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    assert attempts == [], f"network use in the test process: {attempts}"
    assert not log.exists(), f"network use in a child process: {log.read_text()}"


def test_the_network_guard_works_in_child_processes(tmp_path):
    # The guard itself: a child process trying to reach the internet is
    # refused and recorded (then the log is removed so the test passes).
    result = subprocess.run(
        [sys.executable, "-c",
         "import urllib.request\n"
         "try:\n"
         "    urllib.request.urlopen('https://download.pytorch.org/', timeout=5)\n"
         "except Exception as error:\n"
         "    print(type(error).__name__)\n"],
        capture_output=True, text=True, timeout=60,
    )
    log = pathlib.Path(os.environ["DFFML_ARCHIVE_TEST_NET_LOG"])
    assert "download.pytorch.org" in log.read_text(), result
    log.unlink()


# -- data ----------------------------------------------------------------------


#: pytorchnet's network (``-model-network @net.json``): 8x8 RGB -> 2 classes.
NETWORK = {
    "model1": {
        "flatten": {"layer_type": "Flatten"},
        "linear": {"layer_type": "Linear", "in_features": 192, "out_features": 2},
    }
}

#: A pretrained network's new last layer (``-model-layers @layers.json``).
LAYERS = {"fc": {"layer_type": "Linear", "in_features": 512, "out_features": 2}}

NER_TEST = ["Albert Einstein went to Japan.", "Nikola Tesla liked India.", "Nothing here."]

def write_images(root: pathlib.Path) -> None:
    """8x8 RGB PNGs: dark and light ones, labelled by folder; unlabelled test ones."""
    import cv2
    import numpy

    rng = numpy.random.RandomState(0)

    def image(base):
        return numpy.clip(base + rng.randint(-30, 30, (8, 8, 3)), 0, 255).astype(numpy.uint8)

    for label, base in (("dark", 40), ("light", 210)):
        (root / "train" / label).mkdir(parents=True)
        for index in range(6):
            cv2.imwrite(str(root / "train" / label / f"{index}.png"), image(base))
    (root / "test").mkdir()
    for index, base in enumerate((30, 220)):
        cv2.imwrite(str(root / "test" / f"{index}.png"), image(base))


def _json_records(rows: List[dict]) -> dict:
    return {"untagged": {str(i): {"features": row} for i, row in enumerate(rows)}}


CLASSES_TRAIN = [{"a": a / 10, "b": (a % 7) / 10, "label": int(a / 10 + (a % 7) / 10 > 1.0)}
                 for a in range(20)]
CLASSES_TEST = [{"a": 0.1, "b": 0.1}, {"a": 1.8, "b": 0.6}, {"a": 0.5, "b": 0.2}]
REGRESSION_TRAIN = [{"x": x / 2, "y": x + 1.0} for x in range(20)]
REGRESSION_TEST = [{"x": 1.0}, {"x": 4.5}, {"x": 8.0}]


@pytest.fixture(scope="session")
def data(tmp_path_factory, caches) -> pathlib.Path:
    root = tmp_path_factory.mktemp("data")
    write_images(root / "images")
    (root / "net.json").write_text(json.dumps(NETWORK))
    (root / "layers.json").write_text(json.dumps(LAYERS))
    write_csv(root / "classes-train.csv", CLASSES_TRAIN)
    write_csv(root / "classes-test.csv", CLASSES_TEST)
    write_csv(root / "regression-train.csv", REGRESSION_TRAIN)
    write_csv(root / "regression-test.csv", REGRESSION_TEST)
    write_csv(root / "text-train.csv",
              [{"sentence": s, "sentiment": 1} for s in TEXT_POSITIVE]
              + [{"sentence": s, "sentiment": 0} for s in TEXT_NEGATIVE])
    write_csv(root / "text-test.csv", [{"sentence": s} for s in TEXT_TEST])
    (root / "ner-train.json").write_text(json.dumps(_json_records(
        [{"sentence": s, "entities": [list(e) for e in ents]} for s, ents in NER_TRAIN])))
    (root / "ner-test.json").write_text(json.dumps(_json_records(
        [{"sentence": s} for s in NER_TEST])))
    write_embedding(root / "embedding")
    return root


def _image_rows(root: pathlib.Path, which: str) -> List[dict]:
    """What the ``dir`` source makes of the image folders, as plain dicts."""
    import cv2
    import numpy

    def read(path):
        return cv2.imdecode(numpy.frombuffer(path.read_bytes(), numpy.uint8), cv2.IMREAD_COLOR)

    if which == "test":
        return [{"image": read(path)} for path in sorted((root / "images" / "test").glob("*.png"))]
    return [
        {"image": read(path), "label": label}
        for label in ("dark", "light")
        for path in sorted((root / "images" / "train" / label).glob("*.png"))
    ]


def _csv_rows(name):
    return lambda root, which: {"train": {"classes": CLASSES_TRAIN, "regression": REGRESSION_TRAIN},
                                "test": {"classes": CLASSES_TEST, "regression": REGRESSION_TEST}}[which][name]


def _text_rows(root, which):
    if which == "test":
        return [{"sentence": s} for s in TEXT_TEST]
    return ([{"sentence": s, "sentiment": 1} for s in TEXT_POSITIVE]
            + [{"sentence": s, "sentiment": 0} for s in TEXT_NEGATIVE])


def _ner_rows(root, which):
    if which == "test":
        return [{"sentence": s} for s in NER_TEST]
    return [{"sentence": s, "entities": ents} for s, ents in NER_TRAIN]


def _check_in(allowed):
    def check(rows, values):
        assert values and all(value in allowed for value in values), values

    return check


def _check_regression(rows, values):
    assert all(isinstance(value, float) and math.isfinite(value) for value in values), values


def _check_entities(rows, values):
    found = set()
    for row, entities in zip(rows, values):
        for text, label, start, end in entities:
            assert row["sentence"][start:end] == text, (row, entities)
            assert label in {"PERSON", "LOC"}, entities
            found.add(label)
    assert found, f"no entities found at all: {values}"


@dataclasses.dataclass(frozen=True)
class Kind:
    """A small data set of one kind, how to give it, and what sane
    predictions on it look like."""

    name: str
    target: str
    #: data dir -> -model-* options (CLI strings) / keyword arguments (API)
    cli_options: Callable[[pathlib.Path], List[str]]
    api_options: Callable[[pathlib.Path], dict]
    #: (data dir, "train"|"test") -> -sources ... / rows for the API
    cli_sources: Callable[[pathlib.Path, str], List[str]]
    rows: Callable[[pathlib.Path, str], List[dict]]
    check: Callable


def _network(root):
    from dffml_model_pytorch.pytorch_net import Network

    return Network(json.loads((root / "net.json").read_text()))


KINDS: Dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "images", "label",
            lambda root: ["-model-features", "image:int:192", "-model-predict", "label:str:1",
                          "-model-classifications", "dark", "light", "-model-epochs", "2"],
            lambda root: dict(features=Features(Feature("image", int, 192)),
                              predict=Feature("label", str, 1),
                              classifications=["dark", "light"], epochs=2),
            lambda root, which: ["-sources", "f=dir", "-source-foldername",
                                 str(root / "images" / which), "-source-feature", "image"]
            + (["-source-labels", "dark", "light"] if which == "train" else []),
            _image_rows,
            _check_in({"dark", "light"}),
        ),
        Kind(
            "classes", "label",
            lambda root: ["-model-features", "a:float:1", "b:float:1", "-model-predict",
                          "label:int:1", "-model-classifications", "0", "1",
                          "-model-clstype", "int", "-model-epochs", "20", "-model-hidden", "8"],
            lambda root: dict(features=Features(Feature("a", float, 1), Feature("b", float, 1)),
                              predict=Feature("label", int, 1), classifications=[0, 1],
                              clstype=int, epochs=20, hidden=[8]),
            lambda root, which: ["-sources", "f=csv", "-source-filename",
                                 str(root / f"classes-{which}.csv")],
            _csv_rows("classes"),
            _check_in({0, 1}),
        ),
        Kind(
            "regression", "y",
            lambda root: ["-model-features", "x:float:1", "-model-predict", "y:float:1",
                          "-model-epochs", "20", "-model-hidden", "8"],
            lambda root: dict(features=Features(Feature("x", float, 1)),
                              predict=Feature("y", float, 1), epochs=20, hidden=[8]),
            lambda root, which: ["-sources", "f=csv", "-source-filename",
                                 str(root / f"regression-{which}.csv")],
            _csv_rows("regression"),
            _check_regression,
        ),
        Kind(
            "text", "sentiment",
            lambda root: ["-model-features", "sentence:str:1", "-model-predict",
                          "sentiment:int:1", "-model-classifications", "0", "1",
                          "-model-clstype", "int", "-model-epochs", "10",
                          "-model-model_path", str(root / "embedding")],
            lambda root: dict(features=Features(Feature("sentence", str, 1)),
                              predict=Feature("sentiment", int, 1), classifications=[0, 1],
                              clstype=int, epochs=10, model_path=str(root / "embedding")),
            lambda root, which: ["-sources", "f=csv", "-source-filename",
                                 str(root / f"text-{which}.csv")],
            _text_rows,
            _check_in({0, 1}),
        ),
        Kind(
            "ner", "Tag",
            lambda root: ["-model-n_iter", "20"],
            lambda root: dict(n_iter=20),
            lambda root, which: ["-sources", "f=json", "-source-filename",
                                 str(root / f"ner-{which}.json")],
            _ner_rows,
            _check_entities,
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Backend:
    kind: str
    #: Extra model options, the same for the CLI (str(value)) and the API.
    options: Dict[str, object] = dataclasses.field(default_factory=dict)
    #: Extra options that differ: data dir -> (CLI strings, API keywords).
    special: Callable = None


def _pytorchnet_network(root):
    return ["-model-network", f"@{root / 'net.json'}"], {"network": _network(root)}


def _two_classes_head(root):
    """Pretrained networks end in 1000 ImageNet classes: replace the last
    layer by one for our two (``-model-add_layers -model-layers @FILE``)."""
    return (["-model-add_layers", "-model-layers", f"@{root / 'layers.json'}"],
            {"add_layers": True, "layers": json.loads((root / "layers.json").read_text())})


#: Upstream model name -> its data.  One line per backend.
BACKENDS: Dict[str, Backend] = {
    "pytorchnet": Backend("images", special=_pytorchnet_network),
    "resnet18": Backend("images", {"imageSize": 32}, special=_two_classes_head),
    "tfdnnc": Backend("classes"),
    "tfdnnr": Backend("regression"),
    "text_classifier": Backend("text"),
    "spacyner": Backend("ner"),
}

# The pretrained nets, as the backend table declares them (a test below
# checks the table against what dffml-model-pytorch registers).
PYTORCH_PRETRAINED = [name for name in _table.backend("pytorch")["models"] if name != "pytorchnet"]


def cli_options(name: str, root: pathlib.Path) -> List[str]:
    spec = BACKENDS[name]
    options = KINDS[spec.kind].cli_options(root)
    for option, value in spec.options.items():
        options += [f"-model-{option}", str(value)]
    if spec.special:
        options += spec.special(root)[0]
    return options


def api_model(name: str, root: pathlib.Path, location: pathlib.Path):
    spec = BACKENDS[name]
    options = KINDS[spec.kind].api_options(root)
    options.update(spec.options)
    if spec.special:
        options.update(spec.special(root)[1])
    return Model.load(archive_label(name))(location=location, **options)


# -- helpers -------------------------------------------------------------------


def parse_pure_json_records(stdout: str) -> list:
    """``dffml predict all`` output, which must be pure JSON (first byte ``[``)."""
    assert stdout.startswith("["), f"not pure JSON on stdout: {stdout[:300]!r}"
    return parse_records(stdout)


def prediction_values(predictions, target) -> list:
    return [prediction[target]["value"] for _key, prediction in predictions]


def ours(name: str) -> pkg_resources.EntryPoint:
    return model_entry_points()[archive_label(name)]


# -- the table -----------------------------------------------------------------


def upstream_names() -> Dict[str, List[str]]:
    """Our module -> the upstream names it must wrap."""
    names = {}
    for module, distribution in OUR_MODULES.items():
        if distribution is None:
            names[module] = ["spacyner"]
        else:
            names[module] = sorted(model_entry_points(distribution))
    return names


def test_our_entry_points_are_exactly_upstream_name_archive():
    in_our_modules = our_models_in(OUR_MODULES)
    expected = {
        archive_label(name): module
        for module, names in upstream_names().items()
        for name in names
    }
    assert in_our_modules == expected
    assert len(upstream_names()["dffml_archive.backends.pytorch"]) == 30


def test_every_model_is_tested_end_to_end_or_is_a_pretrained_sibling():
    every = {name for names in upstream_names().values() for name in names}
    assert set(BACKENDS) <= every
    # resnet18 stands for its 28 pretrained siblings (same code, bigger
    # networks); every one of them still loads (next test).
    assert every - set(BACKENDS) == set(PYTORCH_PRETRAINED) - {"resnet18"}
    assert sorted(PYTORCH_PRETRAINED) == sorted(
        set(upstream_names()["dffml_archive.backends.pytorch"]) - {"pytorchnet"}
    )
    for spec in BACKENDS.values():
        assert spec.kind in KINDS


@pytest.mark.parametrize(
    "name", sorted(name for names in upstream_names().values() for name in names)
)
def test_every_wrapper_loads_from_its_entry_point(name):
    import torchvision

    cls = Model.load(archive_label(name))
    assert ours(name).resolve() is cls
    assert cls.UPSTREAM == name and cls.ENTRY_POINT_ORIG_LABEL == archive_label(name)
    fields = {field.name for field in dataclasses.fields(cls.CONFIG)}
    assert {"location", "retrain"} <= fields and "directory" not in fields
    if name == "spacyner":
        from dffml_archive.backends.spacy import SpacyNERModel

        assert cls.INNER is SpacyNERModel
        return
    assert Model.load(name) is cls.INNER, "the class registered under the upstream name"
    if name in PYTORCH_PRETRAINED:
        assert cls.INNER.PYTORCH_MODEL == name
        assert callable(getattr(torchvision.models, name)), "torchvision builds it"
        assert {"pretrained", "trainable", "add_layers", "layers"} <= fields


# -- 1. the real dffml CLI -----------------------------------------------------


def _cli_cases():
    return [(name, ext) for name in BACKENDS for ext in FORMATS]


@pytest.mark.parametrize("name,ext", _cli_cases())
def test_cli_train_accuracy_predict_then_move(name, ext, data, tmp_path):
    kind = KINDS[BACKENDS[name].kind]
    label = archive_label(name)
    work = tmp_path / "work"
    (work / "first").mkdir(parents=True)
    root = data
    if name == "text_classifier":
        # A copy of the embedding, deleted before predicting after the move:
        # the archive alone must be enough.
        root = tmp_path / "data"
        root.mkdir()
        shutil.copytree(str(data / "embedding"), str(root / "embedding"))
    location = pathlib.Path("first") / f"model{ext}"  # relative to the CWD
    common = ["-model", label, *cli_options(name, root), "-model-location", location]

    dffml_cli("train", *common, *kind.cli_sources(data, "train"), cwd=work)
    archive = work / location
    assert tree(work / "first") == [archive.name], "only the archive may be created"
    accuracy = json.loads(
        dffml_cli("accuracy", *common, *kind.cli_sources(data, "train"), cwd=work).stdout
    )
    before = parse_pure_json_records(
        dffml_cli("predict", "all", *common, *kind.cli_sources(data, "test"), cwd=work).stdout
    )
    check_stored_model(asyncio.run(dffml_archive.inspect(archive)).manifest.model, name)

    elsewhere = tmp_path / "elsewhere" / "deeper"
    moved = elsewhere / f"renamed{ext}"
    moved_bytes = move_the_archive(archive, moved)
    shutil.rmtree(str(work))
    if root is not data:
        shutil.rmtree(str(root))
    after = parse_pure_json_records(
        dffml_cli("predict", "all", "-model", label, "-model-location", moved,
                  *kind.cli_sources(data, "test"), cwd=elsewhere).stdout
    )

    assert same(after, before), f"{name}{ext}: predictions changed after the move"
    kind.check(kind.rows(data, "test"),
               [record["prediction"][kind.target]["value"] for record in before])
    confidences = [record["prediction"][kind.target]["confidence"] for record in before]
    if name == "spacyner":
        assert confidences == [accuracy] * len(confidences), "confidence is the accuracy"
    elif name != "tfdnnr":  # upstream predicts NaN confidence
        assert all(0.0 <= c <= 1.0 for c in confidences), confidences
    assert moved.read_bytes() == moved_bytes, "predicting must not rewrite the archive"
    assert tree(elsewhere) == [moved.name]


# -- 2. the async high-level API, load_model and dataflows ---------------------


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("name", list(BACKENDS))
async def test_api_train_accuracy_predict_then_move(name, ext, data, tmp_path):
    kind = KINDS[BACKENDS[name].kind]
    (tmp_path / "first").mkdir()
    location = tmp_path / "first" / f"model{ext}"
    model = api_model(name, data, location)
    train, test = kind.rows(data, "train"), kind.rows(data, "test")

    await dffml.train(model, *train)
    assert location.is_file()
    accuracy = await dffml.accuracy(model, *train)
    before = await keyed_predictions(model, test)
    kind.check(test, prediction_values(before, kind.target))

    moved = tmp_path / "second" / f"other{ext}"
    moved_bytes = move_the_archive(location, moved)

    loaded = await load_model(moved)  # no backend, features or options given
    assert type(loaded) is type(model)
    assert same(await keyed_predictions(loaded, test), before), f"{name}{ext}: load_model"
    by_label = Model.load(archive_label(name))(location=moved)
    assert same(await keyed_predictions(by_label, test), before), f"{name}{ext}: location only"
    # The operation predicts one record at a time: compare with that (a
    # batch may differ in the last float32 bits, e.g. for TensorFlow).
    one_by_one = [(await keyed_predictions(loaded, [row]))[0][1] for row in test]
    flowed = await predict_through_the_dataflow_operation(await load_model(moved), test)
    assert same(flowed, one_by_one), f"{name}{ext}: dataflow"
    assert moved.read_bytes() == moved_bytes, "predicting must not rewrite the archive"
    if name == "spacyner":
        assert all(p[kind.target]["confidence"] == accuracy for _k, p in before)


async def _trained_archive(name, data, path) -> list:
    """Train + accuracy into ``path``; the API's predictions for the test
    rows, one row at a time (as the dataflow operation predicts)."""
    kind = KINDS[BACKENDS[name].kind]
    model = api_model(name, data, path)
    await dffml.train(model, *kind.rows(data, "train"))
    await dffml.accuracy(model, *kind.rows(data, "train"))
    return [(await keyed_predictions(model, [row]))[0][1] for row in kind.rows(data, "test")]


@pytest.mark.parametrize("name", ["spacyner", "tfdnnc"])
async def test_dataflow_model_predict_through_the_cli(name, data, tmp_path):
    kind = KINDS[BACKENDS[name].kind]
    moved = tmp_path / "flow" / "model.tar.gz"
    moved.parent.mkdir()
    expected = await _trained_archive(name, data, moved)
    work = moved.parent
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, lambda: create_predict_dataflow_with_the_cli(
        archive_label(name), moved, work / "predict.json", cwd=work))
    row = kind.rows(data, "test")[0]
    ran = await loop.run_in_executor(None, lambda: run_dataflow_on_one_record_with_the_cli(
        "predict.json", row, cwd=work))
    assert same(ran, [{"model_predictions": expected[0]}]), ran


# -- 3. pytorch: trained on a GPU, opened without one --------------------------

@contextlib.contextmanager
def saved_as_if_on_a_gpu():
    """``torch.save`` tags every storage ``cuda:0`` inside this block: a file
    exactly like one saved from a GPU (torch.load without map_location then
    refuses it on a machine without CUDA)."""
    import torch

    entry = (1, lambda storage: "cuda:0", lambda obj, location: None)
    torch.serialization._package_registry.append(entry)
    torch.serialization._package_registry.sort(key=lambda item: item[0])
    try:
        yield
    finally:
        torch.serialization._package_registry.remove(entry)


@pytest.fixture
def upstream_trains_on_a_gpu(monkeypatch):
    """Upstream's ``train`` (which ends with ``torch.save``) saves as if the
    model were on a GPU; everything else saves normally."""
    from dffml_model_pytorch.pytorch_base import PyTorchModelContext

    original = PyTorchModelContext.train

    async def train(self, sources):
        with saved_as_if_on_a_gpu():
            return await original(self, sources)

    monkeypatch.setattr(PyTorchModelContext, "train", train)


async def test_pytorch_model_trained_on_a_gpu_opens_on_the_cpu(data, tmp_path, upstream_trains_on_a_gpu):
    import torch
    from dffml_archive.backends.pytorch import STATE_FILE, stored_devices

    if torch.cuda.is_available():
        pytest.fail("this test simulates a machine without a GPU; run it on one")
    kind = KINDS["images"]
    test = kind.rows(data, "test")

    # 1. Trained "on a GPU" into an archive: the archive holds CPU storages.
    location = tmp_path / "gpu.tar.gz"
    model = api_model("pytorchnet", data, location)
    await dffml.train(model, *kind.rows(data, "train"))
    extracted = tmp_path / "extracted"
    await dffml_archive.extract(location, extracted)
    assert stored_devices(extracted / STATE_FILE) == {"cpu"}
    torch.load(str(extracted / STATE_FILE))  # even upstream's bare load works
    before = await keyed_predictions(await load_model(location), test)

    # 2. A directory location holding a really GPU-tagged model.pt (as
    # upstream leaves it after enableGPU training): upstream's bare
    # torch.load fails here, ours maps it to the CPU.
    gpu_dir = tmp_path / "gpu-dir"
    gpu_dir.mkdir()
    with saved_as_if_on_a_gpu():
        torch.save(torch.load(str(extracted / STATE_FILE)), str(gpu_dir / STATE_FILE))
    assert stored_devices(gpu_dir / STATE_FILE) == {"cuda:0"}
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(str(gpu_dir / STATE_FILE))
    options = KINDS["images"].api_options(data)
    options.update(network=_network(data))
    from_dir = Model.load("pytorchnet_archive")(location=gpu_dir, **options)
    assert same(await keyed_predictions(from_dir, test), before)


async def test_pytorch_default_loss_works_from_python(data, tmp_path):
    # Upstream's default loss is a class, and upstream calls .function on
    # it: from Python (not the CLI) training fails.  Ours instantiates it.
    from dffml_model_pytorch.pytorch_net import PyTorchNeuralNetwork

    kind = KINDS["images"]
    options = dict(kind.api_options(data), network=_network(data))
    upstream = PyTorchNeuralNetwork(directory=tmp_path / "upstream", **options)
    with pytest.raises(AttributeError, match="function"):
        await dffml.train(upstream, *kind.rows(data, "train"))
    model = api_model("pytorchnet", data, tmp_path / "ours.zip")
    await dffml.train(model, *kind.rows(data, "train"))
    stored = (await dffml_archive.inspect(tmp_path / "ours.zip")).manifest.model["config"]
    assert stored["loss"]["plugin"] == "crossentropyloss"
    assert stored["network"]["model1"] == NETWORK["model1"]


# -- 4. tensorflow: checkpoint index with absolute paths -----------------------


async def test_tensorflow_checkpoint_index_with_absolute_paths_survives_a_move(data, tmp_path):
    import tensorflow as tf
    from dffml_archive.backends.tensorflow import relative_checkpoint_index

    kind = KINDS["classes"]
    first = tmp_path / "first"
    first.mkdir()
    model = api_model("tfdnnc", data, first)  # a directory location
    await dffml.train(model, *kind.rows(data, "train"))
    before = await keyed_predictions(model, kind.rows(data, "test"))
    index = first / "DNNModel" / "checkpoint"
    relative = index.read_text()
    assert "/" not in relative, relative
    # What other TensorFlow versions write: absolute paths.
    absolute = "".join(
        line.replace(': "', f': "{first / "DNNModel"}/') for line in relative.splitlines(True)
    )
    index.write_text(absolute)
    second = tmp_path / "second"
    shutil.move(str(first), str(second))
    # Without the fix TensorFlow finds no checkpoint and would predict from
    # freshly initialised weights.
    assert tf.train.latest_checkpoint(str(second / "DNNModel")) is None
    after = await keyed_predictions(api_model("tfdnnc", data, second), kind.rows(data, "test"))
    assert same(after, before)
    assert (second / "DNNModel" / "checkpoint").read_text() == relative
    assert not relative_checkpoint_index(second / "DNNModel" / "checkpoint"), "idempotent"


async def test_tensorflow_predictions_leave_no_graph_behind(data, tmp_path):
    # DFFML's predict operation reads one record and leaves the iterator;
    # upstream's Estimator generator would stay suspended holding its
    # finalized graph as this thread's default graph.
    import tensorflow as tf

    location = tmp_path / "model.zip"
    await _trained_archive("tfdnnc", data, location)
    rows = KINDS["classes"].rows(data, "test")
    await predict_through_the_dataflow_operation(await load_model(location), rows)
    import gc

    gc.collect()
    assert not tf.compat.v1.get_default_graph().finalized
    layer = tf.keras.layers.Dense(1)
    assert layer(tf.zeros([1, 2])).shape == (1, 1), "TensorFlow 2 code still works here"


# -- 5. tensorflow_hub: layout independent of model_path -----------------------


async def test_text_classifier_archive_layout_and_refusals(data, tmp_path):
    from dffml_archive.backends.tensorflow_hub import CANONICAL

    kind = KINDS["text"]
    location = tmp_path / "text.tar.gz"
    embedding = shutil.copytree(str(data / "embedding"), str(tmp_path / "embedding"))
    model = api_model("text_classifier", data, location)
    model.config.model_path = embedding
    await dffml.train(model, *kind.rows(data, "train"))
    shutil.rmtree(embedding)
    info = await dffml_archive.inspect(location)
    top = {member.path.split("/")[0] for member in info.manifest.members}
    assert top == {CANONICAL}, "no directory named by a hash of model_path"
    assert info.manifest.model["config"]["model_path"] == embedding
    archive_bytes = location.read_bytes()
    await keyed_predictions(await load_model(location), kind.rows(data, "test"))
    assert location.read_bytes() == archive_bytes

    # A plain directory location that does not exist yet works too.
    directory = tmp_path / "plain" / "model"
    plain = api_model("text_classifier", data, directory)
    await dffml.train(plain, *kind.rows(data, "train"))
    assert tree(directory)[0] == CANONICAL
    from_dir = await keyed_predictions(api_model("text_classifier", data, directory),
                                     kind.rows(data, "test"))
    kind.check(kind.rows(data, "test"), prediction_values(from_dir, kind.target))

    refused = Model.load("text_classifier_archive")(
        location=tmp_path / "layers.zip", add_layers=True,
        layers=["Dense(units=2, activation='softmax')"], **kind.api_options(data))
    with pytest.raises(ArchiveError, match="add_layers"):
        await dffml.train(refused, *kind.rows(data, "train"))
    assert not (tmp_path / "layers.zip").exists()


# -- 6. spacy: our own backend --------------------------------------------------


def _fake_installed_pipeline(root: pathlib.Path, nlp) -> str:
    """An installed spaCy pipeline package (what ``pip install`` of a
    ``spacy package`` leaves): a module with ``load()`` and its dist-info."""
    name = "dffml_archive_test_pipeline"
    package = root / name
    (package / "data").mkdir(parents=True)
    nlp.to_disk(package / "data")
    (package / "__init__.py").write_text(
        "import pathlib, spacy\n"
        "def load(**overrides):\n"
        "    return spacy.load(pathlib.Path(__file__).parent / 'data', **overrides)\n"
    )
    info = root / f"{name}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0.0\n")
    return name


async def test_spacyner_starts_from_an_installed_pipeline_package(data, tmp_path, monkeypatch):
    import importlib

    import spacy

    kind = KINDS["ner"]
    base = spacy.blank("en")
    base.add_pipe("sentencizer")  # a component ours must leave alone
    name = _fake_installed_pipeline(tmp_path / "site", base)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    assert spacy.util.is_package(name)
    location = tmp_path / "from-package.zip"
    model = Model.load("spacyner_archive")(location=location, model_name_or_path=name, n_iter=10)
    await dffml.train(model, *kind.rows(data, "train"))
    before = await keyed_predictions(model, kind.rows(data, "test"))
    # The archive holds the whole pipeline: the package is not needed now.
    monkeypatch.delitem(sys.modules, name, raising=False)
    shutil.rmtree(str(tmp_path / "site"))
    importlib.invalidate_caches()
    loaded = await load_model(location)
    assert loaded.config.model_name_or_path == name
    assert same(await keyed_predictions(loaded, kind.rows(data, "test")), before)
    extracted = tmp_path / "extracted"
    await dffml_archive.extract(location, extracted)
    assert spacy.load(extracted / "pipeline").pipe_names == ["sentencizer", "ner"]

    # A pipeline directory that has an ner already: training resumes it.
    resumed = Model.load("spacyner_archive")(
        location=tmp_path / "resumed.tar.xz",
        model_name_or_path=str(extracted / "pipeline"), n_iter=5)
    await dffml.train(resumed, *kind.rows(data, "train"))
    kind.check(kind.rows(data, "test"),
               prediction_values(await keyed_predictions(resumed, kind.rows(data, "test")), "Tag"))


async def test_spacyner_never_downloads_an_unknown_pipeline(tmp_path):
    model = Model.load("spacyner_archive")(location=tmp_path / "m.zip",
                                           model_name_or_path="en_core_web_sm")
    with pytest.raises(ValueError, match="never downloaded"):
        await dffml.train(model, {"sentence": "Ada lives in Paris.", "entities": [[13, 18, "LOC"]]})
    assert not (tmp_path / "m.zip").exists()


async def test_spacyner_confidence_and_entity_formats(tmp_path):
    # Entities as (start, end, label) lists, {start, end, tag} dicts (the
    # format upstream's example parser made) or JSON text (a CSV column).
    rows = [
        {"sentence": s, "entities": ents if i % 3 == 0 else
         [{"start": a, "end": b, "tag": l} for a, b, l in ents] if i % 3 == 1 else
         json.dumps(ents)}
        for i, (s, ents) in enumerate(NER_TRAIN)
    ]
    model = Model.load("spacyner_archive")(location=tmp_path / "m.tar.gz", n_iter=15)
    await dffml.train(model, *rows)
    # After training alone: F1 on the training records.
    trained = await keyed_predictions(model, [{"sentence": NER_TEST[0]}])
    confidence = trained[0][1]["Tag"]["confidence"]
    assert 0.0 <= confidence <= 1.0
    # After accuracy: that F1, stored in the archive.
    score = await dffml.accuracy(model, {"sentence": "Ada Lovelace saw Japan.",
                                          "entities": [[0, 12, "PERSON"], [17, 22, "LOC"]]})
    loaded = await load_model(tmp_path / "m.tar.gz")
    again = await keyed_predictions(loaded, [{"sentence": NER_TEST[0]}])
    assert again[0][1]["Tag"]["confidence"] == score
    assert again[0][1]["Tag"]["value"] == trained[0][1]["Tag"]["value"]


# -- 7. the documentation examples, run for real -------------------------------

#: Each example -> the archives it leaves (relative to its directory) -> entry point.
DOC_EXAMPLES = {
    "pytorch_cli.sh": {"shipped/pictures.tar.gz": "pytorchnet_archive"},
    "pytorch_python.py": {"resnet.zip": "resnet18_archive"},
    "tensorflow_cli.sh": {"shipped/flowers.tar.xz": "tfdnnc_archive"},
    "tensorflow_python.py": {"line.tar.gz": "tfdnnr_archive"},
    "tensorflow_hub_cli.sh": {"shipped/reviews.zip": "text_classifier_archive"},
    "tensorflow_hub_python.py": {"reviews.tar.gz": "text_classifier_archive"},
    "spacy_cli.sh": {"shipped/ner.zip": "spacyner_archive"},
    "spacy_python.py": {"ner.tar.gz": "spacyner_archive"},
}
DOC_PAGES = ["pytorch", "tensorflow", "tensorflow_hub", "spacy"]
_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d+(?:[eE][-+]?\d+)?|\bNaN\b")


def normalized(text: str) -> str:
    """Output without what training does not reproduce exactly (no seed
    reaches TensorFlow's or PyTorch's initialisation through the CLI):
    timestamps and every decimal number.  Labels, entities, keys and the
    shape of the output must be as documented."""
    return _FLOAT.sub("<float>", without_timestamps(text))


def test_every_example_exists_with_its_output_and_is_on_its_page():
    for name in DOC_EXAMPLES:
        script = EXAMPLES / name
        assert script.is_file() and script.with_suffix(".out").is_file(), script
    for page in DOC_PAGES:
        included = examples_included_by_page(page)
        for suffix in ("_cli.sh", "_cli.out", "_python.py", "_python.out"):
            assert f"{page}{suffix}" in included, f"{page}.rst does not include {page}{suffix}"


@pytest.mark.parametrize("name", sorted(DOC_EXAMPLES))
def test_documented_example_prints_its_documented_output(name, tmp_path):
    check_example_prints_its_output_and_leaves_its_archives(
        name, tmp_path, DOC_EXAMPLES[name], normalized, timeout=CLI_TIMEOUT * 2)
