"""Archive-capable DFFML models.

:func:`archive_model` turns any DFFML model class into one whose config has
``location`` (a directory or an archive path) instead of ``directory``.  It
is a factory rather than a mixin because upstream models build their
classes dynamically (scikit makes 36 of them in a loop) and we cannot edit
them: the factory wraps any class the same way, keeps the upstream class
untouched, and puts each backend's quirks in a small :class:`BackendAdapter`.

Life cycle: ``async with model`` enters the location (``archive_location``:
extracting the archive through the engine's API, or reusing the cache),
builds the upstream model with its directory set to the working copy and
enters it; leaving saves the upstream model, then repacks the archive only
if something changed, atomically, and never after an exception.
"""
import contextlib
import copy as _copy
import dataclasses
import inspect
import json
import math
import os
import pathlib
import pydoc
import shlex
import shutil
import sys
import typing
from typing import Any, Dict, Optional

from dffml import Feature, Features, Model, ModelContext, entrypoint, field, make_config
from dffml.model.model import ModelNotTrained
from dffml.util.data import export_dict

from ._atomic import is_writable
from ._config_paths import resolve_archive_paths, stored_archive_path
from ._dffml_cli import install_one_line_errors
from ._formats import is_archive_path
from .repository._names import is_repository_location
from ._location import archive_location
from ._manifest import created_by, _distribution_version
from ._model_info import LABEL_SUFFIX, archive_label, checked_model_info  # noqa: F401
from .errors import (  # noqa: F401 (ConfigMismatchError, WrongBackendError: re-exported)
    ArchiveError, ArchiveWriteError, ConfigMismatchError, ModelInfoError, WrongBackendError,
    shown,
)

install_one_line_errors()


class ModelArchiveNotFound(ArchiveError, ModelNotTrained):
    """The location holds no trained model (no archive yet, or ``retrain``
    without training): train first."""


class BackendAdapter:
    """A backend's own save/load quirks.  The default has none."""

    #: Distribution whose version is recorded in the manifest.
    distribution = "dffml"
    #: pip extra of dffml-archive that installs this backend.
    extra = None
    #: A mixin class put in front of the upstream model's context class, for
    #: this model instance only (the upstream class stays untouched): the
    #: place for a backend's fix of how its contexts load or predict.
    context_mixin: Optional[type] = None

    def after_enter(self, model: "ArchiveModel", inner: Model) -> None:
        """Called once the upstream model has loaded its state."""

    def before_exit(self, model: "ArchiveModel", inner: Model) -> None:
        """Called before the upstream model writes its state."""

    def config_value_from_json(self, config_field, value):
        """Turn a stored (exported) config value back into a typed one."""
        return value_from_json(config_field, value)

    def config_value_to_json(self, config_field, value):
        """What the manifest stores for a config value (strict JSON), and
        what given options are compared with; the inverse of
        :meth:`config_value_from_json`.  Override for values DFFML cannot
        export (e.g. live objects built from a config file)."""
        return exported(value)


def value_from_json(config_field, value):
    value = _decode_nonfinite(value)
    if value is None:
        return None
    if config_field.type is Features:
        if isinstance(value, list):  # stored in order (see config_value_to_json)
            return Features(*(Feature._fromdict(**feature) for feature in value))
        return Features._fromdict(**value)
    if config_field.type is Feature:
        return Feature._fromdict(**value)
    if config_field.type is pathlib.Path:
        return pathlib.Path(value)
    if isinstance(value, str) and (
        config_field.type in (type, typing.Type)
        or getattr(config_field.type, "__origin__", None) is type
    ):
        # DFFML exports a class as its qualified name ("str", "int").
        located = pydoc.locate(value)
        return located if inspect.isclass(located) else value
    return value


def exported(value) -> Any:
    """A config value as strict JSON.  Features become a list, so their order
    (the column order the backend trains on) survives the manifest's sorted
    keys; infinities and NaN (e.g. scikit's ``max_eps``) become
    ``{"float": "inf"}``."""
    if isinstance(value, Features):
        return [exported(feature) for feature in value]
    return _encode_nonfinite(export_dict(value=value)["value"])


def _encode_nonfinite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if isinstance(value, dict):
        return {key: _encode_nonfinite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_nonfinite(item) for item in value]
    return value


def _decode_nonfinite(value):
    if isinstance(value, dict):
        if set(value) == {"float"} and isinstance(value["float"], str):
            return float(value["float"])
        return {key: _decode_nonfinite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_nonfinite(item) for item in value]
    return value


