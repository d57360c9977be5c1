"""Allow and deny lists: which versions a run may start, re-read before
each version starts, so that the queue can be changed while it runs.

Beside the definition ``grid.yaml``: ``grid.test.allow`` / ``grid.test.deny``
(test mode) and ``grid.run.allow`` / ``grid.run.deny`` (execution mode).
One pattern a line (``#`` starts a comment): ``EXPERIMENT/VERSION`` with
shell wildcards (``salary/*``, ``*/fast-*``); a pattern without ``/`` means
every version of that experiment.  No allow file (or one without patterns):
everything is allowed.  Deny wins over allow.
"""
import fnmatch
import pathlib
from typing import List, Optional, Tuple

from ..errors import DefinitionError


def list_paths(definition_path: pathlib.Path, mode: str) -> Tuple[pathlib.Path, pathlib.Path]:
    """(allow file, deny file) of ``mode`` ("test" or "run")."""
    stem = definition_path.parent / definition_path.stem
    return (stem.with_name(f"{stem.name}.{mode}.allow"),
            stem.with_name(f"{stem.name}.{mode}.deny"))


def read_patterns(path: pathlib.Path) -> Optional[List[str]]:
    """The patterns of ``path``; None when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise DefinitionError(path, f"cannot read the list ({error})",
                              hint="fix it or remove it") from None
    patterns = []
    for number, line in enumerate(text.splitlines(), 1):
        pattern = line.split("#", 1)[0].strip()
        if not pattern:
            continue
        if pattern.count("/") > 1 or " " in pattern:
            raise DefinitionError(path, f"line {number}: {pattern!r} is not a pattern",
                                  hint="EXPERIMENT or EXPERIMENT/VERSION, wildcards allowed")
        patterns.append(pattern if "/" in pattern else f"{pattern}/*")
    return patterns


class Lists:
    """The allow and deny lists of one mode, read again on each ``why_not``."""

    def __init__(self, definition_path: pathlib.Path, mode: str):
        self.allow_path, self.deny_path = list_paths(definition_path, mode)

    def why_not(self, label: str) -> Optional[str]:
        """None when ``label`` (EXPERIMENT/VERSION) may run, else why not."""
        allowed = read_patterns(self.allow_path)
        denied = read_patterns(self.deny_path) or []
        if any(fnmatch.fnmatchcase(label, pattern) for pattern in denied):
            return f"denied by {self.deny_path.name}"
        if allowed and not any(fnmatch.fnmatchcase(label, pattern) for pattern in allowed):
            return f"not in {self.allow_path.name}"
        return None
