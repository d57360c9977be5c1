"""Staging hub downloads into DFFML model archives that work offline:
torchvision weights as ``resnet18_archive``, a spaCy pipeline package as
``spacyner_archive`` (both predict at once), a TF Hub text embedding as an
untrained ``text_classifier_archive`` that trains from the archive alone;
served by a real server on 127.0.0.1 (port 0).  Also TensorFlow Hub's own
cache (``TFHUB_CACHE_DIR``) as a source of verified copies."""
import asyncio
import hashlib
import pathlib
import shutil
import socket
import subprocess
import sys
import tarfile

import numpy
import pytest

from _e2e_helpers import CLI_TIMEOUT, DFFML, TEXT_NEGATIVE, TEXT_POSITIVE, TEXT_TEST
from _e2e_helpers import dffml_cli, parse_records, write_csv, write_embedding
from dffml import Feature, Features, Record, predict, train
from dffml_archive import inspect, load_model
from dffml_archive.errors import HubError, HubOfflineError
from dffml_archive.hub import StorageType, hub_for

CLASSES = [f"c{index:03d}" for index in range(1000)]  # resnet18's own head


@pytest.fixture(autouse=True)
def hub_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "modelhub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub-cache"))
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


# -- TensorFlow Hub ------------------------------------------------------------

def tfhub_tarball(tmp_path, name="module") -> bytes:
    """A TF Hub module in its compressed format: the SavedModel's files at
    the top of a tar.gz (write_embedding: a tiny text embedding)."""
    module = write_embedding(tmp_path / name)
    with tarfile.open(tmp_path / f"{name}.tar.gz", "w:gz") as tar:
        for path in sorted(module.rglob("*")):
            tar.add(path, arcname=path.relative_to(module).as_posix(), recursive=False)
    return (tmp_path / f"{name}.tar.gz").read_bytes()


