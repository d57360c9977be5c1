"""The experiment runner: sets of model versions (hyperparameter grids)
trained into archives, scored, compared (``dffml service experiments``).

::

    results = await run_experiments("grid.yaml", execute=True, jobs=2)
    best = [result for result in results if result.best]

See docs/experiments.rst for the definition format.
"""
import importlib

# Loaded on first use: ``python -m dffml_archive --help`` builds our parser
# and must not import YAML, Dask or dffml to do it.
_LAZY_MODULES = {
    "._definition": ("Definition", "Experiment", "Version", "Source", "load_definition"),
    "._runner": ("Result", "run_experiments", "format_summary"),
    "._context": ("ComputeContext", "visible_gpus"),
    "._executors": ("Executor", "LocalExecutor", "DaskExecutor"),
    "._lists": ("Lists",),
    "._state": ("Outputs",),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}

__all__ = list(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dffml_archive.experiments' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
