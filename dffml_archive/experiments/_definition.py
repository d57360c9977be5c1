"""The experiment definition file: YAML read into plain objects, every
mistake reported with the file, the line and the key (``versions[2].config``).

The format (docs/experiments.rst has a complete example)::

    repository: {root: DIR, name: NAME, tag_best: TAG}     # optional
    experiments:
      - name: salary                    # [A-Za-z0-9._-]
        model: slr_archive              # a ``-model`` name (an *_archive model)
        order: 1                        # optional: run order (default: position)
        goal: max                       # or min: which score is best
        sources: {train: train.csv, accuracy: test.csv}
        config: {features: [x:float:1], predict: y:float:1}   # -model-KEY VALUE
        context: {threads: 1, gpus: 0, env: {}, tensorflow: {}, pytorch: {}}
        versions:
          - {name: fast, order: 1, suffix: -e10, config: {epochs: 10}, context: {}}
"""
import dataclasses
import hashlib
import json
import os
import pathlib
import re
from typing import Any, Dict, List, Optional, Tuple

from ..errors import DefinitionError
from ._context import ComputeContext, context_from

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_SUFFIX = re.compile(r"[A-Za-z0-9._-]{0,100}\Z")
#: dffml sources a file name's extension picks.
_SOURCE_BY_EXTENSION = {".csv": "csv", ".json": "json"}


@dataclasses.dataclass(frozen=True)
class Source:
    """A dffml source: ``-sources s=KIND -source-KEY VALUE ...``."""

    kind: str
    options: Dict[str, Any]

    def cli_arguments(self) -> List[str]:
        arguments = ["-sources", f"s={self.kind}"]
        for key, value in self.options.items():
            arguments += option_arguments(f"-source-{key}", value)
        return arguments

    def data_files(self) -> List[str]:
        name = self.options.get("filename")
        return [name] if isinstance(name, str) else []


