"""Staging hub downloads into DFFML model archives that predict offline:
torchvision weights as ``resnet18_archive``, a spaCy pipeline package as
``spacyner_archive``; served by a real server on 127.0.0.1 (port 0)."""
import hashlib
import socket
import tarfile

import numpy
import pytest

from dffml import Feature, Features, Record, predict
from dffml_archive import load_model
from dffml_archive.errors import HubError
from dffml_archive.hub import hub_for

CLASSES = [f"c{index:03d}" for index in range(1000)]  # resnet18's own head


@pytest.fixture(autouse=True)
def hub_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "modelhub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("MODELHUB_OFFLINE", raising=False)


@pytest.fixture
def loopback_only(monkeypatch):
    """Any connection to another address fails the test."""
    real = socket.socket.connect

    def connect(sock, address):
        assert address[0] in ("127.0.0.1", "::1", "localhost") or isinstance(address, str), \
            f"network access to {address}"
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


async def test_torchvision_weights_staged_as_resnet18_archive(server, tmp_path, loopback_only):
    import torch
    import torchvision

    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), str(weights))
    data = weights.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    name = f"resnet18-{digest[:8]}.pth"
    server.files[f"/models/{name}"] = data
    archive = tmp_path / "resnet18.tar.gz"
    source = f"torch:{server.url}/models/{name}"
    staged = await hub_for(source).stage_model(
        source, archive, model="resnet18", features=Features(Feature("image", int, 192)),
        predict=Feature("label", str, 1), classifications=CLASSES, imageSize=32)
    assert staged == archive and len(server.gets()) == 1
    assert not (tmp_path / "torch-home").exists()  # the user's torch cache untouched
    model = await load_model(archive)
    image = numpy.random.RandomState(0).randint(0, 255, (8, 8, 3)).astype(numpy.uint8)
    results = [r async for r in predict(model, Record("x", data={"features": {"image": image}}),
                                       keep_record=True)]
    assert results[0].prediction("label").value in CLASSES
    assert not (tmp_path / "torch-home").exists() and len(server.requests) == 1


def make_spacy_package(tmp_path):
    import spacy

    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ner")
    ner.add_label("FRUIT")
    nlp.initialize()
    nlp.meta["name"] = "fruit"
    pipeline = tmp_path / "en_fruit-0.0.1" / "en_fruit" / "en_fruit-0.0.1"
    pipeline.parent.mkdir(parents=True)
    nlp.to_disk(pipeline)
    package = tmp_path / "en_fruit-0.0.1.tar.gz"
    with tarfile.open(package, "w:gz") as tar:
        tar.add(tmp_path / "en_fruit-0.0.1", arcname="en_fruit-0.0.1")
    return package.read_bytes()


async def test_spacy_package_staged_as_spacyner_archive(server, tmp_path, loopback_only):
    data = make_spacy_package(tmp_path)
    server.files["/pkg/en_fruit-0.0.1.tar.gz"] = data
    source = f"spacy:{server.url}/pkg/en_fruit-0.0.1.tar.gz"
    archive = tmp_path / "fruit.tar.gz"
    await hub_for(source).stage_model(source, archive, sha256=hashlib.sha256(data).hexdigest())
    model = await load_model(archive)
    assert model.config.model_name_or_path == "en"
    record = Record("s", data={"features": {"sentence": "I like apples"}})
    (result,) = [r async for r in predict(model, record, keep_record=True)]
    assert isinstance(result.prediction("Tag").value, list)


async def test_tfhub_module_staging_says_what_to_do(server, tmp_path):
    data = make_spacy_package(tmp_path)  # any tarball: staging refuses before using it
    server.files["/m/1.tar.gz"] = data
    source = f"tfhub:{server.url}/m/1.tar.gz"
    with pytest.raises(HubError, match="model_path"):
        await hub_for(source).stage_model(source, tmp_path / "t.tar.gz")


def test_cli_stage_with_a_new_head(server, tmp_path):
    import asyncio
    import json
    import subprocess
    import sys

    import torch
    import torchvision

    weights = tmp_path / "w.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), str(weights))
    data = weights.read_bytes()
    name = f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    server.files[f"/{name}"] = data
    layers = {"fc": {"layer_type": "Linear", "in_features": 512, "out_features": 2}}
    archive = tmp_path / "r.tar.gz"
    done = subprocess.run(
        [sys.executable, "-m", "dffml_archive", "hub", "stage", f"torch:{server.url}/{name}",
         str(archive), "--model", "resnet18", "--option", "features=image:int:192",
         "predict=label:str:1", "imageSize=32", "add_layers=true",
         f"layers={json.dumps(layers)}", 'classifications=["cat","dog"]'],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    model = asyncio.run(load_model(archive))
    assert model.config.classifications == ["cat", "dog"] and model.config.add_layers


def test_cli_stage_without_a_model_name_is_one_error_line(server, tmp_path):
    import subprocess
    import sys

    server.files["/resnet18-00000000.pth"] = b"x"
    done = subprocess.run(
        [sys.executable, "-m", "dffml_archive", "hub", "stage",
         f"torch:{server.url}/resnet18-00000000.pth", str(tmp_path / "r.tar.gz"),
         "--sha256", hashlib.sha256(b"x").hexdigest()],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: ") and "--model" in done.stderr
