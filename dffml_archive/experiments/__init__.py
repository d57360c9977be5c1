"""The experiment runner: sets of model versions (hyperparameter grids)
trained into archives, scored, compared (``dffml service experiments``).

::

    results = await run_experiments("grid.yaml", execute=True, jobs=2)
    best = [result for result in results if result.best]

See docs/experiments.rst for the definition format.
"""
from .._lazy import lazy_exports

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
__getattr__, __dir__, __all__ = lazy_exports(globals(), _LAZY_MODULES)