@dataclasses.dataclass(frozen=True)
class Version:
    experiment: "Experiment" = dataclasses.field(repr=False, compare=False)
    name: str = ""
    order: float = 0.0
    config: Dict[str, Any] = None  # the effective config: experiment's, then version's
    suffix: str = ""
    context: ComputeContext = None

    @property
    def label(self) -> str:
        return f"{self.experiment.name}/{self.name}"

    def model_arguments(self) -> List[str]:
        arguments = ["-model", self.experiment.model]
        for key, value in self.config.items():
            arguments += option_arguments(f"-model-{key}", value)
        return arguments

    def key(self) -> str:
        """What decides whether an earlier run already did this version:
        the model, its effective config and context, and the data (by
        content, so an edited CSV trains again)."""
        experiment = self.experiment
        described = {
            "model": experiment.model, "config": self.config, "suffix": self.suffix,
            "context": self.context.describe(), "scorer": experiment.scorer,
            "sources": {
                role: {"kind": source.kind, "options": source.options,
                       "data": [_file_digest(name) for name in source.data_files()]}
                for role, source in experiment.sources.items()
            },
        }
        text = json.dumps(described, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    model: str
    order: float
    goal: str  # "max" or "min"
    scorer: Optional[str]
    sources: Dict[str, Source]  # "train", "accuracy"
    versions: Tuple[Version, ...] = ()


@dataclasses.dataclass(frozen=True)
class Repository:
    root: Optional[str]
    name: Optional[str]  # None: each experiment's name
    tag_best: Optional[str]


@dataclasses.dataclass(frozen=True)
class Definition:
    path: pathlib.Path  # absolute
    experiments: Tuple[Experiment, ...]
    repository: Optional[Repository]

    @property
    def directory(self) -> pathlib.Path:
        return self.path.parent

    def versions(self) -> List[Version]:
        """Every version, in run order: experiments by order, then versions."""
        return [version for experiment in self.experiments for version in experiment.versions]


def option_arguments(option: str, value) -> List[str]:
    """A config value as dffml command-line arguments (a list repeats the
    values after one option; ``true`` is a bare flag, ``false`` nothing)."""
    if value is True:
        return [option]
    if value is False or value is None:
        return []
    if isinstance(value, list):
        return [option, *(_scalar(item) for item in value)]
    return [option, _scalar(value)]


def _scalar(value) -> str:
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _file_digest(name: str) -> str:
    try:
        with open(name, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return "missing"


# -- reading ------------------------------------------------------------------------


def load_definition(path) -> Definition:
    """Read and check the definition at ``path``; raise DefinitionError."""
    import yaml

    path = pathlib.Path(os.path.abspath(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DefinitionError(path, f"cannot read the definition ({error})",
                              hint="give the path of a YAML experiment definition") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise DefinitionError(path, f"{where}not valid YAML ({problem})") from None
    return _Reader(path).definition(root)


class _Reader:
    """Walks the composed YAML nodes (they know their line) into objects."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def fail(self, node, key: str, reason: str, hint: Optional[str] = None):
        line = node.start_mark.line + 1 if node is not None else 1
        raise DefinitionError(self.path, f"line {line}: {key}: {reason}", hint=hint)

    def mapping(self, node, key: str, allowed, required=()) -> Dict[str, Any]:
        """A mapping's values as nodes, keys checked."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            self.fail(node, key, "must be a mapping (KEY: VALUE lines)")
        found = {}
        for key_node, value_node in node.value:
            name = key_node.value
            where = f"{key}.{name}" if key else str(name)
            if not isinstance(key_node, yaml.ScalarNode) or name not in allowed:
                self.fail(key_node, where, "unknown key",
                          hint="known keys: " + ", ".join(sorted(allowed)))
            if name in found:
                self.fail(key_node, where, "given twice")
            found[name] = value_node
        for name in required:
            if name not in found:
                self.fail(node, f"{key}.{name}" if key else name, "missing (required)")
        return found

    def value(self, node, key: str, expected=None):
        """A node as plain Python data (checked against ``expected`` types)."""
        import yaml

        value = yaml.SafeLoader(" ").construct_object(node, deep=True)
        if expected is not None and (not isinstance(value, expected)
                                     or isinstance(value, bool) and bool not in expected):
            names = " or ".join(kind.__name__ for kind in expected)
            self.fail(node, key, f"must be a {names}, not {value!r}")
        return value

    def name(self, node, key: str) -> str:
        value = self.value(node, key, (str,))
        if not _NAME.match(value):
            self.fail(node, key, f"{value!r} is not a name",
                      hint="letters, digits, '.', '_' and '-', at most 100")
        return value

    def config(self, node, key: str) -> Dict[str, Any]:
        config = self.value(node, key, (dict,)) if node is not None else {}
        for option in config:
            if not isinstance(option, str) or not re.match(r"[A-Za-z][A-Za-z0-9_-]*\Z", option):
                self.fail(node, f"{key}.{option}", "is not a model option name",
                          hint="the part after -model- on the dffml command line")
        return config

    def definition(self, root) -> Definition:
        if root is None:
            self.fail(None, "experiments", "the file is empty")
        top = self.mapping(root, "", {"experiments", "repository"}, required=("experiments",))
        import yaml

        if not isinstance(top["experiments"], yaml.SequenceNode) or not top["experiments"].value:
            self.fail(top["experiments"], "experiments", "must be a non-empty list")
        experiments, names = [], set()
        for index, node in enumerate(top["experiments"].value):
            experiment = self.experiment(node, f"experiments[{index}]", index)
            if experiment.name in names:
                self.fail(node, f"experiments[{index}].name", f"{experiment.name!r} is used twice")
            names.add(experiment.name)
            experiments.append(experiment)
        experiments.sort(key=lambda experiment: experiment.order)
        repository = self.repository(top["repository"]) if "repository" in top else None
        return Definition(self.path, tuple(experiments), repository)

    def repository(self, node) -> Repository:
        found = self.mapping(node, "repository", {"root", "name", "tag_best"})
        root = self.value(found["root"], "repository.root", (str,)) if "root" in found else None
        if root is not None:
            root = str(self.path.parent / os.path.expanduser(root))
        name = self.value(found["name"], "repository.name", (str,)) if "name" in found else None
        tag = self.value(found["tag_best"], "repository.tag_best", (str,)) \
            if "tag_best" in found else None
        return Repository(root, name, tag)

    def order(self, found, key: str, default: float) -> float:
        if "order" not in found:
            return default
        return float(self.value(found["order"], f"{key}.order", (int, float)))

    def experiment(self, node, key: str, index: int) -> Experiment:
        found = self.mapping(
            node, key,
            {"name", "model", "order", "goal", "scorer", "sources", "config", "context",
             "versions"},
            required=("name", "model", "sources", "versions"),
        )
        name = self.name(found["name"], f"{key}.name")
        model = self.value(found["model"], f"{key}.model", (str,))
        if not model.endswith("_archive"):
            self.fail(found["model"], f"{key}.model", f"{model!r} is not a model of dffml-archive",
                      hint="use an *_archive model, e.g. slr_archive or scikitlr_archive")
        goal = self.value(found["goal"], f"{key}.goal", (str,)) if "goal" in found else "max"
        if goal not in ("max", "min"):
            self.fail(found["goal"], f"{key}.goal", f"{goal!r} is neither max nor min")
        scorer = self.value(found["scorer"], f"{key}.scorer", (str,)) \
            if "scorer" in found else None
        experiment = Experiment(
            name=name, model=model, order=self.order(found, key, index), goal=goal,
            scorer=scorer, sources=self.sources(found["sources"], f"{key}.sources"),
        )
        shared = self.config(found.get("config"), f"{key}.config")
        context = context_from(self, found.get("context"), f"{key}.context")
        versions = self.versions(found["versions"], f"{key}.versions", experiment, shared,
                                 context)
        object.__setattr__(experiment, "versions", versions)
        return experiment

    def sources(self, node, key: str) -> Dict[str, Source]:
        found = self.mapping(node, key, {"train", "accuracy"}, required=("train",))
        sources = {role: self.source(value, f"{key}.{role}") for role, value in found.items()}
        sources.setdefault("accuracy", sources["train"])
        return sources

    def source(self, node, key: str) -> Source:
        value = self.value(node, key, (str, dict))
        if isinstance(value, str):
            kind = _SOURCE_BY_EXTENSION.get(os.path.splitext(value)[1].lower())
            if kind is None:
                self.fail(node, key, f"cannot tell the source kind of {value!r}",
                          hint="name a .csv or .json file, or give {source: KIND, filename: ...}")
            value = {"source": kind, "filename": value}
        if not isinstance(value.get("source"), str):
            self.fail(node, f"{key}.source", "missing (the dffml source, e.g. csv)")
        options = {name: item for name, item in value.items() if name != "source"}
        if isinstance(options.get("filename"), str):
            options["filename"] = str(self.path.parent / os.path.expanduser(options["filename"]))
        return Source(value["source"], options)

    def versions(self, node, key, experiment, shared, context) -> Tuple[Version, ...]:
        import yaml

        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.fail(node, key, "must be a non-empty list of versions")
        versions, names = [], set()
        for index, item in enumerate(node.value):
            where = f"{key}[{index}]"
            found = self.mapping(item, where, {"name", "order", "config", "suffix", "context"},
                                 required=("name",))
            name = self.name(found["name"], f"{where}.name")
            if name in names:
                self.fail(found["name"], f"{where}.name", f"{name!r} is used twice")
            names.add(name)
            suffix = self.value(found["suffix"], f"{where}.suffix", (str,)) \
                if "suffix" in found else ""
            if not _SUFFIX.match(suffix):
                self.fail(found["suffix"], f"{where}.suffix", f"{suffix!r} is not a suffix",
                          hint="letters, digits, '.', '_' and '-'")
            versions.append(Version(
                experiment=experiment, name=name, order=self.order(found, where, index),
                config={**shared, **self.config(found.get("config"), f"{where}.config")},
                suffix=suffix,
                context=context.merged(context_from(self, found.get("context"),
                                                    f"{where}.context")),
            ))
        versions.sort(key=lambda version: version.order)
        return tuple(versions)