def hub_cli(*args, env=None):
    done = subprocess.run([sys.executable, "-m", "dffml_archive", "hub", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    return done


def test_tfhub_module_staged_as_text_classifier_archive_trains_offline(server, tmp_path):
    """Stage, then move the archive away from everything (hub cache, module,
    server gone): it predicts nothing until trained, then trains and
    predicts from the archive alone, through the real dffml CLI."""
    server.files["/google/swivel/1.tar.gz"] = tfhub_tarball(tmp_path)
    staged = tmp_path / "staged.tar.gz"
    hub_cli("stage", f"tfhub:{server.url}/google/swivel/1.tar.gz", staged, "--option",
            "features=sentence:str:1", "predict=sentiment:int:1", "classifications=[0,1]",
            "clstype=int", "epochs=10")
    model_info = asyncio.run(inspect(staged)).manifest.model
    assert model_info["config"]["model_path"] == "archive:embedding"
    assert model_info["trained"] is False and model_info["entrypoint"] == "text_classifier_archive"
    server.close()
    shutil.rmtree(tmp_path / "modelhub")
    shutil.rmtree(tmp_path / "module")
    work = tmp_path / "elsewhere"
    work.mkdir()
    archive = work / "classifier.tar.gz"
    shutil.move(str(staged), str(archive))
    write_csv(work / "train.csv", [{"sentence": s, "sentiment": 1} for s in TEXT_POSITIVE]
              + [{"sentence": s, "sentiment": 0} for s in TEXT_NEGATIVE])
    write_csv(work / "test.csv", [{"sentence": s} for s in TEXT_TEST])
    common = ["-model", "text_classifier_archive", "-model-location", archive.name]
    untrained = subprocess.run([DFFML, "predict", "all", *common, "-sources", "f=csv",
                                "-source-filename", "test.csv"], cwd=str(work),
                               capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert untrained.returncode != 0 and "never trained" in untrained.stderr, untrained.stderr
    assert "Traceback" not in untrained.stderr

    dffml_cli("train", *common, "-sources", "f=csv", "-source-filename", "train.csv", cwd=work)
    trained = asyncio.run(inspect(archive)).manifest.model
    assert "trained" not in trained and trained["config"]["model_path"] == "archive:embedding"
    members = [m.path for m in asyncio.run(inspect(archive)).members]
    assert "embedding/saved_model.pb" in members
    assert "text_classifier/saved_model.pb" in members
    predicted = parse_records(dffml_cli("predict", "all", *common, "-sources", "f=csv",
                                        "-source-filename", "test.csv", cwd=work).stdout)
    assert {r["prediction"]["sentiment"]["value"] for r in predicted} <= {0, 1}
    assert len(predicted) == len(TEXT_TEST)


async def test_load_model_of_a_staged_tfhub_archive(server, tmp_path):
    server.files["/m/2.tar.gz"] = tfhub_tarball(tmp_path)
    source = f"tfhub:{server.url}/m/2.tar.gz"
    archive = tmp_path / "t.zip"
    await hub_for(source).stage_model(source, archive)  # options given later
    model = await load_model(archive, features=Features(Feature("sentence", str, 1)),
                             predict=Feature("sentiment", int, 1), classifications=[0, 1],
                             clstype=int, epochs=3)
    records = [Record(str(i), data={"features": {"sentence": s, "sentiment": 1}})
               for i, s in enumerate(TEXT_POSITIVE)] + \
              [Record(f"n{i}", data={"features": {"sentence": s, "sentiment": 0}})
               for i, s in enumerate(TEXT_NEGATIVE)]
    await train(model, *records)
    model = await load_model(archive)  # every option now from the archive
    results = [r async for r in predict(model, Record("x", data={"features": {
        "sentence": "good movie"}}), keep_record=True)]
    assert results[0].prediction("sentiment").value in (0, 1)


async def test_a_staged_tfhub_archive_in_the_repository_trains_as_its_next_version(
        server, tmp_path, monkeypatch):
    from dffml_archive.repository import Repository

    monkeypatch.setenv("DFFML_ARCHIVE_REPOSITORY", str(tmp_path / "repository"))
    server.files["/m/3.tar.gz"] = tfhub_tarball(tmp_path)
    source = f"tfhub:{server.url}/m/3.tar.gz"
    await hub_for(source).stage_model(
        source, tmp_path / "t.tar.gz", repository="reviews",
        features=Features(Feature("sentence", str, 1)), predict=Feature("sentiment", int, 1),
        classifications=[0, 1], clstype=int, epochs=3)
    records = [Record(s, data={"features": {"sentence": s, "sentiment": int(s in TEXT_POSITIVE)}})
               for s in TEXT_POSITIVE + TEXT_NEGATIVE]
    await train(await load_model("models:reviews"), *records)
    async with Repository() as store:
        assert [v["version"] for v in await (await store.get("reviews")).log()] == [2, 1]
    results = [r async for r in predict(await load_model("models:reviews"), Record(
        "x", data={"features": {"sentence": "good movie"}}), keep_record=True)]
    assert results[0].prediction("sentiment").value in (0, 1)


async def test_tfhub_stage_refuses_what_is_not_a_text_embedding(server, tmp_path):
    import tensorflow as tf

    server.files["/spacy.tar.gz"] = make_spacy_package(tmp_path)
    source = f"tfhub:{server.url}/spacy.tar.gz"
    with pytest.raises(HubError, match="no saved_model.pb"):
        await hub_for(source).stage_model(source, tmp_path / "a.tar.gz")

    class Numbers(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            return x * 2.0

    tf.saved_model.save(Numbers(), str(tmp_path / "numbers"))
    with tarfile.open(tmp_path / "numbers.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "numbers", arcname=".")
    server.files["/numbers.tar.gz"] = (tmp_path / "numbers.tar.gz").read_bytes()
    source = f"tfhub:{server.url}/numbers.tar.gz"
    with pytest.raises(HubError, match="not a text embedding"):
        await hub_for(source).stage_model(source, tmp_path / "b.tar.gz")
    with pytest.raises(HubError, match="sets model_path itself"):
        await hub_for(source).stage_model(source, tmp_path / "b.tar.gz", model_path="/x")
    assert not (tmp_path / "a.tar.gz").exists() and not (tmp_path / "b.tar.gz").exists()


def tfhub_cached_module(tmp_path, handle: str) -> pathlib.Path:
    """``handle`` as tensorflow_hub leaves it in TFHUB_CACHE_DIR: unpacked in
    ``<sha1 of the handle>/`` beside a descriptor naming the handle."""
    directory = tmp_path / "tfhub-cache" / hashlib.sha1(handle.encode()).hexdigest()
    write_embedding(directory)
    pathlib.Path(f"{directory}.descriptor.txt").write_text(
        f"Module: {handle}\nDownload Time: 2026-12-04 06:00:00\nDownloader Hostname: h (1)\n")
    return directory


async def test_a_module_in_tfhub_cache_is_checked_and_used_without_a_request(server, tmp_path):
    handle = f"{server.url}/google/nnlm/2.tar.gz"
    module = tfhub_cached_module(tmp_path, handle)
    hub = hub_for(f"tfhub:{handle}", offline=True)  # offline: no request is even possible
    path = await hub.download_model(f"tfhub:{handle}")
    assert server.requests == [] and path.is_file()
    (entry,) = hub.cache.list()
    assert entry.origin == str(module) and entry.sha256 == hashlib.sha256(
        path.read_bytes()).hexdigest()
    assert hub.cache.verify() == []
    assert f"(copied from {module})" in hub_cli("list").stdout
    unpacked = await hub.download_model(f"tfhub:{handle}", storage=StorageType.UNCOMPRESSED)
    assert sorted(p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*")) == \
        sorted(p.relative_to(module).as_posix() for p in module.rglob("*"))
    staged = await hub.stage_model(f"tfhub:{handle}", tmp_path / "s.tar.gz")
    assert staged.is_file() and server.requests == []


async def test_a_corrupt_module_in_tfhub_cache_is_ignored_and_downloaded(server, tmp_path):
    handle = f"{server.url}/google/nnlm/2.tar.gz"
    server.files["/google/nnlm/2.tar.gz"] = published = tfhub_tarball(tmp_path)
    module = tfhub_cached_module(tmp_path, handle)
    data = module / "variables" / "variables.data-00000-of-00001"
    corrupted = bytearray(data.read_bytes())
    corrupted[100] ^= 1
    data.write_bytes(bytes(corrupted))
    with pytest.warns(UserWarning, match="Checksum does not match"):
        path = await hub_for(f"tfhub:{handle}").download_model(f"tfhub:{handle}")
    assert path.read_bytes() == published and len(server.gets()) == 1


async def test_tfhub_cache_is_not_used_when_a_sha256_is_asked_for(server, tmp_path):
    """Its modules are unpacked: nothing there can prove a tarball's sha256."""
    handle = f"{server.url}/google/nnlm/2.tar.gz"
    server.files["/google/nnlm/2.tar.gz"] = published = tfhub_tarball(tmp_path)
    tfhub_cached_module(tmp_path, handle)
    path = await hub_for(f"tfhub:{handle}").download_model(
        f"tfhub:{handle}", sha256=hashlib.sha256(published).hexdigest())
    assert path.read_bytes() == published and len(server.gets()) == 1


async def test_a_tfhub_cache_directory_of_another_handle_is_not_taken(server, tmp_path):
    handle = f"{server.url}/google/nnlm/2.tar.gz"
    module = tfhub_cached_module(tmp_path, handle)
    pathlib.Path(f"{module}.descriptor.txt").write_text("Module: https://elsewhere/x\n")
    with pytest.raises(HubOfflineError):
        await hub_for(f"tfhub:{handle}", offline=True).download_model(f"tfhub:{handle}")
