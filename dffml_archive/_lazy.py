"""Package exports imported on first access (PEP 562), the one way every
package of ours keeps its ``import`` cheap: dffml imports our CLI service in
every ``dffml`` command, and most commands need a small part of us."""
import importlib
from typing import Callable, Dict, List, Tuple


def lazy_exports(package: dict, modules: Dict[str, Tuple[str, ...]]) -> Tuple[
        Callable, Callable, List[str]]:
    """``(__getattr__, __dir__, names)`` for the package whose globals are
    ``package``, exporting the names each of its ``modules`` (relative
    names, ``"._store"``) lists.  A name is imported on first access and
    then kept in the package's globals."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package["__name__"]), name)
        package[name] = value  # later lookups skip __getattr__
        return value

    def __dir__():
        return sorted(set(package) | set(where))

    return __getattr__, __dir__, list(where)
