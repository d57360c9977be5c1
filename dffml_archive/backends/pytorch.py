"""dffml-model-pytorch: ``pytorchnet`` and the 29 pretrained torchvision
networks (``resnet18`` ...), found from the plugin's entry points.

Quirks, and what we do about them:

* State is ``<dir>/model.pt``: the whole ``nn.Module`` pickled by
  ``torch.save`` and read back by ``torch.load`` *without* ``map_location``,
  so a model trained with ``enableGPU`` holds CUDA storages and cannot be
  opened on a machine without a GPU.  We store CPU storages only (after
  training, ``model.pt`` is re-saved mapped to the CPU when it holds
  anything else) and load with ``map_location`` set to the context's device
  (the CPU unless ``enableGPU`` and a GPU are both there), which also moves
  a CPU-stored model onto the GPU when ``enableGPU`` asks for it.
* The default ``loss`` is the *class* ``CrossEntropyLossFunction``, not an
  instance: upstream only works through the CLI (which instantiates
  defaults); from Python ``loss.function`` fails.  We instantiate it.
* ``network`` (pytorchnet) is a live ``nn.Module`` built from the
  ``-model-network`` dict (a JSON/YAML file: ``-model-network @net.json``);
  DFFML cannot export it, so the manifest stores that dict, rebuilt from
  the module.
* Pretrained networks download their weights into
  ``$TORCH_HOME/hub/checkpoints`` when *training* starts from scratch.
  ``model.pt`` holds the whole trained network, so predicting from an
  archive needs neither the weights nor the network definition.
"""
import copy
import os
import pathlib

import torch
from dffml_model_pytorch.pytorch_net import Network
from dffml_model_pytorch.utils.utils import PyTorchLoss

from dffml_archive.errors import ArchiveError
from dffml_archive.model import BackendAdapter, exported, value_from_json, wrap_distribution
from dffml_archive import atomic_replace
from dffml_archive.backends._table import distribution_and_extra

#: Where upstream keeps its state, relative to the model directory.
STATE_FILE = "model.pt"


class DeviceSafeContext:
    """Loads ``model.pt`` onto the context's own device (a mixin in front of
    upstream's context class, see ``BackendAdapter.context_mixin``)."""

    async def __aenter__(self):
        stored = self.model_path
        if not (stored and os.path.isfile(stored)):
            return await super().__aenter__()
        # Upstream's __aenter__ loads with a bare torch.load when the
        # file exists and otherwise asks createModel(), which returns
        # self._model when it is already set: load it here, mapped to
        # this context's device, and let upstream do the rest.
        self._model = torch.load(stored, map_location=self.device)
        self.model_path = stored + ".loaded-by-dffml-archive"
        try:
            return await super().__aenter__()
        finally:
            self.model_path = stored


def stored_devices(path) -> set:
    """The device tags of every storage in a ``torch.save`` file."""
    seen = set()

    def record(storage, location):
        seen.add(location)
        return storage

    torch.load(str(path), map_location=record)
    return seen


def save_on_cpu(path) -> bool:
    """Re-save ``path`` with CPU storages only; True if it held others."""
    if stored_devices(path) <= {"cpu"}:
        return False
    model = torch.load(str(path), map_location="cpu")
    with atomic_replace(path) as temp:
        torch.save(model, str(temp))
    return True


def network_spec(network) -> dict:
    """The ``-model-network`` dict an upstream ``Network`` was built from."""
    spec = copy.deepcopy(dict(network.models))
    spec["forward"] = copy.deepcopy(dict(network.feedforward))
    return spec


def _loss_instance(loss):
    return loss() if isinstance(loss, type) else loss


class PyTorchAdapter(BackendAdapter):
    distribution, extra = distribution_and_extra(__name__)

    context_mixin = DeviceSafeContext

    def after_enter(self, model, inner) -> None:
        inner.config.loss = _loss_instance(inner.config.loss)

    def before_exit(self, model, inner) -> None:
        state = pathlib.Path(inner.config.directory, STATE_FILE)
        if model.trained and state.is_file():
            save_on_cpu(state)

    def config_value_to_json(self, config_field, value):
        if isinstance(value, Network):
            return network_spec(value)
        if config_field.name == "loss" and value is not None:
            return exported(_loss_instance(value))
        return super().config_value_to_json(config_field, value)

    def config_value_from_json(self, config_field, value):
        if value is None:
            return None
        if config_field.type is Network and isinstance(value, dict):
            return Network(value)
        if config_field.name == "loss":
            return self._loss_from_json(value)
        return value_from_json(config_field, value)

    @staticmethod
    def _loss_from_json(value):
        if isinstance(value, dict) and "plugin" in value:
            return PyTorchLoss.load(value["plugin"])(**(value.get("config") or {}))
        if isinstance(value, str):
            # An exported class: its qualified name, e.g. CrossEntropyLossFunction.
            label = value[: -len("Function")].lower() if value.endswith("Function") else value
            return PyTorchLoss.load(label)()
        raise ArchiveError(None, f"cannot read the stored loss {value!r}")


ADAPTER = PyTorchAdapter()


UPSTREAM_NAMES = wrap_distribution("dffml-model-pytorch", ADAPTER, globals())
