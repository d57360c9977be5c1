"""Compute contexts: what a version's process may use (CPU threads, GPUs,
environment, framework settings), checked before it trains.

A version always trains in a process of its own, so everything here is
said through that process's environment, set before any framework is
imported: ``CUDA_VISIBLE_DEVICES`` (``gpus: 0`` hides every GPU), the
thread-count variables of OpenMP/MKL/OpenBLAS/TensorFlow/PyTorch,
``TF_FORCE_GPU_ALLOW_GROWTH`` for TensorFlow's memory growth.
"""
import dataclasses
import os
import shutil
import subprocess
from typing import Any, Dict, List, Optional

from ..errors import ComputeContextError

#: Variables that bound a process's compute threads, one per library.
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
)
#: Which framework settings are understood.
_FRAMEWORK_KEYS = {"tensorflow": {"memory_growth"}, "pytorch": {"device"}}


@dataclasses.dataclass(frozen=True)
class ComputeContext:
    threads: Optional[int] = None  # None: whatever the process would get
    gpus: Optional[int] = None  # None: inherit; 0: hide every GPU
    env: Dict[str, str] = dataclasses.field(default_factory=dict)
    tensorflow: Dict[str, Any] = dataclasses.field(default_factory=dict)
    pytorch: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def merged(self, other: "ComputeContext") -> "ComputeContext":
        """``other`` (a version's) over this one (its experiment's)."""
        return ComputeContext(
            threads=other.threads if other.threads is not None else self.threads,
            gpus=other.gpus if other.gpus is not None else self.gpus,
            env={**self.env, **other.env},
            tensorflow={**self.tensorflow, **other.tensorflow},
            pytorch={**self.pytorch, **other.pytorch},
        )

    def describe(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def gpus_needed(self) -> int:
        """How many GPUs the version needs (a CUDA PyTorch device needs one)."""
        if self.gpus:
            return self.gpus
        device = str(self.pytorch.get("device", "cpu"))
        return 1 if device.startswith("cuda") and self.gpus is None else 0

    def check(self, label: str, gpu_ids: List[str], cpus: int) -> None:
        """Refuse, before training, what this machine cannot give."""
        if self.threads is not None and self.threads > cpus:
            raise ComputeContextError(
                label, f"asks for {self.threads} CPU threads; this machine has {cpus}",
                hint="lower context.threads",
            )
        device = str(self.pytorch.get("device", "cpu"))
        if device.startswith("cuda") and self.gpus == 0:
            raise ComputeContextError(
                label, f"pytorch device {device!r} with gpus: 0 (no GPU visible)",
                hint="use pytorch device cpu, or give the version a GPU",
            )
        needed = self.gpus_needed()
        if needed > len(gpu_ids):
            have = f"only {len(gpu_ids)}" if gpu_ids else "none"
            raise ComputeContextError(
                label, f"incompatible compute context: asks for {needed} GPU(s); this machine "
                f"has {have} visible",
                hint="run it on a machine or Dask worker with a GPU (--scheduler), or set "
                "context.gpus to 0",
            )

    def environment(self, base: Dict[str, str], gpu_ids: Optional[List[str]]) -> Dict[str, str]:
        """The version's process environment: ``base`` with this context
        applied.  ``gpu_ids`` None: leave the GPUs as ``base`` has them."""
        env = dict(base)
        if self.threads is not None:
            env.update({name: str(self.threads) for name in _THREAD_VARIABLES})
        if self.gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""
        elif gpu_ids is not None and self.gpus_needed():
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids[:self.gpus_needed()])
        if "memory_growth" in self.tensorflow:
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true" if self.tensorflow["memory_growth"] \
                else "false"
        if str(self.pytorch.get("device", "")) == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""  # torch then has no CUDA device to pick
        env.update({str(key): str(value) for key, value in self.env.items()})
        return env

    def dask_resources(self) -> Dict[str, float]:
        """Dask worker resources that this context needs (``GPU``)."""
        needed = self.gpus_needed()
        return {"GPU": float(needed)} if needed else {}


def visible_gpus(environ=None) -> List[str]:
    """The GPU ids a process started here could use: ``nvidia-smi -L``'s
    GPUs, narrowed by CUDA_VISIBLE_DEVICES when that is set."""
    environ = os.environ if environ is None else environ
    found = []
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is not None:
        try:
            listed = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True,
                                    timeout=30)
            found = [str(index) for index, line in enumerate(
                line for line in listed.stdout.splitlines() if line.startswith("GPU "))]
        except (OSError, subprocess.SubprocessError):
            found = []
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    wanted = [item.strip() for item in visible.split(",") if item.strip()]
    if wanted and wanted[0] == "-1":
        return []
    return [item for item in wanted if item in found or not item.isdigit() and found]


def context_from(reader, node, key: str) -> ComputeContext:
    """A ``context:`` mapping of the definition (``reader`` reports errors)."""
    if node is None:
        return ComputeContext()
    found = reader.mapping(node, key, {"threads", "gpus", "env", *_FRAMEWORK_KEYS})
    values = {}
    for name in ("threads", "gpus"):
        if name in found:
            value = reader.value(found[name], f"{key}.{name}", (int,))
            if value < (1 if name == "threads" else 0):
                reader.fail(found[name], f"{key}.{name}", f"{value} is too small")
            values[name] = value
    if "env" in found:
        env = reader.value(found["env"], f"{key}.env", (dict,))
        values["env"] = {str(name): "" if value is None else str(value)
                         for name, value in env.items()}
    for framework, allowed in _FRAMEWORK_KEYS.items():
        if framework in found:
            settings = reader.mapping(found[framework], f"{key}.{framework}", allowed)
            values[framework] = {
                name: reader.value(value, f"{key}.{framework}.{name}") for name, value in
                settings.items()
            }
    device = str(values.get("pytorch", {}).get("device", "cpu"))
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        reader.fail(found["pytorch"], f"{key}.pytorch.device", f"{device!r} is not a device",
                    hint="cpu, cuda or cuda:N")
    return ComputeContext(**values)