def _same(left, right) -> bool:
    return json.dumps(left, sort_keys=True, default=str) == json.dumps(
        right, sort_keys=True, default=str
    )


class ArchiveModelContext(ModelContext):
    """Delegates to the upstream context; refuses to predict from nothing."""

    def __init__(self, parent: "ArchiveModel"):
        super().__init__(parent)
        self.inner = parent.inner()

    async def __aenter__(self):
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, exc_type, exc_value, traceback):
        await self.inner.__aexit__(exc_type, exc_value, traceback)

    async def train(self, sources):
        self.parent.require_writable_location()
        self.parent.trained = True
        return await self.inner.train(sources)

    async def accuracy(self, sources):
        self.parent.require_state("accuracy")
        return await self.inner.accuracy(sources)

    async def predict(self, sources):
        self.parent.require_state("predict")
        async for record in self.inner.predict(sources):
            yield record


class ArchiveModel(Model):
    """Base of every generated archive model class; see :func:`archive_model`."""

    INNER: type = None
    #: Where INNER can be imported from ("module:Name").
    INNER_PATH: str = None
    UPSTREAM: str = None
    ADAPTER = BackendAdapter()
    CONTEXT = ArchiveModelContext

    def __init__(self, config):
        super().__init__(config)
        self.inner: Optional[Model] = None
        self.working_copy = None
        self.trained = False
        self._depth = 0
        self._stack: Optional[contextlib.AsyncExitStack] = None

    # -- configuration -----------------------------------------------------

    @classmethod
    def inner_fields(cls):
        return [f for f in dataclasses.fields(cls.INNER.CONFIG) if f.name != "directory"]

    @classmethod
    def stored_values(cls, stored_config: Dict[str, Any], archive=None) -> Dict[str, Any]:
        """Typed config values from a manifest's exported config (checked by
        :func:`checked_model_info`); a value the upstream field cannot take
        is a :class:`ModelInfoError` naming it."""
        values = {}
        for config_field in cls.inner_fields():
            if config_field.name not in stored_config:
                continue
            stored = stored_config[config_field.name]
            try:
                values[config_field.name] = cls.ADAPTER.config_value_from_json(
                    config_field, stored
                )
            except Exception as error:  # any upstream parser's error: the value is bad
                raise ModelInfoError(
                    archive,
                    f"manifest field model.config.{config_field.name} cannot be read as "
                    f"the model's {config_field.name!r} option: {shown(error)}",
                    hint="the archive's model section was edited or written by another "
                    "version; retrain the model with -model-retrain",
                ) from None
        return values

    def _given_values(self) -> Dict[str, Any]:
        return {
            f.name: getattr(self.config, f.name)
            for f in self.inner_fields()
            if getattr(self.config, f.name) is not None
        }

    def _resolve_values(self, stored: Optional[dict]) -> Dict[str, Any]:
        given = self._given_values()
        if stored is None or self.config.retrain:
            return given
        self._check_backend(stored)
        stored_config = stored.get("config") or {}
        values = self.stored_values(stored_config, self.config.location)
        values.update(given)
        fields = {f.name: f for f in self.inner_fields()}
        given_json = {
            name: self.ADAPTER.config_value_to_json(fields[name], value)
            for name, value in self._as_configured(given, values).items()
        }
        differences = [
            f"{name}: archive has {json.dumps(stored_config[name], sort_keys=True)}, "
            f"given {json.dumps(value, sort_keys=True, default=str)}"
            for name, value in given_json.items()
            if name in stored_config and not _same(value, stored_config[name])
        ]
        if differences:
            raise ConfigMismatchError(
                self.config.location,
                "the given options differ from the configuration the model was "
                "trained with: " + "; ".join(differences),
                hint="omit them to use the archive's, or pass -model-retrain "
                "(retrain=True) to train anew with the new ones",
            )
        return values

    def _as_configured(self, given: Dict[str, Any], values: Dict[str, Any]) -> Dict[str, Any]:
        """The given values as the upstream config holds them: its
        ``__post_init__`` may convert them (e.g. ``classifications`` by
        ``clstype``: the CLI gives ``"0"``, the archive stores ``0``)."""
        try:
            probe = self.INNER.CONFIG(directory=None, **_copy.deepcopy(values))
        except Exception:  # incomplete or invalid: compare as given
            return given
        return {name: getattr(probe, name) for name in given}

    def _check_backend(self, stored: dict) -> None:
        """``stored`` was checked by :func:`checked_model_info` (names only)."""
        if stored["upstream"] != self.UPSTREAM:
            raise WrongBackendError(
                self.config.location,
                f"holds a {stored['upstream']!r} model (entry point {stored['entrypoint']!r}), "
                f"not {self.UPSTREAM!r} ({self.ENTRY_POINT_ORIG_LABEL!r})",
                hint=f"use -model {shlex.quote(stored['entrypoint'])} "
                "or dffml_archive.load_model()",
            )

    def _inner_config(self, directory, stored: Optional[dict]):
        values = self._resolve_values(stored)
        missing = [
            f.name
            for f in self.inner_fields()
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        options = ", ".join(f"-model-{name}" for name in missing)
        if missing and stored is None and self.is_archive and not pathlib.Path(
            self.config.location
        ).exists():
            raise ModelArchiveNotFound(
                self.config.location,
                "no model archive here: train first",
                hint=f"dffml train -model {self.ENTRY_POINT_ORIG_LABEL} "
                + " ".join(f"-model-{name} ..." for name in missing)
                + f" -model-location {shlex.quote(str(self.config.location))} -sources ...",
            )
        if missing:
            raise ArchiveError(
                self.config.location,
                "missing model options " + options,
                hint="give them, or point -model-location at a trained model archive",
            )
        values = resolve_archive_paths(values, directory, self.config.location)
        return self.INNER.CONFIG(directory=directory, **values)

    def model_info(self, inner: Model) -> dict:
        """What the manifest records: entry point, upstream name and class,
        pip extra, the full config (without the directory) and versions."""
        return self.describe(dataclasses.asdict(inner.config), inner.config.directory)

    @classmethod
    def describe(cls, values: Dict[str, Any], directory=None) -> dict:
        """:meth:`model_info` of the config ``values`` (those given: a
        staged, untrained model stores only its own); paths inside
        ``directory`` are stored as ``archive:PATH``."""
        fields = {f.name: f for f in cls.inner_fields()}
        unknown = sorted(set(values) - set(fields) - {"directory"})
        if unknown:
            raise ArchiveError(cls.ENTRY_POINT_ORIG_LABEL, "has no option "
                               + ", ".join(f"-model-{name}" for name in unknown))
        config = {
            name: cls.ADAPTER.config_value_to_json(
                fields[name], stored_archive_path(values[name], directory))
            for name in fields if name in values
        }
        versions = created_by()
        if cls.ADAPTER.distribution not in versions:  # each lookup scans sys.path
            versions[cls.ADAPTER.distribution] = _distribution_version(
                cls.ADAPTER.distribution
            )
        return {
            "entrypoint": cls.ENTRY_POINT_ORIG_LABEL,
            "upstream": cls.UPSTREAM,
            "class": cls.INNER_PATH,
            "extra": cls.ADAPTER.extra,
            "config": config,
            "versions": versions,
        }

    # -- life cycle --------------------------------------------------------

    @property
    def is_archive(self) -> bool:
        """True when ``location`` names an archive file or a repository
        location (``models:...``), not a directory."""
        if is_repository_location(self.config.location):
            return True
        return is_archive_path(self.config.location) and not pathlib.Path(
            self.config.location
        ).is_dir()

    def require_state(self, action: str) -> None:
        if not self.is_archive or self.trained:
            return
        if self.working_copy.manifest is None or self.config.retrain:
            raise ModelArchiveNotFound(
                self.config.location,
                f"no trained model archive here, so it cannot {action}",
                hint="train first: dffml train ... -model-location "
                + shlex.quote(str(self.config.location)),
            )
        if (self.working_copy.manifest.model or {}).get("trained") is False:
            raise ModelArchiveNotFound(
                self.config.location,
                f"holds a staged model that was never trained, so it cannot {action}",
                hint=f"train it first: dffml train -model {self.ENTRY_POINT_ORIG_LABEL} "
                f"-model-location {shlex.quote(str(self.config.location))} -sources ...",
            )

    def require_writable_location(self) -> None:
        """Refuse to train when the archive could not be saved afterwards:
        training may take days, and the archive is written when it ends."""
        if not self.is_archive:
            return
        if is_repository_location(self.config.location):
            from .repository._location import require_trainable

            require_trainable(self.config.location)
            return
        archive = pathlib.Path(os.path.realpath(self.config.location))
        directory = archive.parent
        while not directory.exists():
            directory = directory.parent
        elsewhere = "choose a -model-location in a directory you may write to"
        too_long = _too_long(archive, directory)
        if too_long:
            reason, hint = too_long, "choose a shorter -model-location"
        elif not directory.is_dir():
            reason, hint = f"{str(directory)!r} is a file, not a directory", elsewhere
        elif not os.access(directory, os.W_OK | os.X_OK):
            reason, hint = f"{str(directory)!r} is not writable", elsewhere
        elif archive.exists() and not is_writable(archive):
            reason, hint = "the archive is read-only", "chmod u+w it to allow replacing it"
        else:
            return
        raise ArchiveWriteError(
            self.config.location, f"the trained model could not be saved here: {reason}",
            hint=hint,
        )

    async def __aenter__(self):
        self._depth += 1
        if self._depth == 1:
            try:
                await self._open()
            except BaseException:
                self._depth -= 1
                raise
        return self

    async def _open(self):
        stack = contextlib.AsyncExitStack()
        copy = await stack.enter_async_context(archive_location(self.config.location))
        try:
            stored = None
            if self.config.retrain:
                _empty_directory(copy.directory)
            elif copy.manifest is not None and copy.manifest.model is not None:
                stored = checked_model_info(self.config.location, copy.manifest.model)
            self.inner = self.INNER(self._inner_config(copy.directory, stored))
            mixin = self.ADAPTER.context_mixin
            if mixin is not None:
                self.inner.CONTEXT = _with_mixin(type(self.inner).CONTEXT, mixin)
            await self.inner.__aenter__()
            try:
                self.ADAPTER.after_enter(self, self.inner)
            except BaseException:
                await self.inner.__aexit__(*sys.exc_info())
                raise
        except BaseException:
            await stack.__aexit__(*sys.exc_info())
            self.inner = None
            raise
        self.working_copy, self._stack = copy, stack

    async def __aexit__(self, exc_type, exc_value, traceback):
        self._depth -= 1
        if self._depth:
            return
        stack, copy, inner = self._stack, self.working_copy, self.inner
        self._stack = self.working_copy = self.inner = None
        try:
            self.ADAPTER.before_exit(self, inner)
            await inner.__aexit__(exc_type, exc_value, traceback)
        except BaseException:
            await stack.__aexit__(*sys.exc_info())
            raise
        if exc_type is None and copy.archive is not None:
            if self.trained:
                copy.model = self.model_info(inner)
            elif copy.manifest is None or self.config.retrain:
                copy.save = False  # nothing trained: leave the location as it was
            else:
                # predict, accuracy: the stored model information stays, and the
                # archive is rewritten only if the backend changed its files
                # (scikit stores the confidence accuracy measures).  The results
                # stand without that: an archive that cannot be written (a
                # read-only file or mount) is left as it was, with a warning.
                copy.best_effort = True
        await stack.__aexit__(exc_type, exc_value, traceback)

    def __call__(self) -> ModelContext:
        if self.inner is None:
            raise RuntimeError(
                f"enter the model before using it: async with model: "
                f"async with model() as mctx: ... ({self.config.location})"
            )
        return self.CONTEXT(self)


def _with_mixin(upstream_context: type, mixin: type) -> type:
    """``upstream_context`` with ``mixin`` in front, under the upstream's
    names (messages and logs name the class users know)."""
    return type(upstream_context.__name__, (mixin, upstream_context), {
        "__module__": upstream_context.__module__,
        "__qualname__": upstream_context.__qualname__,
    })


def _too_long(archive: pathlib.Path, existing: pathlib.Path) -> Optional[str]:
    """Why the file system would refuse ``archive``'s name, if it would (the
    limits of ``existing``, its nearest existing directory)."""
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    long_names = [part for part in archive.parts if len(os.fsencode(part)) > name_max]
    if long_names:
        return f"a file name is longer than {name_max} bytes ({shown(long_names[0][:40])}...)"
    if len(os.fsencode(str(archive))) >= path_max:
        return f"the path is longer than {path_max - 1} bytes"
    return None


def _empty_directory(directory: pathlib.Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _optional(config_field) -> tuple:
    """The upstream field with default None, meaning "not given": then the
    archive's stored value, or the upstream default, applies."""
    clone = _copy.copy(config_field)
    clone.default = None
    clone.default_factory = dataclasses.MISSING
    description = config_field.metadata.get("description", "")
    if config_field.default not in (dataclasses.MISSING, None):
        description += f" (default: {config_field.default!r})"
    clone.metadata = dict(config_field.metadata, description=description.strip(), required=False)
    return (config_field.name, config_field.type, clone)


def _import_path(inner: type, upstream: str) -> str:
    """``module:Name`` of ``inner``; for classes built dynamically (scikit's
    claim module ``dffml.base``) the upstream entry point's target."""
    module = sys.modules.get(inner.__module__)
    if getattr(module, inner.__qualname__, None) is inner:
        return f"{inner.__module__}:{inner.__qualname__}"
    import pkg_resources

    for entry in pkg_resources.iter_entry_points("dffml.model", upstream):
        return f"{entry.module_name}:{'.'.join(entry.attrs)}"
    return f"{inner.__module__}:{inner.__qualname__}"


def archive_model(inner: type, upstream: str, adapter: BackendAdapter = None, module=None) -> type:
    """Make an archive-capable model class from the upstream class ``inner``
    registered as ``upstream``.  Its entry point label is
    :func:`archive_label` of ``upstream``."""
    label = archive_label(upstream)
    module = module or __name__
    fields = [_optional(f) for f in dataclasses.fields(inner.CONFIG) if f.name != "directory"]
    fields.append(("location", pathlib.Path, field(
        "Model location: a directory, an archive file (.zip, .tar, .tar.gz, "
        ".tar.bz2, .tar.xz, .tar.zst) holding the model and its configuration, or "
        "a model repository location: models:NAME (train: a new version), "
        "models:NAME:VERSION, models:NAME:TAG"
    )))
    fields.append(("retrain", bool, field(
        "Train anew with the given options, replacing the archive's model",
        default=False,
    )))
    config_cls = make_config(
        f"{inner.__name__}ArchiveConfig", fields, namespace={"__module__": module}
    )
    cls = type(
        f"{inner.__name__}Archive",
        (ArchiveModel,),
        {
            "__module__": module,
            "__doc__": f"{inner.__name__} ({upstream!r}) stored at a location "
            "that may be one archive file.",
            "CONFIG": config_cls,
            "INNER": inner,
            "INNER_PATH": _import_path(inner, upstream),
            "UPSTREAM": upstream,
            "ADAPTER": adapter or BackendAdapter(),
        },
    )
    # The name it is found by: ``dffml list models`` prints qualified names,
    # and the backend module binds the class to the label (pickle finds it).
    cls.__qualname__ = label
    return entrypoint(label)(cls)


def wrap_distribution(distribution: str, adapter: BackendAdapter, namespace: dict, also=None):
    """Define ``NAME_archive`` in ``namespace`` (a backend module's globals)
    for every model that ``distribution`` registers, plus ``also`` (name ->
    class) for models it builds without registering.  Returns the names."""
    # importlib.metadata reads the distribution's own entry points; pkg_resources'
    # get_distribution() would first resolve its requirements (slow, and a
    # VersionConflict in an environment that works).
    from importlib.metadata import distribution as installed_distribution

    found = {
        entry.name: entry.load()
        for entry in installed_distribution(distribution).entry_points
        if entry.group == "dffml.model"
    }
    for name, inner in (also or {}).items():
        found.setdefault(name, inner)
    for name, inner in sorted(found.items()):
        namespace[archive_label(name)] = archive_model(
            inner, name, adapter, module=namespace["__name__"]
        )
    return sorted(found)


async def load_model(location, **options) -> ArchiveModel:
    """A configured model from an archive alone: the backend, features and
    every option come from its manifest.  ``options`` override stored ones
    only with ``retrain=True``."""
    from ._api import inspect

    if is_repository_location(location):
        from .repository._location import stored_model_information

        manifest_model = await stored_model_information(location)
        return _configured_model(location, manifest_model, options)
    if pathlib.Path(location).is_dir():
        raise ArchiveError(
            location,
            "is a directory: load_model() reads an archive file",
            hint="give the archive's path, or load a directory-located model "
            "with its entry point and options",
        )
    info = await inspect(location)
    if info.manifest is None or not info.manifest.model:
        raise ArchiveError(
            location,
            "holds no model information (not written by a dffml-archive model)",
            hint="train a model into it with an *_archive model",
        )
    return _configured_model(location, info.manifest.model, options)


def _configured_model(location, manifest_model: dict, options: dict) -> ArchiveModel:
    model_info = checked_model_info(location, manifest_model)
    label, extra = model_info["entrypoint"], model_info.get("extra")
    try:
        model_cls = Model.load(label)
    except Exception:
        raise ArchiveError(
            location,
            f"holds a {label!r} model but that backend is not installed",
            hint="pip install " + shlex.quote(f"dffml-archive[{extra}]") if extra else None,
        ) from None
    values = model_cls.stored_values(model_info.get("config") or {}, location)
    values.update(options)
    return model_cls(location=pathlib.Path(location), **values)
